"""AWS's wire protocols as the EC2 front (:mod:`vmkit.testing.fakes.aws`) reads and writes them.

Requests: which service and action a request is (EC2's form-encoded query
protocol, SSM's JSON one). Answers: EC2 answers XML; botocore's parser
(botocore/parsers.py, ``EC2QueryParser``) matches elements by their local
names, so the front does the same and keeps the namespace of an answer it
rewrites. :func:`make_handler` serves them over HTTP, faults first.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from vmkit.testing.fakes._http import FakeRequestHandler, request_key
from vmkit.testing.faults import Decision, FaultPlan

__all__ = [
    "EC2_NAMESPACE",
    "Answer",
    "Launch",
    "Operation",
    "child",
    "child_text",
    "ec2_error",
    "instance_items",
    "json_error",
    "launch_of",
    "local",
    "make_handler",
    "namespace",
    "parse",
    "parse_operation",
    "serialize",
]

# The namespace of EC2's answers (moto's lacks the trailing slash); the
# front matches local names only, as botocore's parser does.
EC2_NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"
# SigV4's credential scope names the service: Credential=KEY/DATE/REGION/SERVICE/aws4_request
_SCOPE = re.compile(r"Credential=[^/,]+/[^/,]+/[^/,]+/([^/,]+)/aws4_request")


@dataclass(frozen=True)
class Answer:
    """An HTTP answer the front sends back."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Operation:
    """One incoming request, parsed as much as the front needs."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    service: str
    action: str
    form: dict[str, list[str]]

    @property
    def name(self) -> str:
        """``service:Action``, what :attr:`AwsFront.requests` counts."""
        return f"{self.service}:{self.action}"

    @property
    def fault_path(self) -> str:
        """The synthetic path the fault plan matches: ``/service/Action``."""
        return f"/{self.service}/{self.action}"

    def values(self, prefix: str) -> list[str]:
        """The values of a query list parameter (``InstanceId.1``,
        ``InstanceId.2``...), in member order."""
        pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)")
        members = sorted(
            (int(m.group(1)), values[-1])
            for key, values in self.form.items()
            if (m := pattern.fullmatch(key)) and values
        )
        return [value for _, value in members]


def parse_operation(method: str, target: str, headers: Mapping[str, str], body: bytes) -> Operation:
    """Which service and action a request is, from its signature and body."""
    lowered = {k.lower(): v for k, v in headers.items()}
    scope = _SCOPE.search(lowered.get("authorization", ""))
    amz_target = lowered.get("x-amz-target", "")
    form: dict[str, list[str]] = {}
    if "x-www-form-urlencoded" in lowered.get("content-type", ""):
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    if scope is not None:
        service = scope.group(1)
    elif amz_target.startswith("AmazonSSM."):
        service = "ssm"
    else:
        service = "unknown"
    if form.get("Action"):
        action = form["Action"][-1]
    elif "." in amz_target:
        action = amz_target.rsplit(".", 1)[1]
    else:
        action = urlsplit(target).path.strip("/") or "unknown"
    return Operation(method, target, tuple(headers.items()), body, service, action, form)


@dataclass(frozen=True)
class Launch:
    """What the front remembers of one ClientToken's RunInstances."""

    fingerprint: tuple[tuple[str, str], ...]
    reservation_id: str
    instance_ids: tuple[str, ...]
    answer: Answer


def launch_of(answer: Answer, fingerprint: tuple[tuple[str, str], ...]) -> Launch | None:
    """The reservation a successful RunInstances answer reports, else None.

    A refused launch is not remembered: it made nothing, so a retry with the
    same token is a new attempt.
    """
    root = parse(answer)
    reservation = child_text(root, "reservationId") if root is not None else None
    if root is None or not reservation:
        return None
    ids = tuple(text for item in instance_items(root) if (text := child_text(item, "instanceId")))
    return Launch(fingerprint, reservation, ids, answer)


def ec2_error(status: int, code: str, message: str) -> Answer:
    """An error in EC2's query-API shape (``<Response><Errors><Error>...``).

    Shape: "Example error response" on "Error codes for the Amazon EC2 API"
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html),
    and botocore/parsers.py ``EC2QueryParser._do_error_parse``.
    """
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    )
    return Answer(status, (("Content-Type", "text/xml"),), body.encode())


def json_error(status: int, code: str, message: str) -> Answer:
    """An error of the AWS JSON protocol: ``{"__type": code, "message": ...}``
    (botocore/parsers.py, ``BaseJSONParser._do_error_parse``)."""
    body = json.dumps({"__type": code, "message": message}).encode()
    return Answer(status, (("Content-Type", "application/x-amz-json-1.1"),), body)


def parse(answer: Answer) -> ET.Element | None:
    """The XML root of a successful answer, else None."""
    if answer.status != 200:
        return None
    try:
        return ET.fromstring(answer.body)
    except ET.ParseError:
        return None


def serialize(root: ET.Element, like: Answer) -> Answer:
    """``root`` as the body of an answer with ``like``'s status and headers."""
    ns = namespace(root.tag)
    if ns:
        body = ET.tostring(root, encoding="utf-8", default_namespace=ns)
    else:
        body = ET.tostring(root, encoding="utf-8")
    return Answer(like.status, like.headers, body)


def local(tag: str) -> str:
    """An element's name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def namespace(tag: str) -> str | None:
    """An element's namespace, None when it has none."""
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else None


def child(element: ET.Element, name: str) -> ET.Element | None:
    """The first child of ``element`` whose local name is ``name``."""
    for item in element:
        if local(item.tag) == name:
            return item
    return None


def child_text(element: ET.Element, name: str) -> str | None:
    """The text of the first child named ``name``, None when absent."""
    found = child(element, name)
    return found.text if found is not None else None


def instance_items(root: ET.Element) -> Iterator[ET.Element]:
    """Every instance record in an answer (``RunInstances``' ``instancesSet``
    items, ``DescribeInstances``' reservations' ones): an ``item`` with an
    ``instanceId`` and an ``instanceState``."""
    for item in root.iter():
        if (
            local(item.tag) == "item"
            and child(item, "instanceId") is not None
            and child(item, "instanceState") is not None
        ):
            yield item


class Front(Protocol):
    """What :func:`make_handler` needs of the front it serves."""

    faults: FaultPlan
    lock: threading.RLock
    requests: Counter[str]

    def fault_answer(self, operation: Operation, decision: Decision) -> Answer: ...

    def handle(self, operation: Operation) -> Answer: ...


def make_handler(front: Front, log: logging.Logger) -> type[BaseHTTPRequestHandler]:
    """The request handler of ``front``: each request is counted, its fault
    (by ``/service/Action``) applied, then answered by ``front.handle``."""

    class _Handler(FakeRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("AwsFront %s", format % args)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            operation = parse_operation(self.command, self.path, dict(self.headers.items()), body)
            key = request_key(self.command, self.path, body)
            decision = front.faults.decide(operation.method, operation.fault_path, key)
            with front.lock:
                front.requests[f"{operation.method} {operation.name}"] += 1
            if decision.latency:
                time.sleep(decision.latency)
            if decision.reset:
                self._reset()
                return
            if decision.status is not None:
                answer = front.fault_answer(operation, decision)
            else:
                try:
                    answer = front.handle(operation)
                except OSError as exc:
                    log.warning("aws front: moto did not answer %s: %s", operation.name, exc)
                    answer = ec2_error(503, "Unavailable", f"moto did not answer: {exc}")
            if decision.drop_response:
                # moto has committed; the answer is lost on the way back.
                self._reset()
                return
            self._write(answer)

        def _write(self, answer: Answer) -> None:
            self.send_response(answer.status)
            for key, value in answer.headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    return _Handler
