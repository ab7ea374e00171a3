"""The Compute Engine backend: workloads as instances, found again by their labels.

See :class:`vmkit.provider.Provider` for the guarantees. What is specific to
Compute Engine is documented on :class:`GcpProvider`.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import google.auth
from google.auth import exceptions as auth_exc
from google.cloud import compute_v1

from vmkit.catalog import fitting_types, instance_types, resolve_instance_type
from vmkit.errors import AuthError, ConfigError, NotFound, ProviderError, SpecError
from vmkit.machine import Machine, MachineState, Orphan, Snapshot
from vmkit.provider import CreateRequest, Provider
from vmkit.providers.gcp import translate as tr
from vmkit.providers.gcp.clone import OPERATION as INSERT_OPERATION
from vmkit.providers.gcp.clone import InsertCreate
from vmkit.providers.gcp.create import BulkCreate
from vmkit.providers.gcp.errors import GcpErrors, operation_error
from vmkit.providers.gcp.firewall import Firewalls
from vmkit.providers.gcp.orphans import Orphans
from vmkit.providers.gcp.snapshots import Snapshots
from vmkit.render import render_cloud_init
from vmkit.spec import Workload

__all__ = ["GcpProvider"]

log = logging.getLogger(__name__)

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# Per-request socket timeout; operations.wait itself returns within about two
# minutes ("best effort", zoneOperations.wait reference), hence its longer one.
CALL_TIMEOUT = 60.0
WAIT_TIMEOUT = 150.0
PAGE_SIZE = 500
#: Create requests sent at once: a clone is one instances.insert per replica.
CREATE_WORKERS = 8


#: States of an instance that no longer holds its workload's shared resources.
_GONE = frozenset({MachineState.DELETING, MachineState.DELETED})


def _check_auth(auth: str, *, endpoint: str | None, credentials: Any) -> None:
    """Refuse an unknown ``auth``, and anonymous access anywhere but an explicit endpoint."""
    if auth not in ("default", "anonymous"):
        raise ConfigError(f"gcp: auth must be 'default' or 'anonymous', got {auth!r}")
    if auth == "anonymous" and not endpoint:
        raise ConfigError(
            "gcp: auth 'anonymous' needs an endpoint (an emulator or fake): Compute Engine "
            "itself refuses anonymous calls"
        )
    if auth == "anonymous" and credentials is not None:
        raise ConfigError("gcp: give credentials or auth 'anonymous', not both")


@dataclass(frozen=True)
class _Clients:
    instances: Any
    zone_operations: Any
    global_operations: Any
    firewalls: Any
    disks: Any
    snapshots: Any
    machine_types: Any


class GcpProvider(Provider):
    """Compute Engine. ``vmkit.connect("gcp", project="my-project", zone="us-central1-a")``.

    Options: ``project`` and ``zone`` (required), ``credentials`` (a
    ``google.auth`` credentials object; Application Default Credentials,
    resolved on first use, when None), ``endpoint`` (a private endpoint or a
    fake, e.g. ``http://127.0.0.1:8080``), ``auth`` (``"default"``, or
    ``"anonymous"``: no credentials at all, for an emulator; only with
    ``endpoint``, so that it can never reach Google), ``network`` (``"default"``),
    ``subnetwork``, and the shared ``retry_attempts``, ``retry_timeout``,
    ``poll_interval``, ``timeout``. No API call is made on connect.

    What is specific to Compute Engine:

    * The missing replicas are created by ONE ``instances.bulkInsert`` naming
      each instance ``<workload>-<replica>`` (``perInstanceProperties``) with
      ``minCount`` 1: Compute Engine makes what fits, the others fail with its
      reason (quota, capacity) and are reported as failed replicas. Its
      ``requestId`` is a fresh uuid4 per deploy call, resent unchanged on
      retries, so a lost answer never creates twice. A name a racing deploy
      of the same spec already made is adopted. bulkInsert cannot label
      instances one by one: the replica index is read from the name.
    * ``gc`` finds firewall rules ``vmkit-<workload>`` of workloads with no
      instance left in any zone of the project and disks labelled
      ``vmkit-workload`` that no instance uses (a restore interrupted before
      it attached or deleted one).
    * Operations are polled with ``zoneOperations.wait`` / ``globalOperations.wait``
      on the same endpoint and credentials (never the SDK's ``.result()``,
      whose poller always calls the public endpoint).
    * Each workload owns a firewall rule ``vmkit-<workload>`` that lets in only
      the declared ports (22/tcp only with ``ssh_public_key``) to instances
      tagged ``vmkit-<workload>``; a deploy puts a drifted rule back. The
      rule is global, shared with the workload's instances in other zones:
      ``destroy``, a refused create and ``gc`` delete it only when no zone of
      the project has an instance of the workload left.
    * ``options["gcp"]``: ``machine_type`` (always wins), ``arch``,
      ``source_ranges`` (instead of anywhere), ``disk_type`` (pd-balanced),
      ``accelerator_type`` (GPUs for machine types without built-in ones).
    * Snapshots are disk snapshots of the boot disk, labelled
      ``vmkit-workload``, ``vmkit-replica`` and ``vmkit-machine``; their id is
      the resource name. Restore stops the instance, swaps its boot disk for
      one made from the snapshot and starts it, so the instance keeps its id,
      name, labels and internal IP (see :mod:`vmkit.providers.gcp.snapshots`).
    * ``os_image`` is, in this order: a portable name, an image or family
      path (``projects/P/global/images/...``), a snapshot path
      (``global/snapshots/NAME``, ``projects/P/global/snapshots/NAME``), or a
      bare resource name, which is a snapshot of the project: images always
      carry their project, so a bare name can only be a snapshot (a vmkit
      snapshot id). A workload on a snapshot is a clone: bulkInsert cannot
      boot from a snapshot, so each replica is one ``instances.insert``
      (``create_concurrency`` at once) with ``initializeParams.sourceSnapshot``;
      a snapshot that is missing or not READY fails plan and deploy with a
      SpecError naming ``os_image`` before any mutating call.
    * ``isolation``: every level is met by a VM; ``"sandbox"`` and ``"vm"``
      are recorded in the ``vmkit-isolation`` label.
    """

    name = "gcp"
    kind = "vm"
    errors = GcpErrors()
    #: maxResults of list calls (the API's maximum).
    page_size = PAGE_SIZE

    def __init__(
        self,
        *,
        project: str | None = None,
        zone: str | None = None,
        credentials: Any = None,
        endpoint: str | None = None,
        auth: str = "default",
        network: str = "default",
        subnetwork: str | None = None,
        retry_attempts: int = 8,
        retry_timeout: float = 120.0,
        poll_interval: float = 5.0,
        timeout: float = 900.0,
    ) -> None:
        super().__init__(
            retry_attempts=retry_attempts,
            retry_timeout=retry_timeout,
            poll_interval=poll_interval,
            timeout=timeout,
        )
        if not project:
            raise ConfigError("gcp: project is required: connect('gcp', project=..., zone=...)")
        if not zone or zone.count("-") < 2:
            raise ConfigError(f"gcp: zone must be a zone such as 'us-central1-a', got {zone!r}")
        if not tr.NAME_RE.match(network):
            raise ConfigError(f"gcp: network must be a network name, got {network!r}")
        _check_auth(auth, endpoint=endpoint, credentials=credentials)
        self.project = project
        self.zone = zone
        self.network = network
        self.subnetwork = subnetwork
        self._endpoint = endpoint
        self._credentials = credentials
        self._anonymous = auth == "anonymous"
        self._clients: _Clients | None = None
        self._clients_lock = threading.Lock()
        self._firewalls = Firewalls(self)
        self._snapshot_ops = Snapshots(self)
        self._bulk = BulkCreate(self)
        self._inserts = InsertCreate(self)
        self.create_concurrency = CREATE_WORKERS
        self._orphan_ops = Orphans(self)

    @classmethod
    def credentials_status(cls, **config: Any) -> str | None:
        """None when credentials are given or Application Default Credentials
        resolve, else why not. No Compute Engine call (google.auth may ask the
        local metadata server whether it runs on Google Cloud)."""
        if config.get("auth") == "anonymous":
            return None if config.get("endpoint") else "auth 'anonymous' needs an endpoint"
        if config.get("credentials") is not None:
            return None
        try:
            google.auth.default(scopes=list(SCOPES))
        except auth_exc.DefaultCredentialsError as exc:
            return f"no Google credentials found: {exc}"
        return None

    @property
    def location(self) -> str:
        """The zone."""
        return self.zone

    @property
    def clients(self) -> _Clients:
        """The compute_v1 REST clients, built on first use (ADC resolved then)."""
        with self._clients_lock:
            if self._clients is None:
                self._clients = self._build_clients()
            return self._clients

    def _build_clients(self) -> _Clients:
        credentials = self._credentials
        if self._anonymous:
            # google-auth's AnonymousCredentials add no Authorization header
            # (google/auth/credentials.py, AnonymousCredentials.apply).
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        elif credentials is None:
            try:
                credentials, _ = google.auth.default(scopes=list(SCOPES))
            except auth_exc.DefaultCredentialsError as exc:
                raise AuthError(f"gcp: {exc}", provider=self.name) from exc
        options = {"api_endpoint": self._endpoint} if self._endpoint else None

        def build(cls: Any) -> Any:
            return cls(credentials=credentials, client_options=options, transport="rest")

        return _Clients(
            instances=build(compute_v1.InstancesClient),
            zone_operations=build(compute_v1.ZoneOperationsClient),
            global_operations=build(compute_v1.GlobalOperationsClient),
            firewalls=build(compute_v1.FirewallsClient),
            disks=build(compute_v1.DisksClient),
            snapshots=build(compute_v1.SnapshotsClient),
            machine_types=build(compute_v1.MachineTypesClient),
        )

    # ------------------------------------------------------------- plumbing

    def _sdk(
        self,
        name: str,
        method: Any,
        /,
        request_type: Any = None,
        timeout: float = CALL_TIMEOUT,
        **fields: Any,
    ) -> Any:
        """One SDK call through ``_call``; the SDK's own retry is off so that
        vmkit's policy is the only one (and every attempt is counted).
        With ``request_type`` the fields (``request_id`` among them, which no
        flattened signature takes) form that request message, built once so
        that every retry sends the same requestId."""
        if request_type is not None:
            message = request_type(**fields)
            return self._call(name, lambda: method(request=message, retry=None, timeout=timeout))
        return self._call(name, lambda: method(retry=None, timeout=timeout, **fields))

    def _pages(self, operation: str, method: Any, request: Any) -> Iterator[Any]:
        """Every item of a list call, one retried ``_call`` per page."""
        for page in self._list_pages(operation, method, request):
            yield from page.items

    def _list_pages(self, operation: str, method: Any, request: Any) -> Iterator[Any]:
        """Every page of a list call, one retried ``_call`` each."""
        request.max_results = self.page_size
        while True:
            pager = self._sdk(operation, method, request=request)
            # The pager holds the page it fetched; iterating further would
            # fetch the next ones outside the retry policy.
            page = next(iter(pager.pages))
            yield page
            token = page.next_page_token
            if not token:
                return
            request.page_token = token

    def wait_operation(
        self, op: Any, operation: str, subject: str = "", *, check: bool = True
    ) -> Any:
        """Wait for a zonal or global Operation to be DONE; raise its error if
        any (with ``check``), else return it."""
        deadline = time.monotonic() + self.timeout
        while op.status != compute_v1.Operation.Status.DONE:
            if time.monotonic() >= deadline:
                raise ProviderError(
                    f"{operation}: operation {op.name} not done in time",
                    provider=self.name,
                    operation=operation,
                )
            if op.zone:
                op = self._sdk(
                    "compute:zoneOperations.wait",
                    self.clients.zone_operations.wait,
                    project=self.project,
                    zone=tr.last_segment(op.zone),
                    operation=op.name,
                    timeout=WAIT_TIMEOUT,
                )
            else:
                op = self._sdk(
                    "compute:globalOperations.wait",
                    self.clients.global_operations.wait,
                    project=self.project,
                    operation=op.name,
                    timeout=WAIT_TIMEOUT,
                )
        if check and op.error.errors:
            raise operation_error(op, operation, subject)
        return op

    @staticmethod
    def to_json(message: Any) -> dict[str, Any]:
        """A compute_v1 message as its REST JSON (camelCase, enum names)."""
        result: dict[str, Any] = type(message).to_dict(
            message, preserving_proto_field_name=False, use_integers_for_enums=False
        )
        return result

    # ------------------------------------------------------------ validation

    def _validate(self, workload: Workload) -> None:
        if not tr.NAME_RE.match(tr.replica_name(workload.name, max(workload.replicas - 1, 0))):
            raise SpecError(
                "name",
                "Compute Engine instance names must start with a lowercase letter "
                f"({workload.name!r} gives {tr.replica_name(workload.name, 0)!r})",
            )
        options = tr.parse_options(workload)
        tr.boot_source(workload.os_image, options.arch, self.project)
        if options.machine_type is None:
            resolve_instance_type("gcp", workload.resources, arch=options.arch, available=None)
        elif tr.needs_attached_gpus(options.machine_type, workload.resources.gpu) and (
            options.accelerator_type is None
        ):
            raise SpecError(
                "options.gcp.accelerator_type",
                f"{options.machine_type} has no built-in GPU: name the accelerator type to "
                "attach (e.g. 'nvidia-tesla-t4')",
            )
        size = tr.metadata_size(workload, render_cloud_init(workload))
        if size > tr.METADATA_LIMIT:
            raise SpecError(
                "user_data",
                f"the instance metadata comes to {size} bytes; Compute Engine takes at most "
                f"{tr.METADATA_LIMIT}",
            )

    # -------------------------------------------------------------- listing

    def _list_instances(self, filter_: str) -> builtins.list[Machine]:
        request = compute_v1.ListInstancesRequest(
            project=self.project, zone=self.zone, filter=filter_
        )
        return [
            tr.to_machine(self.to_json(i))
            for i in self._pages("compute:instances.list", self.clients.instances.list, request)
        ]

    def _list(self, workload: str | None) -> builtins.list[Machine]:
        return self._list_instances(tr.owner_filter(workload))

    def _live_workloads(self, workload: str | None) -> set[str]:
        """The workloads (``workload`` alone, or every one) that have an
        instance not being deleted in ANY zone of the project.

        A workload's firewall rule is global and serves its instances in
        every zone, so whether the rule is still used cannot be read from this
        connection's zone. One paginated ``instances.aggregatedList`` (GET
        /compute/v1/projects/{project}/aggregated/instances: ``items`` keyed
        ``zones/<zone>``, each with ``instances`` or a ``warning`` when empty,
        https://cloud.google.com/compute/docs/reference/rest/v1/instances/aggregatedList),
        filtered on the workload label as :meth:`_list` is. Partial success is
        not asked for (AggregatedListInstancesRequest of google-cloud-compute
        1.57 has no returnPartialSuccess field): a zone that cannot be read fails
        the call instead of looking empty, and the caller keeps the rule.
        """
        request = compute_v1.AggregatedListInstancesRequest(
            project=self.project, filter=tr.owner_filter(workload)
        )
        pages = self._list_pages(
            "compute:instances.aggregatedList", self.clients.instances.aggregated_list, request
        )
        alive: set[str] = set()
        for page in pages:
            for scoped in page.items.values():
                for instance in scoped.instances:
                    machine = tr.to_machine(self.to_json(instance))
                    if machine.workload and machine.state not in _GONE:
                        alive.add(machine.workload)
        return alive

    def _get(self, machine_id: str) -> Machine:
        # Machine ids are the instances' numeric ids (names come back after a
        # destroy); a filter on id finds one in a single call.
        if not machine_id.isdigit():
            raise NotFound(f"no machine {machine_id}", provider=self.name)
        found = [m for m in self._list_instances(f"id = {machine_id}") if m.workload]
        if not found or found[0].id != machine_id:
            raise NotFound(f"no machine {machine_id} managed by vmkit", provider=self.name)
        return found[0]

    def _failure_reason(self, machine: Machine) -> str:
        # statusMessage says why an instance is not running (Instance resource).
        return str(machine.raw.get("statusMessage") or machine.state)

    # -------------------------------------------------------------- planning

    def _build_requests(
        self, workload: Workload, replicas: Sequence[int]
    ) -> builtins.list[CreateRequest]:
        options = tr.parse_options(workload)
        source = tr.boot_source(workload.os_image, options.arch, self.project)
        # Read-only, before the machine type: a missing snapshot is the user's
        # error and fails the plan first.
        snapshot_gb = (
            self._snapshot_ops.clone_source(source, options.arch)
            if source.kind == "snapshot"
            else 0
        )
        machine_type = options.machine_type or self._machine_type(workload, options.arch)
        user_data = render_cloud_init(workload)
        if source.kind == "snapshot":
            return self._inserts.requests(
                workload,
                replicas,
                snapshot=source,
                snapshot_gb=snapshot_gb,
                machine_type=machine_type,
                user_data=user_data,
                options=options,
            )
        return self._bulk.requests(
            workload,
            replicas,
            image=source.path,
            machine_type=machine_type,
            user_data=user_data,
            options=options,
        )

    def _machine_type(self, workload: Workload, arch: tr.Arch) -> str:
        available: set[str] | None = None
        if fitting_types("gcp", workload.resources, arch=arch):
            try:
                available = self._offered_machine_types()
            except AuthError:
                raise
            except ProviderError as exc:
                log.debug("gcp: machineTypes.list unavailable, using the catalog: %s", exc)
        chosen = resolve_instance_type("gcp", workload.resources, arch=arch, available=available)
        return chosen.name

    def _offered_machine_types(self) -> set[str]:
        """The machine types of the zone that the catalog knows (one paginated list)."""
        known = {t.name for t in instance_types("gcp")}
        request = compute_v1.ListMachineTypesRequest(project=self.project, zone=self.zone)
        listed = self._pages("compute:machineTypes.list", self.clients.machine_types.list, request)
        return {m.name for m in listed if m.name in known}

    # ---------------------------------------------------------- shared state

    def _ensure_shared(self, workload: Workload) -> None:
        self._firewalls.ensure(workload)

    def _delete_shared(self, workload: str) -> None:
        # Only once no zone has an instance of the workload: its rule also
        # serves the instances other connections made in other zones.
        self._firewalls.delete_unused(workload)

    # -------------------------------------------------------------- creating

    def _create(self, workload: Workload, request: CreateRequest) -> builtins.list[Machine]:
        if request.operation == INSERT_OPERATION:
            return self._inserts.create(workload, request)
        return self._bulk.create(workload, request)

    # -------------------------------------------------------------- deleting

    def _instance_call(
        self, verb: str, method: Any, request_type: Any, machine: Machine, **fields: Any
    ) -> Any:
        """One mutating call on ``machine`` (``fields`` added to the request),
        with a requestId of its own, resent by the retries of that call only."""
        return self._sdk(
            f"compute:instances.{verb}",
            method,
            request_type=request_type,
            project=self.project,
            zone=self.zone,
            instance=machine.name,
            request_id=str(uuid.uuid4()),
            **fields,
        )

    def _delete(self, machines: Sequence[Machine]) -> None:
        """Ask for every machine's deletion; raise one error naming each the
        cloud refused (deletion protection...) once all were asked."""
        refused: builtins.list[tuple[Machine, ProviderError]] = []
        for machine in machines:
            try:
                self._instance_call(
                    "delete",
                    self.clients.instances.delete_unary,
                    compute_v1.DeleteInstanceRequest,
                    machine,
                )
            except NotFound:
                continue
            except ProviderError as exc:
                refused.append((machine, exc))
        if refused:
            kinds = {type(e) for _, e in refused}
            kind = kinds.pop() if len(kinds) == 1 else ProviderError
            listed = "; ".join(f"{m.name} ({e})" for m, e in refused)
            raise kind(
                f"compute:instances.delete: could not delete {listed}",
                provider=self.name,
                operation="compute:instances.delete",
            ) from refused[0][1]

    # ---------------------------------------------------------------- orphans

    def _orphans(self, workload: str | None) -> builtins.list[Orphan]:
        return self._orphan_ops.find(workload)

    def _delete_orphans(self, orphans: Sequence[Orphan]) -> None:
        self._orphan_ops.delete(orphans)

    # ------------------------------------------------------------- lifecycle

    def _lifecycle(self, verb: str, method: Any, request_type: Any, machine: Machine) -> None:
        op = self._instance_call(verb, method, request_type, machine)
        self.wait_operation(op, f"compute:instances.{verb}", machine.name)

    def _start(self, machine: Machine) -> None:
        self._lifecycle(
            "start", self.clients.instances.start_unary, compute_v1.StartInstanceRequest, machine
        )

    def _stop(self, machine: Machine) -> None:
        self._lifecycle(
            "stop", self.clients.instances.stop_unary, compute_v1.StopInstanceRequest, machine
        )

    def _reboot(self, machine: Machine) -> None:
        self._lifecycle(
            "reset", self.clients.instances.reset_unary, compute_v1.ResetInstanceRequest, machine
        )

    def _logs(self, machine: Machine) -> str:
        output = self._sdk(
            "compute:instances.getSerialPortOutput",
            self.clients.instances.get_serial_port_output,
            project=self.project,
            zone=self.zone,
            instance=machine.name,
        )
        return str(output.contents or "")

    # ------------------------------------------------------------- snapshots

    def _snapshot(self, machine: Machine, name: str) -> Snapshot:
        return self._snapshot_ops.create(machine, name)

    def _snapshots(self, workload: str | None) -> builtins.list[Snapshot]:
        return self._snapshot_ops.list(workload)

    def _delete_snapshot(self, snapshot_id: str) -> None:
        self._snapshot_ops.delete(snapshot_id)

    def _restore(self, machine: Machine, snapshot: Snapshot) -> None:
        self._snapshot_ops.restore(machine, snapshot)

    def stopped(self, machine: Machine) -> Machine:
        """Stop ``machine`` if needed and return its record once TERMINATED."""
        if machine.state == MachineState.STOPPED:
            return machine
        self._stop(machine)
        deadline = time.monotonic() + self.timeout
        (done,) = self._wait_for(machine.workload, [machine], {MachineState.STOPPED}, deadline)
        return done
