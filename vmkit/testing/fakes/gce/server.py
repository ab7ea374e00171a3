"""GceFake: the compute v1 REST API on 127.0.0.1, for the real google-cloud-compute client.

The REST transport of google-cloud-compute keeps an ``http://`` scheme given
in ``client_options={"api_endpoint": ...}`` (transports/rest_base.py: the
host regex only adds ``url_scheme`` when the endpoint has none) and sends
``/compute/v1/projects/...`` paths; with ``AnonymousCredentials`` it sends no
Authorization header. :func:`vmkit.testing.fakes.gce.make_clients` builds the
configured clients.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from vmkit.testing.fakes._http import FakeServer, HttpError, Request, Response
from vmkit.testing.fakes.gce.bulk import BulkApi
from vmkit.testing.fakes.gce.catalog import ImageSpec, MachineTypeSpec, machine_types_from
from vmkit.testing.fakes.gce.common import list_response, zone_of
from vmkit.testing.fakes.gce.errors import not_found
from vmkit.testing.fakes.gce.instances import InstanceApi
from vmkit.testing.fakes.gce.render import render_instance, render_operation
from vmkit.testing.fakes.gce.resources import ResourceApi
from vmkit.testing.fakes.gce.shapes import google_error
from vmkit.testing.fakes.gce.state import GceState, Image, Instance, Operation
from vmkit.testing.faults import FaultPlan

__all__ = ["DEFAULT_ZONES", "GceFake"]

DEFAULT_ZONES = (
    "us-central1-a",
    "us-central1-b",
    "us-central1-c",
    "us-central1-f",
    "us-east1-b",
    "us-east1-c",
    "europe-west1-b",
    "europe-west1-c",
)

_P = r"/compute/v1/projects/(?P<project>[^/]+)"
_Z = _P + r"/zones/(?P<zone>[^/]+)"
_I = _Z + r"/instances/(?P<instance>[^/]+)"

# Reason and message of errors the fake raises without a handler of its own
# (unknown routes, injected faults); 429 and 503 as Google front ends send them.
_DEFAULT_REASONS: dict[int, tuple[str, str, str]] = {
    400: ("invalid", "global", "Invalid request."),
    401: ("required", "global", "Request is missing required authentication credential."),
    403: ("forbidden", "global", "Forbidden."),
    404: ("notFound", "global", "Not found."),
    405: ("httpMethodNotAllowed", "global", "Method not allowed."),
    409: ("alreadyExists", "global", "Conflict."),
    429: ("rateLimitExceeded", "usageLimits", "Rate Limit Exceeded"),
    500: ("backendError", "global", "Internal error. Please try again or contact Google Support."),
    503: ("backendError", "global", "The service is currently unavailable."),
}


class GceFake(FakeServer):
    """A stateful fake of the Compute Engine compute v1 API.

    ``operation_delay`` is how long an operation stays PENDING/RUNNING;
    ``transition_delay`` how long an instance takes from PROVISIONING to
    RUNNING (and STOPPING to TERMINATED, delete to gone). ``machine_types``
    takes :class:`MachineTypeSpec` items or REST-shaped mappings; ``token``
    makes the fake require ``Authorization: Bearer <token>``. bulkInsert is
    described in :mod:`vmkit.testing.fakes.gce.bulk`; instances.aggregatedList
    answers for every zone of ``zones`` (see ``common.aggregated_response``
    and :meth:`make_unreachable`).
    """

    def __init__(
        self,
        *,
        project: str = "vmkit-test",
        zones: Sequence[str] = DEFAULT_ZONES,
        machine_types: Iterable[MachineTypeSpec | Mapping[str, Any]] | None = None,
        networks: Iterable[str] = ("default",),
        operation_delay: float = 0.05,
        transition_delay: float = 0.05,
        wait_timeout: float = 120.0,
        token: str | None = None,
        user: str = "vmkit-fake@vmkit-test.iam.gserviceaccount.com",
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        faults: FaultPlan | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(faults=faults, port=port)
        self.project = project
        self.token = token
        self.wait_timeout = wait_timeout
        self.state = GceState(
            operation_delay=operation_delay,
            transition_delay=transition_delay,
            user=user,
            clock=clock,
            seed=seed,
        )
        self.state.zones = tuple(zones)
        self.state.machine_types = machine_types_from(machine_types)
        self.state.networks = set(networks)
        self._routes_setup(InstanceApi(self.state), ResourceApi(self.state), BulkApi(self.state))

    # ----------------------------------------------------------------- routes

    def _routes_setup(self, inst: InstanceApi, res: ResourceApi, bulk: BulkApi) -> None:
        table: list[tuple[str, str, str, Callable[[Request], Response]]] = [
            ("POST", _Z + r"/instances/bulkInsert", "instances.bulkInsert", bulk.bulk_insert),
            ("GET", _Z + r"/instances", "instances.list", inst.list_instances),
            (
                "GET",
                _P + r"/aggregated/instances",
                "instances.aggregatedList",
                inst.aggregated_list,
            ),
            ("POST", _Z + r"/instances", "instances.insert", inst.insert),
            ("GET", _I, "instances.get", inst.get),
            ("DELETE", _I, "instances.delete", inst.delete),
            ("POST", _I + r"/start", "instances.start", inst.start),
            ("POST", _I + r"/stop", "instances.stop", inst.stop),
            ("POST", _I + r"/reset", "instances.reset", inst.reset),
            ("POST", _I + r"/setLabels", "instances.setLabels", inst.set_labels),
            (
                "POST",
                _I + r"/setDeletionProtection",
                "instances.setDeletionProtection",
                inst.set_deletion_protection,
            ),
            ("POST", _I + r"/attachDisk", "instances.attachDisk", inst.attach_disk),
            ("POST", _I + r"/detachDisk", "instances.detachDisk", inst.detach_disk),
            ("GET", _I + r"/serialPort", "instances.getSerialPortOutput", inst.serial_port),
            ("GET", _Z + r"/operations", "zoneOperations.list", self._zone_op_list),
            ("GET", _Z + r"/operations/(?P<operation>[^/]+)", "zoneOperations.get", self._op_get),
            (
                "DELETE",
                _Z + r"/operations/(?P<operation>[^/]+)",
                "zoneOperations.delete",
                self._op_delete,
            ),
            ("GET", _P + r"/global/operations", "globalOperations.list", self._global_op_list),
            (
                "GET",
                _P + r"/global/operations/(?P<operation>[^/]+)",
                "globalOperations.get",
                self._op_get,
            ),
            (
                "DELETE",
                _P + r"/global/operations/(?P<operation>[^/]+)",
                "globalOperations.delete",
                self._op_delete,
            ),
            ("GET", _Z + r"/disks", "disks.list", res.disk_list),
            ("POST", _Z + r"/disks", "disks.insert", res.disk_insert),
            ("GET", _Z + r"/disks/(?P<disk>[^/]+)", "disks.get", res.disk_get),
            ("DELETE", _Z + r"/disks/(?P<disk>[^/]+)", "disks.delete", res.disk_delete),
            (
                "POST",
                _Z + r"/disks/(?P<disk>[^/]+)/createSnapshot",
                "disks.createSnapshot",
                res.create_snapshot,
            ),
            ("GET", _P + r"/global/snapshots", "snapshots.list", res.snapshot_list),
            (
                "GET",
                _P + r"/global/snapshots/(?P<snapshot>[^/]+)",
                "snapshots.get",
                res.snapshot_get,
            ),
            (
                "DELETE",
                _P + r"/global/snapshots/(?P<snapshot>[^/]+)",
                "snapshots.delete",
                res.snapshot_delete,
            ),
            (
                "POST",
                _P + r"/global/snapshots/(?P<resource>[^/]+)/setLabels",
                "snapshots.setLabels",
                res.snapshot_set_labels,
            ),
            ("GET", _P + r"/global/firewalls", "firewalls.list", res.firewall_list),
            ("POST", _P + r"/global/firewalls", "firewalls.insert", res.firewall_insert),
            (
                "GET",
                _P + r"/global/firewalls/(?P<firewall>[^/]+)",
                "firewalls.get",
                res.firewall_get,
            ),
            (
                "DELETE",
                _P + r"/global/firewalls/(?P<firewall>[^/]+)",
                "firewalls.delete",
                res.firewall_delete,
            ),
            (
                "PATCH",
                _P + r"/global/firewalls/(?P<firewall>[^/]+)",
                "firewalls.patch",
                res.firewall_patch,
            ),
            (
                "PUT",
                _P + r"/global/firewalls/(?P<firewall>[^/]+)",
                "firewalls.update",
                res.firewall_patch,
            ),
            (
                "GET",
                _P + r"/global/images/family/(?P<family>[^/]+)",
                "images.getFromFamily",
                res.image_from_family,
            ),
            ("GET", _P + r"/global/images", "images.list", res.image_list),
            ("GET", _P + r"/global/images/(?P<image>[^/]+)", "images.get", res.image_get),
            ("GET", _Z + r"/machineTypes", "machineTypes.list", res.machine_type_list),
            (
                "GET",
                _Z + r"/machineTypes/(?P<machine_type>[^/]+)",
                "machineTypes.get",
                res.machine_type_get,
            ),
        ]
        for method, pattern, name, handler in table:
            self.route(method, pattern, name, self._locked(handler))
        # wait sleeps, so it takes the lock only to look at the operation
        self.route(
            "POST",
            _Z + r"/operations/(?P<operation>[^/]+)/wait",
            "zoneOperations.wait",
            self._op_wait,
        )
        self.route(
            "POST",
            _P + r"/global/operations/(?P<operation>[^/]+)/wait",
            "globalOperations.wait",
            self._op_wait,
        )

    def _locked(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def run(request: Request) -> Response:
            with self.lock:
                self.state.reap()
                return handler(request)

        return run

    # ------------------------------------------------------ errors and auth

    def error_response(self, error: HttpError) -> Response:
        """Errors in the compute v1 shape (see shapes.google_error)."""
        reason, domain, default = _DEFAULT_REASONS.get(error.status, ("error", "global", "Error."))
        message = default if error.message == "injected fault" else error.message
        body = google_error(
            error.status,
            message,
            error.reason or reason,
            domain=str(error.extra.get("domain", domain)),
            location=error.extra.get("location"),
            location_type=error.extra.get("location_type"),
        )
        return Response(error.status, body)

    def authorize(self, request: Request) -> None:
        """Without a token every request passes (AnonymousCredentials send no
        Authorization header); with one, ``Bearer <token>`` is required."""
        if self.token is None:
            return
        header = request.headers.get("authorization", "")
        if not header:
            raise HttpError(
                401,
                "Request is missing required authentication credential. "
                "Expected OAuth 2 access token, login cookie or other valid "
                "authentication credential.",
                reason="required",
                location="Authorization",
                location_type="header",
            )
        if header != f"Bearer {self.token}":
            raise HttpError(
                401,
                "Request had invalid authentication credentials. Expected "
                "OAuth 2 access token, login cookie or other valid authentication "
                "credential.",
                reason="authError",
                location="Authorization",
                location_type="header",
            )

    # ------------------------------------------------------------- operations

    def _find_op(self, request: Request) -> Operation:
        project = request.params["project"]
        if "zone" in request.params:
            _, scope = zone_of(self.state, request)
            path = f"projects/{project}/zones/{scope}/operations"
        else:
            scope, path = "global", f"projects/{project}/global/operations"
        op = self.state.operations.get((project, scope, request.params["operation"]))
        if op is None:
            raise not_found(f"{path}/{request.params['operation']}")
        return op

    def _op_get(self, request: Request) -> Response:
        return Response(200, render_operation(self._find_op(request), self.state.now()))

    def _op_delete(self, request: Request) -> Response:
        op = self._find_op(request)
        del self.state.operations[(op.project, op.zone or "global", op.name)]
        return Response(200, {})

    def _op_wait(self, request: Request) -> Response:
        """operations.wait returns when the operation is DONE or after about two
        minutes ("best effort", zoneOperations.wait reference); ``wait_timeout``
        stands for those two minutes."""
        deadline = time.monotonic() + self.wait_timeout
        while True:
            with self.lock:
                op = self._find_op(request)
                status = op.status(self.state.now())
                if status == "DONE" or time.monotonic() >= deadline:
                    return Response(200, render_operation(op, self.state.now()))
            time.sleep(0.005)

    def _op_list(self, request: Request, scope: str, path: str) -> Response:
        project = request.params["project"]
        now = self.state.now()
        items = [
            render_operation(op, now)
            for (p, s, _), op in self.state.operations.items()
            if p == project and s == scope
        ]
        return list_response(request, "compute#operationList", path, items)

    def _zone_op_list(self, request: Request) -> Response:
        project, zone = zone_of(self.state, request)
        return self._op_list(request, zone, f"projects/{project}/zones/{zone}/operations")

    def _global_op_list(self, request: Request) -> Response:
        project = request.params["project"]
        return self._op_list(request, "global", f"projects/{project}/global/operations")

    # ------------------------------------------------- inspection and control

    def client_options(self) -> dict[str, str]:
        """``client_options`` that point a compute_v1 client at this fake."""
        return {"api_endpoint": self.url}

    def set_quota(self, *, cpus: int | None, region: str | None = None) -> None:
        """Limit the CPUS quota of ``region`` (every region when None); None lifts it.
        Inserts that would pass the limit fail with QUOTA_EXCEEDED on their operation."""
        with self.lock:
            if cpus is None:
                self.state.cpu_quota.pop(region, None)
            else:
                self.state.cpu_quota[region] = cpus

    def hold_provisioning(self) -> None:
        """Instances created from now on stop at STAGING (their insert operations
        still complete): a boot that takes far longer than a caller waits."""
        with self.lock:
            self.state.hold = True

    def release_provisioning(self) -> None:
        """Held instances, and new ones, go on to RUNNING."""
        with self.lock:
            self.state.hold = False
            now = self.state.now()
            end = now + self.state.transition_delay
            for key in sorted(self.state.held):
                inst = self.state.instance(*key)
                if inst is not None and inst.timeline.steps[-1][1] == "STAGING":
                    inst.timeline.then(now, (end, "RUNNING"))
                    inst.last_start = end
            self.state.held.clear()

    def exhaust_zone(self, zone: str | None = None, *, exhausted: bool = True) -> None:
        """Make ``zone`` (every zone when None) answer ZONE_RESOURCE_POOL_EXHAUSTED."""
        with self.lock:
            key = zone or "*"
            if exhausted:
                self.state.exhausted.add(key)
            else:
                self.state.exhausted.discard(key)

    def make_unreachable(self, zone: str, *, unreachable: bool = True) -> None:
        """Make aggregated lists unable to read ``zone``: they fail (503) unless
        asked for ``returnPartialSuccess``, which lists it in ``unreachables``."""
        with self.lock:
            if unreachable:
                self.state.unreachable.add(zone)
            else:
                self.state.unreachable.discard(zone)

    def report_partial_bulk_errors(self, enabled: bool = True) -> None:
        """Make a bulkInsert that creates some names (at least ``minCount``)
        and fails others end with an ``error`` of its own, the first name's
        failure, while the instances it made stay. Whether Compute Engine sets
        that error is not documented (it documents rollback only below
        ``minCount``); callers must read the outcome per name either way."""
        with self.lock:
            self.state.bulk_partial_error = enabled

    def instance(
        self, name: str, zone: str | None = None, project: str | None = None
    ) -> dict[str, Any] | None:
        """The instance as instances.get would answer now, or None."""
        with self.lock:
            found = self._instances(project, zone, name)
            return render_instance(found[0], self.state.now()) if found else None

    def instances(
        self, zone: str | None = None, project: str | None = None
    ) -> list[dict[str, Any]]:
        """Every live instance (of ``zone`` when given), as instances.get answers."""
        with self.lock:
            now = self.state.now()
            return [render_instance(i, now) for i in self._instances(project, zone, None)]

    def _instances(self, project: str | None, zone: str | None, name: str | None) -> list[Instance]:
        return sorted(
            (
                i
                for i in self.state.instances_in(project or self.project, zone)
                if name is None or i.name == name
            ),
            key=lambda i: (i.zone, i.name),
        )

    def backdate_disk(
        self, name: str, seconds: float, *, zone: str, project: str | None = None
    ) -> None:
        """Make a disk ``seconds`` older: its creation and its last attach and
        detach, as if it had been left for that long."""
        with self.lock:
            disk = self.state.disk(project or self.project, zone, name)
            if disk is None:
                raise KeyError(name)
            disk.created -= seconds
            if disk.last_attach is not None:
                disk.last_attach -= seconds
            if disk.last_detach is not None:
                disk.last_detach -= seconds

    def append_serial(self, name: str, text: str, *, zone: str, project: str | None = None) -> None:
        """Write ``text`` to an instance's serial console (what its programs print)."""
        with self.lock:
            inst = self.state.instance(project or self.project, zone, name)
            if inst is None:
                raise KeyError(name)
            inst.serial.append((self.state.now(), text))

    def add_image(self, spec: ImageSpec) -> None:
        """Publish an image (a custom image of the project, or another public family)."""
        with self.lock:
            self.state.images.append(Image(spec, self.state.new_id()))
