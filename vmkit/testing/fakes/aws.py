"""A fault-injecting, ClientToken-honouring HTTP front for ``moto_server``.

moto's EC2 does not honour ``ClientToken`` (a repeated token launches a second
reservation), launches ``MinCount`` instances where EC2 launches ``MaxCount``
when it has the capacity, runs an instance the moment it is launched, and
cannot lose a response. :class:`AwsFront` sits on 127.0.0.1 in front of an
in-process moto server and forwards every request to it unchanged, except
that, as EC2 does:

* ``RunInstances`` is idempotent per ``ClientToken``: a retry with the same
  parameters answers the ORIGINAL reservation (its instances in their
  current state) and launches nothing; a retry with other parameters is
  refused with ``IdempotentParameterMismatch``
  (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html:
  "any subsequent retries complete successfully without performing any
  further actions. However, the result might contain updated information,
  such as the current creation status");
* ``RunInstances`` launches the largest number between ``MinCount`` and
  ``MaxCount`` that the capacity allows, and none, answering
  ``InsufficientInstanceCapacity``, when that is below ``MinCount``
  (RunInstances, EC2 API reference:
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html,
  ``MinCount`` and ``MaxCount``). Capacity is unlimited until
  :meth:`AwsFront.limit_capacity` sets it;
* ``TerminateInstances`` naming an instance whose ``disableApiTermination``
  attribute is set (termination protection) fails with
  ``OperationNotPermitted`` and terminates none of the named instances in
  that instance's Availability Zone
  (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_TerminateInstances.html);
  moto terminates those named before the protected one;
* after :meth:`AwsFront.hold_boot`, the instances launched stay ``pending``
  in the DescribeInstances and RunInstances answers until
  :meth:`AwsFront.release_boot`: a boot that takes long (moto's instances
  are ``running`` at once);
* the answers number the instances of a launch by ``amiLaunchIndex`` as EC2
  does ("The AMI launch index, which can be used to find this instance in
  the launch group", Instance, EC2 API reference:
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Instance.html);
  moto 5.2 already sends it, from the order of the launch
  (moto/ec2/models/instances.py, ``ami_launch_index``). After
  :meth:`AwsFront.hide_launch_index` they leave it out, as an
  EC2-compatible endpoint that lacks it would;
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
import logging
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

from vmkit.testing.fakes._aws_wire import (
    EC2_NAMESPACE,
    Answer,
    Launch,
    Operation,
    child,
    child_text,
    ec2_error,
    instance_items,
    json_error,
    launch_of,
    local,
    make_handler,
    namespace,
    parse,
    serialize,
)
from vmkit.testing.fakes._http import FakeHTTPServer, FakeServer
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
# The states in which an instance holds capacity (InstanceState, EC2 API reference).
_HOLDING_CAPACITY = ("pending", "running", "stopping")


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
        #: Instances that may be pending or running at once; None: no limit.
        self.capacity: int | None = None
        self._launches: dict[str, Launch] = {}
        self._token_locks: dict[str, threading.Lock] = {}
        # One launch at a time: the room a launch sees must not be taken
        # by another between the count and the launch.
        self._launch_lock = threading.Lock()
        self._holding = False
        self._held: set[str] = set()
        self._numbered = True

    def start(self) -> AwsFront:
        """Start serving in a daemon thread; returns self."""
        # A listen backlog of 128, not 5: see FakeHTTPServer.
        self._server = FakeHTTPServer(("127.0.0.1", self._port), make_handler(self, log))
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

    # ------------------------------------------------------------------ knobs

    def limit_capacity(self, instances: int | None) -> None:
        """Let at most ``instances`` instances be pending or running at once,
        from the next launch on (None: no limit). A launch gets what room is
        left, as EC2 does when a zone is short of capacity."""
        with self._launch_lock:
            self.capacity = instances

    def hold_boot(self) -> None:
        """Keep the instances launched from now on ``pending`` until released."""
        with self.lock:
            self._holding = True

    def release_boot(self) -> None:
        """Let held instances, and those launched from now on, run."""
        with self.lock:
            self._holding = False
            self._held.clear()

    def hide_launch_index(self, hidden: bool = True) -> None:
        """Leave ``amiLaunchIndex`` out of the RunInstances and DescribeInstances
        answers from now on (``hidden=False``: put it back)."""
        with self.lock:
            self._numbered = not hidden

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
        """moto's answer, made to behave as EC2 (see the module docstring)."""
        if operation.service != "ec2":
            return self.forward(operation)
        if operation.action == "RunInstances":
            return self._run_instances(operation)
        if operation.action == "TerminateInstances":
            return self._terminate(operation)
        if operation.action == "DescribeInstances":
            return self._shown(self.forward(operation))
        return self.forward(operation)

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

    def _query(
        self, operation: Operation, action: str, params: Sequence[tuple[str, str]]
    ) -> Answer:
        """Another EC2 action sent to moto on behalf of ``operation``."""
        query = [("Action", action)]
        query += [("Version", v) for v in operation.form.get("Version", [])[-1:]]
        return self.forward(operation, urlencode([*query, *params]).encode())

    # -------------------------------------------------------------- launching

    def _run_instances(self, operation: Operation) -> Answer:
        """A launch, idempotent per ClientToken, as the knobs show it."""
        return self._numbering(self._idempotent_launch(operation))

    def _idempotent_launch(self, operation: Operation) -> Answer:
        token = operation.form.get("ClientToken", [""])[-1]
        if not token:
            return self._launch(operation)
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
            answer = self._launch(operation)
            launch = launch_of(answer, fingerprint)
            if launch is not None:
                with self.lock:
                    self._launches[token] = launch
            return answer

    def _launch(self, operation: Operation) -> Answer:
        """Launch what the capacity allows between MinCount and MaxCount."""
        try:
            least = int(operation.form.get("MinCount", ["1"])[-1])
            most = int(operation.form.get("MaxCount", [str(least)])[-1])
        except ValueError:
            least = most = 0
        if not 1 <= least <= most:
            return self.forward(operation)  # malformed: moto refuses it as EC2 does
        with self._launch_lock:
            room = most if self.capacity is None else self.capacity - self._occupied(operation)
            count = min(most, room)
            if count < least:
                # A server error on EC2 ("Error codes for the Amazon EC2 API",
                # server errors: InsufficientInstanceCapacity).
                kind = operation.form.get("InstanceType", ["m1.small"])[-1]
                return ec2_error(
                    500,
                    "InsufficientInstanceCapacity",
                    f"We currently do not have sufficient {kind} capacity in the Availability "
                    "Zone you requested. Our system will be working on provisioning additional "
                    "capacity.",
                )
            body = None
            if (least, most) != (count, count):
                # moto launches MinCount instances: ask it for exactly those EC2 would launch.
                form = {**operation.form, "MinCount": [str(count)], "MaxCount": [str(count)]}
                body = urlencode([(k, v) for k, vs in form.items() for v in vs]).encode()
            answer = self.forward(operation, body)
        root = parse(answer)
        if root is not None:
            with self.lock:
                if self._holding:
                    self._held.update(
                        text
                        for item in instance_items(root)
                        if (text := child_text(item, "instanceId"))
                    )
        return answer

    def _occupied(self, operation: Operation) -> int:
        """How many instances hold capacity now, read from moto."""
        params = [("Filter.1.Name", "instance-state-name")]
        params += [(f"Filter.1.Value.{i}", s) for i, s in enumerate(_HOLDING_CAPACITY, 1)]
        count, token = 0, ""
        while True:
            answer = self._query(
                operation,
                "DescribeInstances",
                [*params, *([("NextToken", token)] if token else [])],
            )
            root = parse(answer)
            if root is None:
                raise OSError(f"moto did not list the instances (HTTP {answer.status})")
            count += sum(1 for _ in instance_items(root))
            token = child_text(root, "nextToken") or ""
            if not token:
                return count

    def _replay(self, operation: Operation, launch: Launch) -> Answer:
        """The original reservation as a RunInstances answer, instances as they are now.

        Read back from moto with DescribeInstances; the stored answer when the
        reservation cannot be read (then the states are those of the launch).
        """
        params = [(f"InstanceId.{i}", iid) for i, iid in enumerate(launch.instance_ids, 1)]
        described = parse(self._booting(self._query(operation, "DescribeInstances", params)))
        if described is None:
            log.debug("aws front: replaying the stored answer of %s", launch.reservation_id)
            return launch.answer
        ns = namespace(described.tag) or EC2_NAMESPACE
        for item in described.iter():
            if local(item.tag) != "item" or child_text(item, "reservationId") != (
                launch.reservation_id
            ):
                continue
            response = ET.Element(f"{{{ns}}}RunInstancesResponse")
            request_id = ET.SubElement(response, f"{{{ns}}}requestId")
            request_id.text = str(uuid.uuid4())
            response.extend(list(item))
            return serialize(response, Answer(200, (("Content-Type", "text/xml"),), b""))
        return launch.answer

    def _shown(self, answer: Answer) -> Answer:
        """A DescribeInstances ``answer`` as the knobs show it."""
        return self._numbering(self._booting(answer))

    def _numbering(self, answer: Answer) -> Answer:
        """``answer`` without ``amiLaunchIndex`` while it is hidden."""
        with self.lock:
            numbered = self._numbered
        root = None if numbered else parse(answer)
        if root is None:
            return answer
        for item in instance_items(root):
            index = child(item, "amiLaunchIndex")
            if index is not None:
                item.remove(index)
        return serialize(root, answer)

    def _booting(self, answer: Answer) -> Answer:
        """``answer`` with the held instances shown ``pending`` while moto runs them."""
        with self.lock:
            held = set(self._held)
        root = parse(answer) if held else None
        if root is None:
            return answer
        changed = False
        for item in instance_items(root):
            state = child(item, "instanceState")
            if child_text(item, "instanceId") not in held or state is None:
                continue
            name, code = child(state, "name"), child(state, "code")
            if name is not None and name.text == "running":
                # InstanceState codes: 0 pending, 16 running (EC2 API reference).
                name.text = "pending"
                if code is not None:
                    code.text = "0"
                changed = True
        return serialize(root, answer) if changed else answer

    # ------------------------------------------------------------ terminating

    def _terminate(self, operation: Operation) -> Answer:
        """TerminateInstances, refused for the zone of a protected instance."""
        ids = operation.values("InstanceId")
        zones = self._zones(operation, ids) if ids else None
        if zones is None:
            return self.forward(operation)  # moto answers the error; nothing is terminated
        protected = [i for i in ids if self._protected(operation, i)]
        if not protected:
            return self.forward(operation)
        blocked = {zones.get(i) for i in protected}
        others = [i for i in ids if zones.get(i) not in blocked]
        if others:
            params = [(f"InstanceId.{n}", i) for n, i in enumerate(others, 1)]
            self._query(operation, "TerminateInstances", params)
        # Message as EC2 words it (and moto, OperationNotPermitted4).
        return ec2_error(
            400,
            "OperationNotPermitted",
            f"The instance '{protected[0]}' may not be terminated. Modify its "
            "'disableApiTermination' instance attribute and try again.",
        )

    def _zones(self, operation: Operation, ids: Sequence[str]) -> dict[str, str | None] | None:
        """The Availability Zone of each instance; None when one is unknown."""
        params = [(f"InstanceId.{n}", i) for n, i in enumerate(ids, 1)]
        root = parse(self._query(operation, "DescribeInstances", params))
        if root is None:
            return None
        zones: dict[str, str | None] = {}
        for item in instance_items(root):
            placement = child(item, "placement")
            zone = child_text(placement, "availabilityZone") if placement is not None else None
            zones[child_text(item, "instanceId") or ""] = zone
        return zones

    def _protected(self, operation: Operation, instance_id: str) -> bool:
        """Whether the instance's ``disableApiTermination`` attribute is set."""
        params = [("InstanceId", instance_id), ("Attribute", "disableApiTermination")]
        root = parse(self._query(operation, "DescribeInstanceAttribute", params))
        attribute = child(root, "disableApiTermination") if root is not None else None
        value = child_text(attribute, "value") if attribute is not None else None
        return (value or "").lower() == "true"


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

    from vmkit.testing.fakes.moto_ext import install as install_moto_extensions
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
        install_moto_extensions()
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
