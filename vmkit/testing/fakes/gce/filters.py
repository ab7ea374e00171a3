"""The ``filter`` grammar of compute v1 ``list`` calls, and paging.

Compute Engine documents two filter flavours that cannot be mixed in one
request (ListInstancesRequest.filter in
google/cloud/compute_v1/types/compute.py, or
https://cloud.google.com/compute/docs/reference/rest/v1/instances/list):

* AIP-160 expressions: ``field OP value`` with OP one of ``= != > < >= <= :``,
  ``labels.owner:*`` to test that a key is defined, nested fields
  (``scheduling.automaticRestart = false``), parenthesised expressions joined
  by ``AND`` (also implicit, by juxtaposition), ``OR``, ``NOT`` / ``-``. As in
  AIP-160, ``OR`` binds tighter than ``AND``, and ``*`` is a wildcard in ``=``.
* regular expressions: ``field eq literal`` / ``field ne literal``, the
  literal being an RE2 pattern that must match the whole field.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["FilterError", "compile_filter", "paginate"]

Predicate = Callable[[dict[str, Any]], bool]
T = TypeVar("T")

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<paren>[()])
      | (?P<op>!=|>=|<=|=|>|<|:)
      | "(?P<dq>(?:[^"\\]|\\.)*)"
      | '(?P<sq>(?:[^'\\]|\\.)*)'
      | (?P<word>[^\s()=!<>:"']+)
    )""",
    re.VERBOSE,
)


class FilterError(ValueError):
    """The filter expression is not valid."""


class _Token:
    __slots__ = ("kind", "quoted", "text")

    def __init__(self, kind: str, text: str, quoted: bool = False) -> None:
        self.kind, self.text, self.quoted = kind, text, quoted


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None or match.end() == pos:
            raise FilterError(f"unexpected character at {pos}")
        pos = match.end()
        if match.group("paren"):
            tokens.append(_Token("paren", match.group("paren")))
        elif match.group("op"):
            tokens.append(_Token("op", match.group("op")))
        elif match.group("dq") is not None or match.group("sq") is not None:
            raw = match.group("dq") if match.group("dq") is not None else match.group("sq")
            tokens.append(_Token("word", re.sub(r"\\(.)", r"\1", raw), quoted=True))
        else:
            tokens.append(_Token("word", match.group("word")))
    return tokens


def _resolve(resource: dict[str, Any], path: str) -> list[Any]:
    """All values at ``path``; lists are flattened so ``tags.items`` or
    ``networkInterfaces.networkIP`` work. Empty when the field is absent."""
    values: list[Any] = [resource]
    for part in path.split("."):
        found: list[Any] = []
        for value in values:
            if isinstance(value, dict) and part in value:
                item = value[part]
                found.extend(item if isinstance(item, list) else [item])
        values = found
    return values


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$", re.S)


def _compare(value: Any, op: str, literal: str) -> bool:
    if isinstance(value, bool):
        if literal.lower() not in ("true", "false"):
            return False
        want = literal.lower() == "true"
        return value == want if op in ("=", ":") else value != want if op == "!=" else False
    number = _as_number(value)
    wanted = _as_number(literal)
    if number is not None and wanted is not None:
        return {
            "=": number == wanted,
            ":": number == wanted,
            "!=": number != wanted,
            ">": number > wanted,
            "<": number < wanted,
            ">=": number >= wanted,
            "<=": number <= wanted,
        }[op]
    text = str(value)
    if op in ("=", ":", "!="):
        equal = bool(_wildcard(literal).match(text)) if "*" in literal else text == literal
        return equal if op != "!=" else not equal
    return {">": text > literal, "<": text < literal, ">=": text >= literal, "<=": text <= literal}[
        op
    ]


def _as_number(value: Any) -> int | float | None:
    # Integers stay exact: uint64 ids (19-20 digits) would collide as floats.
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+\.\d+", value):
        return float(value)
    return None


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.flavours: set[str] = set()

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise FilterError("unexpected end of expression")
        self.pos += 1
        return token

    def expression(self) -> Predicate:
        terms = [self.sequence()]
        while (tok := self.peek()) is not None and tok.kind == "word" and tok.text == "AND":
            self.take()
            terms.append(self.sequence())
        return _all(terms)

    def sequence(self) -> Predicate:
        factors = [self.factor()]
        while (
            (tok := self.peek()) is not None
            and not (tok.kind == "paren" and tok.text == ")")
            and not (tok.kind == "word" and tok.text == "AND")
        ):
            factors.append(self.factor())
        return _all(factors)

    def factor(self) -> Predicate:
        terms = [self.term()]
        while (tok := self.peek()) is not None and tok.kind == "word" and tok.text == "OR":
            self.take()
            terms.append(self.term())
        if len(terms) == 1:
            return terms[0]
        return lambda r: any(t(r) for t in terms)

    def term(self) -> Predicate:
        token = self.take()
        if token.kind == "word" and token.text == "NOT":
            inner = self.simple()
            return lambda r: not inner(r)
        if token.kind == "word" and token.text.startswith("-") and len(token.text) > 1:
            self.tokens[self.pos - 1] = _Token("word", token.text[1:])
            self.pos -= 1
            inner = self.simple()
            return lambda r: not inner(r)
        if token.kind == "word" and token.text == "-":
            inner = self.simple()
            return lambda r: not inner(r)
        self.pos -= 1
        return self.simple()

    def simple(self) -> Predicate:
        token = self.take()
        if token.kind == "paren" and token.text == "(":
            inner = self.expression()
            closing = self.take()
            if closing.kind != "paren" or closing.text != ")":
                raise FilterError("expected ')'")
            return inner
        if token.kind != "word" or token.quoted:
            raise FilterError(f"expected a field name, got {token.text!r}")
        return self.restriction(token.text)

    def restriction(self, field: str) -> Predicate:
        op = self.take()
        if op.kind == "word" and op.text in ("eq", "ne"):
            self.flavours.add("regex")
            regex = self.take()
            if regex.kind != "word":
                raise FilterError("expected a literal after eq/ne")
            try:
                pattern = re.compile(regex.text)
            except re.error as exc:
                raise FilterError(f"invalid regular expression: {exc}") from exc
            matches = op.text == "eq"
            return lambda r: any(pattern.fullmatch(str(v)) for v in _resolve(r, field)) == matches
        if op.kind != "op":
            raise FilterError(f"expected an operator after {field!r}")
        self.flavours.add("aip160")
        value = self.take()
        if value.kind != "word":
            raise FilterError(f"expected a value after {field} {op.text}")
        if op.text == ":" and value.text == "*" and not value.quoted:
            return lambda r: bool(_resolve(r, field))
        operator, literal = op.text, value.text

        def check(resource: dict[str, Any]) -> bool:
            values = _resolve(resource, field)
            if operator == "!=":
                return all(_compare(v, "!=", literal) for v in values)
            return any(_compare(v, operator, literal) for v in values)

        return check


def _all(predicates: Sequence[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    return lambda r: all(p(r) for p in predicates)


def compile_filter(text: str | None) -> Predicate:
    """A predicate over a resource's REST JSON; raises FilterError when invalid."""
    if text is None or not text.strip():
        return lambda r: True
    parser = _Parser(_tokenize(text))
    predicate = parser.expression()
    if parser.peek() is not None:
        raise FilterError(f"unexpected {parser.peek().text!r}")  # type: ignore[union-attr]
    if len(parser.flavours) > 1:
        raise FilterError("regular-expression and AIP-160 filters cannot be mixed")
    return predicate


def paginate(
    items: Sequence[T], max_results: int, page_token: str | None, query: str
) -> tuple[list[T], str | None]:
    """One page of ``items`` and the token of the next one (None on the last).

    Tokens are opaque and bound to the query they were issued for; a token
    from another query is refused as the API refuses a foreign pageToken.
    """
    key = hashlib.sha256(query.encode()).hexdigest()[:12]
    offset = 0
    if page_token:
        try:
            data = json.loads(base64.urlsafe_b64decode(page_token.encode()))
            offset, token_key = int(data["o"]), str(data["q"])
        except (ValueError, KeyError, TypeError) as exc:
            raise FilterError("invalid page token") from exc
        if token_key != key or offset < 0:
            raise FilterError("invalid page token")
    page = list(items[offset : offset + max_results])
    if offset + max_results >= len(items):
        return page, None
    token = base64.urlsafe_b64encode(json.dumps({"o": offset + max_results, "q": key}).encode())
    return page, token.decode()
