"""A fault-injecting, ClientToken-honouring HTTP front for ``moto_server``.

moto's EC2 does not honour ``ClientToken`` (a repeated token launches a second
reservation) and cannot lose a response. :class:`AwsFront` sits on 127.0.0.1
in front of an in-process moto server and forwards every request to it
unchanged, except that:

* ``RunInstances`` is idempotent per ``ClientToken``, as on EC2: a retry with
  the same parameters answers the ORIGINAL reservation (its instances in
  their current state) and launches nothing; a retry with other parameters
  is refused with ``IdempotentParameterMismatch``
  (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html:
  "any subsequent retries complete successfully without performing any
  further actions. However, the result might contain updated information,
  such as the current creation status");
* a :class:`~vmkit.testing.faults.FaultPlan` is consulted for every request
  with the synthetic path ``/<service>/<Action>`` (``/ec2/RunInstances``,
  ``/ssm/GetParameter``), so a rule's ``path`` regex picks actions; a
  ``drop`` fault lets moto commit and then resets the connection.

:func:`simulated_aws_server` starts both and yields the ``connect("aws", ...)``
configuration::

    with simulated_aws_server(faults=plan) as config:
        aws = vmkit.connect("aws", **config)
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import struct
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from xml.sax.saxutils import escape

from vmkit.testing.fakes._http import FakeServer
from vmkit.testing.faults import Decision, FaultPlan

__all__ = [
    "EC2_FAULT_CODES",
    "JSON_FAULT_CODES",
    "AwsFront",
    "aws_front",
    "simulated_aws_server",
]

log = logging.getLogger(__name__)

#: The EC2 error code an injected HTTP status is answered with. EC2 throttles
#: with ``RequestLimitExceeded`` (HTTP 503) and names ``InternalError`` (500)
#: and ``Unavailable`` (503) among its server errors ("Error codes for the
#: Amazon EC2 API",
#: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
#: Other statuses get ``Unavailable``; pass ``fault_codes`` to choose.
EC2_FAULT_CODES: Mapping[int, str] = {
    429: "RequestLimitExceeded",
    500: "InternalError",
    503: "RequestLimitExceeded",
}
#: The same for the JSON services behind the front (SSM).
JSON_FAULT_CODES: Mapping[int, str] = {
    429: "ThrottlingException",
    500: "InternalServerError",
    503: "ThrottlingException",
}
# The namespace of EC2's answers (moto's lacks the trailing slash); the
# front matches local names only, as botocore's parser does.
EC2_NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"
# SigV4's credential scope names the service: Credential=KEY/DATE/REGION/SERVICE/aws4_request
_SCOPE = re.compile(r"Credential=[^/,]+/[^/,]+/[^/,]+/([^/,]+)/aws4_request")
# Headers that belong to one hop (RFC 9110 7.6.1) or that the front recomputes.
_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
# Parameters a repeated RunInstances may change without a mismatch.
_NOT_COMPARED = frozenset({"ClientToken", "Placement.AvailabilityZone"})
# How long the front waits for moto; a create of many instances takes seconds.
UPSTREAM_TIMEOUT = 120.0


@dataclass(frozen=True)
class Answer:
    """An HTTP answer the front sends back."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Launch:
    """What the front remembers of one ClientToken's RunInstances."""

    fingerprint: tuple[tuple[str, str], ...]
    reservation_id: str
    instance_ids: tuple[str, ...]
    answer: Answer


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


class AwsFront(FakeServer):
    """The HTTP front on 127.0.0.1 before a moto server at ``upstream``.

    ``requests`` counts every request that reached the front, faulted or not,
    by ``"METHOD service:Action"`` (``count("ec2:RunInstances")``);
    ``replays`` counts the RunInstances answered from a known ClientToken.
    Tokens are remembered for the life of the front.
    """

    def __init__(
        self,
        upstream: str,
        *,
        faults: FaultPlan | None = None,
        fault_codes: Mapping[int, str] | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(faults=faults, port=port)
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://HOST:PORT, got {upstream!r}")
        self.upstream = (parts.hostname, parts.port)
        self.fault_codes = dict(fault_codes or {})
        self.replays = 0
        self._launches: dict[str, Launch] = {}
        self._token_locks: dict[str, threading.Lock] = {}

    def start(self) -> AwsFront:
        """Start serving in a daemon thread; returns self."""
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def __enter__(self) -> AwsFront:
        return self.start()

    def config(self, region: str = "us-east-1") -> dict[str, Any]:
        """The ``vmkit.connect("aws", ...)`` keyword arguments for this front."""
        return {
            "endpoint_url": self.url,
            "region": region,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "poll_interval": 0.05,
        }

    def reservation_of(self, client_token: str) -> str | None:
        """The reservation id launched under ``client_token``, if any."""
        with self.lock:
            launch = self._launches.get(client_token)
        return launch.reservation_id if launch else None

    # ------------------------------------------------------------ answering

    def fault_answer(self, operation: Operation, decision: Decision) -> Answer:
        """An injected status, in the error shape of the operation's protocol."""
        status = decision.status if decision.status is not None else 503
        headers: list[tuple[str, str]] = []
        if decision.retry_after is not None:
            headers.append(("Retry-After", str(int(decision.retry_after))))
        if operation.service == "ec2" or operation.form.get("Action"):
            code = self.fault_codes.get(status) or EC2_FAULT_CODES.get(status, "Unavailable")
            answer = ec2_error(status, code, "injected fault")
        else:
            code = self.fault_codes.get(status) or JSON_FAULT_CODES.get(
                status, "ServiceUnavailable"
            )
            answer = json_error(status, code, "injected fault")
        return Answer(answer.status, answer.headers + tuple(headers), answer.body)

    def handle(self, operation: Operation) -> Answer:
        """moto's answer, with RunInstances made idempotent per ClientToken."""
        token = operation.form.get("ClientToken", [""])[-1]
        if operation.service != "ec2" or operation.action != "RunInstances" or not token:
            return self.forward(operation)
        # EC2 compares every parameter "other than the Region or Availability
        # Zone" (idempotency page above); one endpoint is one region.
        fingerprint = tuple(
            sorted(
                (k, v)
                for k, values in operation.form.items()
                if k not in _NOT_COMPARED
                for v in values
            )
        )
        with self.lock:
            token_lock = self._token_locks.setdefault(token, threading.Lock())
        # One launch per token even when a retry overtakes a slow original.
        with token_lock:
            with self.lock:
                known = self._launches.get(token)
            if known is not None:
                if known.fingerprint != fingerprint:
                    return ec2_error(
                        400,
                        "IdempotentParameterMismatch",
                        "This client token was used before with other parameters.",
                    )
                with self.lock:
                    self.replays += 1
                return self._replay(operation, known)
            answer = self.forward(operation)
            launch = _launch_of(answer, fingerprint)
            if launch is not None:
                with self.lock:
                    self._launches[token] = launch
            return answer

    def forward(self, operation: Operation, body: bytes | None = None) -> Answer:
        """Send the request to moto unchanged (or with ``body``); its answer."""
        payload = operation.body if body is None else body
        headers = {k: v for k, v in operation.headers if k.lower() not in _HOP_HEADERS}
        headers["Content-Length"] = str(len(payload))
        connection = http.client.HTTPConnection(*self.upstream, timeout=UPSTREAM_TIMEOUT)
        try:
            connection.request(operation.method, operation.target, payload, headers)
            response = connection.getresponse()
            data = response.read()
            kept = tuple((k, v) for k, v in response.getheaders() if k.lower() not in _HOP_HEADERS)
            return Answer(response.status, kept, data)
        finally:
            connection.close()

    def _replay(self, operation: Operation, launch: Launch) -> Answer:
        """The original reservation as a RunInstances answer, instances as they are now.

        Read back from moto with DescribeInstances; the stored answer when the
        reservation cannot be read (then the states are those of the launch).
        """
        query = [("Action", "DescribeInstances")]
        query += [("Version", v) for v in operation.form.get("Version", [])[-1:]]
        query += [(f"InstanceId.{i}", iid) for i, iid in enumerate(launch.instance_ids, 1)]
        described = self.forward(operation, urlencode(query).encode())
        if described.status != 200:
            log.debug("aws front: replaying the stored answer of %s", launch.reservation_id)
            return launch.answer
        try:
            root = ET.fromstring(described.body)
        except ET.ParseError:
            return launch.answer
        namespace = _namespace(root.tag) or EC2_NAMESPACE
        for item in root.iter():
            if _local(item.tag) != "item" or _child_text(item, "reservationId") != (
                launch.reservation_id
            ):
                continue
            response = ET.Element(f"{{{namespace}}}RunInstancesResponse")
            request_id = ET.SubElement(response, f"{{{namespace}}}requestId")
            request_id.text = str(uuid.uuid4())
            response.extend(list(item))
            body = ET.tostring(response, encoding="utf-8", default_namespace=namespace)
            return Answer(200, (("Content-Type", "text/xml"),), body)
        return launch.answer


def ec2_error(status: int, code: str, message: str) -> Answer:
    """An error in EC2's query-API shape (``<Response><Errors><Error>...``).

    Shape: "Example error response" on the EC2 error-codes page above, and
    botocore/parsers.py ``EC2QueryParser._do_error_parse``.
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


def _launch_of(answer: Answer, fingerprint: tuple[tuple[str, str], ...]) -> Launch | None:
    """The reservation a successful RunInstances answer reports, else None.

    A refused launch is not remembered: it made nothing, so a retry with the
    same token is a new attempt.
    """
    if answer.status != 200:
        return None
    try:
        root = ET.fromstring(answer.body)
    except ET.ParseError:
        return None
    reservation = _child_text(root, "reservationId")
    if not reservation:
        return None
    instances = [child for child in root if _local(child.tag) == "instancesSet"]
    ids = tuple(
        text
        for item in (instances[0] if instances else [])
        if (text := _child_text(item, "instanceId"))
    )
    return Launch(fingerprint, reservation, ids, answer)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _namespace(tag: str) -> str | None:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else None


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return child.text
    return None


def _parse(method: str, target: str, headers: Mapping[str, str], body: bytes) -> Operation:
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


def _make_handler(front: AwsFront) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("AwsFront %s", format % args)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            operation = _parse(self.command, self.path, dict(self.headers.items()), body)
            decision = front.faults.decide(operation.method, operation.fault_path)
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

        def _reset(self) -> None:
            # SO_LINGER 0 makes close() send RST: the client sees a reset.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

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


@contextmanager
def aws_front(
    region: str = "us-east-1",
    faults: FaultPlan | None = None,
    *,
    fault_codes: Mapping[int, str] | None = None,
) -> Iterator[AwsFront]:
    """A fresh moto account behind an :class:`AwsFront`; yields the front.

    moto runs in server mode in this process (``ThreadedMotoServer`` on
    127.0.0.1, a free port), so its backends are the process's own: the SSM
    image parameters are seeded into them as :func:`vmkit.testing.sim.
    simulated_aws` does, and AMI ids and instance types are validated as on
    EC2 (``AWS_SIM_ENVIRONMENT``). moto's state is reset on entry and exit,
    which also resets any ``mock_aws`` running in the process at that moment:
    use one at a time per process.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    from vmkit.testing.sim import (
        AWS_SIM_ENVIRONMENT,
        _environment,
        _reload_moto_settings,
        seed_aws_images,
    )

    # werkzeug logs every request moto serves at INFO, on stderr.
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    with _environment(AWS_SIM_ENVIRONMENT):
        _reload_moto_settings()
        # moto/moto_server/threaded_moto_server.py: a werkzeug server in a
        # daemon thread, serving the process's own moto backends.
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            upstream = f"http://{host}:{port}"
            _reset_moto(host, port)
            direct = boto3.client(
                "ec2",
                region_name=region,
                endpoint_url=upstream,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            seed_aws_images(direct, region)
            try:
                with AwsFront(upstream, faults=faults, fault_codes=fault_codes) as front:
                    yield front
            finally:
                _reset_moto(host, port)
        finally:
            server.stop()
            _reload_moto_settings()
            werkzeug.setLevel(level)


@contextmanager
def simulated_aws_server(
    region: str = "us-east-1", faults: FaultPlan | None = None
) -> Iterator[dict[str, Any]]:
    """A fresh AWS account served over HTTP on 127.0.0.1, ClientToken honoured.

    Yields the ``vmkit.connect("aws", **config)`` keyword arguments
    (``endpoint_url``, ``region``, fake credentials, a short
    ``poll_interval``); ``faults`` is consulted for every request with the
    path ``/<service>/<Action>`` (see :class:`AwsFront`).
    """
    with aws_front(region, faults) as front:
        yield front.config(region)


def _reset_moto(host: str, port: int) -> None:
    # moto's own API: POST /moto-api/reset empties every backend
    # (moto/moto_api/_internal/urls.py, the "/moto-api/reset" route).
    connection = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT)
    try:
        connection.request("POST", "/moto-api/reset", b"", {"Content-Length": "0"})
        connection.getresponse().read()
    finally:
        connection.close()
