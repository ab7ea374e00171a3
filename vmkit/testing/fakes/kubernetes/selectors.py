"""Label and field selectors, as the API server parses and applies them.

Grammar of label selectors: k8s.io/apimachinery/pkg/labels/selector.go
(``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a``, ``!a``,
``a>1``, ``a<1``; a comma is AND; ``!=`` and ``notin`` also match objects
without the key). Field selectors: k8s.io/apimachinery/pkg/fields/selector.go
(``f=v``, ``f==v``, ``f!=v``, comma = AND, backslash escapes), over the fields
each resource supports (pkg/registry/core/pod/strategy.go ToSelectableFields,
event/strategy.go, namespace/strategy.go); an unsupported field is a 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from vmkit.testing.fakes.kubernetes.shapes import JSON, is_label_key, is_label_value

__all__ = ["FieldSelector", "LabelSelector", "SelectorError"]


class SelectorError(ValueError):
    """A selector the API server refuses with 400 BadRequest."""


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if not present:
            return False
        try:
            have, want = int(value or ""), int(self.values[0])
        except ValueError:
            return False
        return have > want if self.op == ">" else have < want


_OPERATORS = frozenset({",", "(", ")", "!", "!=", "=", "==", ">", "<"})
_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[^\s!=(),<>]+)")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match:
            raise SelectorError(f"unable to parse requirement: unexpected {text[pos:]!r}")
        out.append(match.group(1))
        pos = match.end()
    return out


class LabelSelector:
    """A parsed ``labelSelector``; the empty selector matches everything."""

    def __init__(self, text: str | None) -> None:
        self.text = text or ""
        self.requirements = self._parse(_tokens(self.text))

    @staticmethod
    def _parse(tokens: list[str]) -> list[_Requirement]:
        reqs: list[_Requirement] = []
        i = 0

        def need(expected: str) -> None:
            nonlocal i
            if i >= len(tokens) or tokens[i] != expected:
                found = tokens[i] if i < len(tokens) else "end of string"
                raise SelectorError(
                    f"unable to parse requirement: found '{found}', expected: '{expected}'"
                )
            i += 1

        def key_at(index: int) -> str:
            if index >= len(tokens) or tokens[index] in _OPERATORS:
                raise SelectorError("unable to parse requirement: expected a label key")
            key = tokens[index]
            if not is_label_key(key):
                raise SelectorError(f"unable to parse requirement: invalid label key {key!r}")
            return key

        def value_at(index: int) -> str:
            value = tokens[index]
            if not is_label_value(value):
                raise SelectorError(f"unable to parse requirement: invalid label value {value!r}")
            return value

        while i < len(tokens):
            if tokens[i] == "!":
                reqs.append(_Requirement(key_at(i + 1), "!"))
                i += 2
            else:
                key = key_at(i)
                i += 1
                op = tokens[i] if i < len(tokens) else ","
                if op == ",":
                    reqs.append(_Requirement(key, "exists"))
                elif op in ("=", "==", "!=", ">", "<"):
                    i += 1
                    value = ""
                    if i < len(tokens) and tokens[i] not in _OPERATORS:
                        value = value_at(i)
                        i += 1
                    if op in (">", "<") and not value.lstrip("-").isdigit():
                        raise SelectorError(
                            f"unable to parse requirement: for '{op}', '<' operators, exactly "
                            "one value is required and it must be an integer"
                        )
                    reqs.append(_Requirement(key, "=" if op == "==" else op, (value,)))
                elif op in ("in", "notin"):
                    i += 1
                    need("(")
                    values: list[str] = []
                    while i < len(tokens) and tokens[i] != ")":
                        if tokens[i] != ",":
                            values.append(value_at(i))
                        i += 1
                    need(")")
                    reqs.append(_Requirement(key, op, tuple(values)))
                else:
                    raise SelectorError(
                        f"unable to parse requirement: found '{op}', expected: in, notin, =, "
                        "==, !=, gt, lt"
                    )
            if i < len(tokens):
                need(",")
        return reqs

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return all(req.matches(labels) for req in self.requirements)


def _path(*keys: str) -> Callable[[JSON], str]:
    def read(obj: JSON) -> str:
        value: object = obj
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    return read


_META = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}

#: the fields each resource can be selected on
FIELDS: dict[str, dict[str, Callable[[JSON], str]]] = {
    "pods": {
        **_META,
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": lambda o: (
            "true" if (o.get("spec") or {}).get("hostNetwork") else "false"
        ),
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    "events": {
        **_META,
        "involvedObject.kind": _path("involvedObject", "kind"),
        "involvedObject.namespace": _path("involvedObject", "namespace"),
        "involvedObject.name": _path("involvedObject", "name"),
        "involvedObject.uid": _path("involvedObject", "uid"),
        "involvedObject.apiVersion": _path("involvedObject", "apiVersion"),
        "involvedObject.resourceVersion": _path("involvedObject", "resourceVersion"),
        "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _path("source", "component"),
        "type": _path("type"),
    },
    "namespaces": {
        "metadata.name": _path("metadata", "name"),
        "status.phase": _path("status", "phase"),
    },
    "nodes": {
        "metadata.name": _path("metadata", "name"),
        "spec.unschedulable": _path("spec", "unschedulable"),
    },
}


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == sep:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current + ("\\" if escaped else ""))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


class FieldSelector:
    """A parsed ``fieldSelector`` for one resource."""

    def __init__(self, text: str | None, resource: str) -> None:
        self.text = text or ""
        self.terms: list[tuple[Callable[[JSON], str], bool, str]] = []
        fields = FIELDS.get(resource, _META)
        for part in _split_unescaped(self.text, ","):
            if not part.strip():
                continue
            match = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", part.strip())
            if not match:
                raise SelectorError(f"invalid selector: '{self.text}'; can't understand '{part}'")
            field, op, value = match.groups()
            if field not in fields:
                raise SelectorError(f"field label not supported: {field}")
            self.terms.append((fields[field], op != "!=", _unescape(value)))

    def matches(self, obj: JSON) -> bool:
        return all((read(obj) == value) is equal for read, equal, value in self.terms)
