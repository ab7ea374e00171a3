"""The Azure backend: workloads as Azure VMs in one resource group, found by their tags.

See :class:`vmkit.provider.Provider` for the guarantees. What is specific to Azure is
documented on :class:`AzureProvider`.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import threading
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any

from azure.core.credentials import TokenCredential
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vmkit.catalog import fitting_types, resolve_image, resolve_instance_type
from vmkit.errors import (
    AuthError,
    ConfigError,
    NotFound,
    ProviderError,
    QuotaExceeded,
    SpecError,
)
from vmkit.machine import Machine, Orphan, Snapshot
from vmkit.provider import CreateRequest, Provider
from vmkit.providers.azure import disk_shapes as ds
from vmkit.providers.azure import translate as tr
from vmkit.providers.azure.clients import AnonymousCredential, AzureClients, make_clients
from vmkit.providers.azure.disks import Disks
from vmkit.providers.azure.errors import QUOTA_CODES, AzureErrors
from vmkit.providers.azure.machines import Machines
from vmkit.providers.azure.network import Network, as_dict
from vmkit.providers.azure.orphans import Orphans
from vmkit.providers.azure.replicas import Replicas, for_replica
from vmkit.render import render_cloud_init
from vmkit.spec import Workload

__all__ = ["AzureProvider"]

log = logging.getLogger(__name__)

# "Custom data ... maximum length of 87380 characters" once base64-encoded
# (VirtualMachine osProfile.customData, Compute REST reference).
CUSTOM_DATA_LIMIT = 87380
# Minutes a boot diagnostics SAS URL stays valid; vmkit reads it at once.
SAS_MINUTES = 5
LOG_FETCH_TIMEOUT = 30.0


class AzureProvider(Provider):
    """Microsoft Azure. ``vmkit.connect("azure", subscription_id=..., resource_group="rg",
    location="eastus")``.

    Options: ``subscription_id`` (else ``AZURE_SUBSCRIPTION_ID``), ``resource_group``
    (created on the first deploy when missing), ``location``, ``credential`` (any
    azure-core ``TokenCredential``; ``DefaultAzureCredential`` when None, built on first
    use), ``endpoint`` (an ARM endpoint instead of management.azure.com; an ``http://``
    one gets a bearer policy allowed over plain http), ``auth`` (``"default"``, or
    ``"anonymous"``: no credential, a fixed placeholder bearer token for an emulator
    that checks none; only with ``endpoint``, so that it can never reach Azure),
    ``polling_interval`` (seconds
    between polls of a long-running operation when ARM sends no Retry-After; the SDK's
    30 by default), ``concurrency`` (replicas created or deleted at once, 10), and the
    shared ``retry_attempts``, ``retry_timeout``, ``poll_interval``, ``timeout``. No API
    call is made on connect.

    What is specific to Azure:

    * VMs are created by name (PUT with ``If-None-Match: *``): a retried create, or a
      concurrent deploy's, makes nothing new, and a VM of the same name, workload and
      spec is adopted as the replica rather than updated or deleted. Each replica is its
      own request (public IP, NIC, then the VM), the replicas of a deploy run
      concurrently and are awaited together with one listing per round.
    * A replica refused at create (QuotaExceeded for the regional vCPU quota) has its
      NIC and public IP deleted before the deploy's error names it; one whose VM fails
      to provision has its VM, NIC, public IP and OS disk deleted.
    * ``gc`` finds, among what carries vmkit's tags: NICs with no VM, public IPs on no
      NIC (or only on such NICs), unattached managed disks, the NSGs of workloads with
      no VM left, and vmkit's virtual network when only those NICs use it. Snapshots
      never count.
    * ``stop`` deallocates: the VM stops billing for compute, its disk is kept.
    * Snapshots are incremental managed snapshots of the OS disk, tagged with the
      machine's workload and replica. ``restore`` makes a disk from one, swaps it in as
      the OS disk while the VM is deallocated, starts the VM and deletes the old disk; a
      restore that fails part-way leaves the VM on its old disk and deletes the new one.
    * Clone: an ``os_image`` that is the ARM id of a snapshot of the subscription makes
      each replica a managed disk copied from it (``<name>-osdisk``, tagged like the
      replica) and a VM that attaches it as its OS disk (``createOption`` Attach, deleted
      with the VM), as Azure documents for a VM from a snapshot. Such a VM takes no
      ``osProfile``: the workload's cloud-init goes in the VM's ``userData``, which
      cloud-init reads when there is no custom data, and ``ssh_public_key`` is refused
      (the clone has the snapshot's logins). A snapshot that does not exist, or lies in
      another region, is a SpecError naming ``os_image`` from ``plan``, before any
      change. ``Machine.image`` is the snapshot's id.
    * ``destroy`` and ``delete`` delete the VMs, then list the group's NICs, public IPs
      and disks once and delete only those of the deleted VMs still there (none when
      Azure honoured the VMs' ``deleteOption``).
    * ``options["azure"]``: ``vm_size`` (always wins), ``subnet_id`` (instead of
      vmkit's virtual network), ``arch``.
    * A machine's id is its VM's ``vmId`` (a GUID Azure gives each VM it creates, so a
      VM made again under the same name is another machine); ``get`` also takes the
      ARM id of a VM of the group. Operations act on the VM by name, after ``get``
      checked that the VM of that name still has the vmId.
    * ``isolation`` other than ``"container"`` is recorded as the VM tag
      ``vmkit-isolation`` (a VM already isolates its workload; nothing else changes).
    """

    name = "azure"
    kind = "vm"
    errors = AzureErrors()

    def __init__(
        self,
        *,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        location: str | None = None,
        credential: TokenCredential | None = None,
        endpoint: str | None = None,
        auth: str = "default",
        polling_interval: float | None = None,
        concurrency: int = 10,
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
        _check_config(subscription_id, resource_group, location, endpoint, concurrency)
        _check_auth(auth, endpoint=endpoint, credential=credential)
        if auth == "anonymous":
            credential = AnonymousCredential()
        self.subscription_id: str = subscription_id or os.environ["AZURE_SUBSCRIPTION_ID"]
        self.resource_group: str = str(resource_group)
        self._location = str(location).replace(" ", "").lower()
        self._credential = credential
        self._endpoint = endpoint
        self._polling_interval = polling_interval
        self.concurrency = concurrency
        # Each replica is its own PUTs by name: a plan's creates go out together.
        self.create_concurrency = concurrency
        self._clients: AzureClients | None = None
        self._clients_lock = threading.Lock()
        self.network = Network(self)
        self._disks = Disks(self)
        self._machines = Machines(self)
        self._replicas = Replicas(self)
        self._orphans_finder = Orphans(self)

    @classmethod
    def credentials_status(cls, **config: Any) -> str | None:
        """None when a credential is given or ``DefaultAzureCredential`` can be built,
        else why not. Requests no token."""
        if not (config.get("subscription_id") or os.environ.get("AZURE_SUBSCRIPTION_ID")):
            return "no subscription: pass subscription_id or set AZURE_SUBSCRIPTION_ID"
        if config.get("auth") == "anonymous":
            return None if config.get("endpoint") else "auth 'anonymous' needs an endpoint"
        if config.get("credential") is not None:
            return None
        try:
            from azure.identity import DefaultAzureCredential

            DefaultAzureCredential()
        except Exception as exc:
            return f"cannot build DefaultAzureCredential: {type(exc).__name__}: {exc}"
        return None

    @property
    def location(self) -> str:
        """The Azure region (canonical form, e.g. ``eastus``)."""
        return self._location

    @property
    def clients(self) -> AzureClients:
        """The Compute, Network and Resources clients (built on first use; calls made on
        them directly are not retried nor counted)."""
        with self._clients_lock:
            if self._clients is None:
                credential = self._credential
                if credential is None:
                    from azure.identity import DefaultAzureCredential

                    credential = DefaultAzureCredential()
                self._clients = make_clients(
                    credential,
                    self.subscription_id,
                    endpoint=self._endpoint,
                    polling_interval=self._polling_interval,
                )
            return self._clients

    # ----------------------------------------------------------------- calls

    def _lro(self, operation: str, begin: Callable[..., Any], *args: Any) -> Any:
        """Start a long-running operation and wait for its end, each under the retry
        policy: a failed start is sent again (every request vmkit starts is idempotent);
        a failed poll resumes polling from the operation's continuation token (azure-core
        ``LROPoller.continuation_token``, taken by every ``begin_*`` as
        ``continuation_token=``) without sending the request again. A poll retried alone
        keeps a lost answer from costing the whole operation."""
        started = self._call(operation, lambda: begin(*args))
        token = started.continuation_token()
        current: builtins.list[Any] = [started]

        def result() -> Any:
            if not current:
                current.append(begin(*args, continuation_token=token))
            try:
                return current[0].result()
            except Exception:
                current.clear()
                raise

        return self._call(operation, result)

    def _paged(
        self, operation: str, list_fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> builtins.list[dict[str, Any]]:
        """Every item of a paged listing; one retried, counted call per page. A failed
        page is fetched again: azure-core's page iterator only moves on after success."""
        pages = list_fn(*args, **kwargs).by_page()
        items: builtins.list[dict[str, Any]] = []
        while True:
            page = self._call(operation, lambda: _next_page(pages))
            if page is not None:
                items.extend(as_dict(item) for item in page)
            # No continuation token: the iterator would end without a request.
            if page is None or getattr(pages, "continuation_token", None) is None:
                return items

    # ------------------------------------------------------------ validation

    def _validate(self, workload: Workload) -> None:
        options = tr.parse_options(workload)
        clone = ds.snapshot_ref(workload.os_image)
        if clone is None:
            tr.image_reference(_image_value(workload.os_image, options.arch))
        else:
            self._check_clone(workload, clone)
        if options.vm_size is None:
            resolve_instance_type("azure", workload.resources, arch=options.arch, available=None)
        user_data = render_cloud_init(workload)
        if user_data is None:
            return
        encoded = 4 * -(-len(user_data.encode()) // 3)
        # A clone's cloud-init goes in userData, an image VM's in customData.
        limit, where = (
            (ds.USER_DATA_LIMIT, "userData") if clone else (CUSTOM_DATA_LIMIT, "customData")
        )
        if encoded > limit:
            raise SpecError(
                "user_data",
                f"the VM's cloud-init comes to {len(user_data.encode())} bytes; Azure takes "
                f"at most {limit} characters of {where} once base64-encoded",
            )

    def _check_clone(self, workload: Workload, snapshot: tr.ArmId) -> None:
        """What a clone cannot have, refused without an API call."""
        if snapshot.subscription.lower() != self.subscription_id.lower():
            raise SpecError(
                "os_image",
                f"snapshot {snapshot.name} is in subscription {snapshot.subscription}; vmkit "
                f"clones snapshots of its own subscription ({self.subscription_id})",
            )
        if workload.ssh_public_key is not None:
            raise SpecError(
                "ssh_public_key",
                "a VM made from a snapshot boots the snapshot's disk as it is: Azure takes no "
                "osProfile (so no SSH key) for it, and its logins are the snapshot's",
            )

    # --------------------------------------------------------------- listing

    def _list(self, workload: str | None) -> builtins.list[Machine]:
        return self._machines.list(workload)

    def _get(self, machine_id: str) -> Machine:
        """See Provider._get. ``machine_id`` is a vmId (or a VM's ARM id): see
        :meth:`Machines.get`."""
        return self._machines.get(machine_id)

    def _failure_reason(self, machine: Machine) -> str:
        view = (machine.raw.get("properties") or {}).get("instanceView")
        return tr.failure_reason(view) or str(machine.state)

    def _failure_error(self, machine: Machine, reason: str) -> ProviderError:
        # An allocation or quota failure while provisioning is a QuotaExceeded,
        # as the same refusal is when the PUT itself is answered with it.
        view = (machine.raw.get("properties") or {}).get("instanceView")
        if tr.failure_code(view) in QUOTA_CODES:
            return QuotaExceeded(reason, provider=self.name, operation="wait")
        return super()._failure_error(machine, reason)

    # -------------------------------------------------------------- planning

    def _build_requests(
        self, workload: Workload, replicas: Sequence[int]
    ) -> builtins.list[CreateRequest]:
        options = tr.parse_options(workload)
        # A clone's snapshot is read first: a missing one is a SpecError naming os_image
        # before the deploy changes anything.
        snapshot = (
            self._disks.clone_source(workload.os_image)
            if ds.snapshot_ref(workload.os_image) is not None
            else None
        )
        vm_size = options.vm_size or self._vm_size(workload, options.arch)
        custom_data = render_cloud_init(workload)
        rg, sub = self.resource_group, self.subscription_id
        subnet_id = options.subnet_id or (
            f"{tr.arm_id(sub, rg, tr.VNET_TYPE, tr.VNET_NAME)}/subnets/{tr.SUBNET_NAME}"
        )
        nsg_id = tr.arm_id(sub, rg, tr.NSG_TYPE, tr.nsg_name(workload.name))
        # A public address only when something is reachable: a declared port, or SSH.
        public = bool(workload.ports) or workload.ssh_public_key is not None
        requests = []
        for replica in replicas:
            name = tr.replica_name(workload.name, replica)
            body: dict[str, Any] = {"resourceGroup": rg}
            pip_id = None
            if public:
                pip_id = tr.arm_id(sub, rg, tr.PIP_TYPE, tr.ip_name(name))
                body["publicIPAddress"] = {
                    "name": tr.ip_name(name),
                    "parameters": tr.public_ip_body(workload, replica, self.location),
                }
            body["networkInterface"] = {
                "name": tr.nic_name(name),
                "parameters": tr.nic_body(
                    workload,
                    replica,
                    self.location,
                    subnet_id=subnet_id,
                    nsg_id=nsg_id,
                    public_ip_id=pip_id,
                ),
            }
            nic_id = tr.arm_id(sub, rg, tr.NIC_TYPE, tr.nic_name(name))
            if snapshot is not None:
                disk_name = tr.os_disk_name(name)
                body["osDisk"] = {
                    "name": disk_name,
                    "parameters": ds.clone_disk_body(workload, replica, self.location, snapshot),
                }
                parameters = ds.clone_vm_body(
                    workload,
                    replica,
                    self.location,
                    vm_size=vm_size,
                    snapshot=snapshot,
                    disk_id=tr.arm_id(sub, rg, tr.DISK_TYPE, disk_name),
                    user_data=custom_data,
                    nic_id=nic_id,
                )
            else:
                parameters = tr.vm_body(
                    workload,
                    replica,
                    self.location,
                    vm_size=vm_size,
                    image=tr.image_reference(_image_value(workload.os_image, options.arch)),
                    custom_data=custom_data,
                    ssh_public_key=workload.ssh_public_key or self._throwaway_key,
                    nic_id=nic_id,
                )
            body["virtualMachine"] = {"name": name, "parameters": parameters}
            requests.append(CreateRequest("azure:CreateVM", (replica,), body))
        return requests

    @cached_property
    def _throwaway_key(self) -> str:
        """An SSH public key whose private half was never kept.

        Azure requires some authentication for a Linux VM; with password login
        disabled and no user key, this key makes the VM reachable by nobody. RSA 3072,
        the key type every Azure image accepts (Ed25519 is not supported everywhere:
        learn.microsoft.com/troubleshoot/azure/virtual-machines/ed25519-ssh-keys).
        """
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        public = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        return public.decode() + " vmkit-no-login"

    def _vm_size(self, workload: Workload, arch: tr.Arch) -> str:
        available: set[str] | None = None
        if fitting_types("azure", workload.resources, arch=arch):
            try:
                sizes = self._paged(
                    "compute:ListVMSizes",
                    self.clients.compute.virtual_machine_sizes.list,
                    self.location,
                )
                available = {str(s["name"]) for s in sizes}
            except AuthError:
                raise
            except ProviderError as exc:
                log.debug("azure: VM sizes unavailable, using the catalog: %s", exc)
        chosen = resolve_instance_type("azure", workload.resources, arch=arch, available=available)
        return chosen.name

    # ---------------------------------------------------------- shared state

    def _ensure_shared(self, workload: Workload) -> None:
        self.network.ensure(workload)

    def _delete_shared(self, workload: str) -> None:
        self.network.delete_shared(workload)

    def _orphans(self, workload: str | None) -> builtins.list[Orphan]:
        """See Provider._orphans and :class:`.orphans.Orphans`."""
        return self._orphans_finder.find(workload)

    def _delete_orphans(self, orphans: Sequence[Orphan]) -> None:
        self._orphans_finder.delete(orphans)

    # -------------------------------------------------------------- creating

    def _create(self, workload: Workload, request: CreateRequest) -> builtins.list[Machine]:
        """See Provider._create. One replica per request; see :mod:`.replicas` for how a
        VM another deploy made under the same name is adopted, never replaced."""
        return [self._replicas.create(workload, request)]

    # -------------------------------------------------------------- deleting

    def _delete(self, machines: Sequence[Machine]) -> None:
        """Delete the VMs, ``concurrency`` at a time, then what those that are gone left
        behind (see :meth:`.network.Network.delete_leftovers`: one listing round, and
        deletes only for what is still there). A VM Azure would not delete (a lock's
        ScopeLocked, say) keeps what it holds, and one error names each such VM."""
        if not machines:
            return
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(machines))) as pool:
            futures = [pool.submit(self._delete_vm, m) for m in machines]
        failed: dict[str, ProviderError] = {}
        for machine, future in zip(machines, futures, strict=True):
            error = future.exception()
            if isinstance(error, ProviderError):
                failed[machine.name] = error
            elif error is not None:
                raise error
        self.network.delete_leftovers([m for m in machines if m.name not in failed])
        if failed:
            first = failed[min(failed)]
            # The SDK's exception stays the cause, as for any other vmkit error.
            raise _not_deleted(failed) from (first.__cause__ or first)

    def _delete_vm(self, machine: Machine) -> None:
        with contextlib.suppress(NotFound):
            self._lro(
                "compute:DeleteVM",
                self.clients.compute.virtual_machines.begin_delete,
                self.resource_group,
                machine.name,
            )

    # ------------------------------------------------------------- lifecycle

    def _power(self, operation: str, begin: Callable[..., Any], machine: Machine) -> None:
        self._lro(operation, begin, self.resource_group, machine.name)

    def _start(self, machine: Machine) -> None:
        self._power("compute:StartVM", self.clients.compute.virtual_machines.begin_start, machine)

    def _stop(self, machine: Machine) -> None:
        # Deallocate, not power off: a powered-off VM keeps its host and is billed.
        self._power(
            "compute:DeallocateVM", self.clients.compute.virtual_machines.begin_deallocate, machine
        )

    def _reboot(self, machine: Machine) -> None:
        self._power(
            "compute:RestartVM", self.clients.compute.virtual_machines.begin_restart, machine
        )

    def _logs(self, machine: Machine) -> str:
        data = as_dict(
            self._call(
                "compute:RetrieveBootDiagnosticsData",
                self.clients.compute.virtual_machines.retrieve_boot_diagnostics_data,
                self.resource_group,
                machine.name,
                sas_uri_expiration_time_in_minutes=SAS_MINUTES,
            )
        )
        url = data.get("serialConsoleLogBlobUri")
        if not url:
            return ""
        # A SAS-signed blob URL outside ARM: fetched without the bearer token (plain
        # urllib, not the ARM pipeline), the signature in the URL is the credential.
        return self._call("storage:GetSerialLog", _fetch_text, str(url))

    # ------------------------------------------------------------- snapshots

    def _snapshot(self, machine: Machine, name: str) -> Snapshot:
        return self._disks.snapshot(machine, name)

    def _snapshots(self, workload: str | None) -> builtins.list[Snapshot]:
        return self._disks.snapshots(workload)

    def _delete_snapshot(self, snapshot_id: str) -> None:
        self._disks.delete(snapshot_id)

    def _restore(self, machine: Machine, snapshot: Snapshot) -> None:
        self._disks.restore(machine, snapshot)


def _next_page(pages: Any) -> builtins.list[Any] | None:
    page = next(pages, None)
    return None if page is None else builtins.list(page)


def _fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=LOG_FETCH_TIMEOUT) as answer:
        data: bytes = answer.read()
    return data.decode("utf-8", errors="replace")


def _not_deleted(failed: dict[str, ProviderError]) -> ProviderError:
    """One error naming every machine the cloud would not delete (a lock's ScopeLocked,
    say), with each one's reason."""
    if len(failed) == 1:
        ((name, error),) = failed.items()
        return for_replica(error, name)
    listed = "; ".join(f"{name} ({error})" for name, error in sorted(failed.items()))
    return ProviderError(
        f"could not delete {len(failed)} machine(s): {listed}", provider="azure", operation="delete"
    )


def _image_value(os_image: str, arch: tr.Arch) -> str:
    return resolve_image("azure", os_image, arch=arch).value


def _check_config(
    subscription_id: str | None,
    resource_group: str | None,
    location: str | None,
    endpoint: str | None,
    concurrency: int,
) -> None:
    if not (subscription_id or os.environ.get("AZURE_SUBSCRIPTION_ID")):
        raise ConfigError(
            "azure: subscription_id is required: connect('azure', subscription_id=...), "
            "or set AZURE_SUBSCRIPTION_ID"
        )
    if not resource_group:
        raise ConfigError("azure: resource_group is required")
    if not location:
        raise ConfigError("azure: location is required, e.g. location='eastus'")
    if endpoint is not None and not endpoint.lower().startswith(("http://", "https://")):
        raise ConfigError(f"azure: endpoint must be an http(s) URL, got {endpoint!r}")
    if concurrency < 1:
        raise ConfigError(f"azure: concurrency must be at least 1, got {concurrency}")


def _check_auth(auth: str, *, endpoint: str | None, credential: object) -> None:
    """Refuse an unknown ``auth``, and anonymous access anywhere but an explicit endpoint."""
    if auth not in ("default", "anonymous"):
        raise ConfigError(f"azure: auth must be 'default' or 'anonymous', got {auth!r}")
    if auth == "anonymous" and endpoint is None:
        raise ConfigError(
            "azure: auth 'anonymous' needs an endpoint (an emulator or fake): Azure "
            "Resource Manager itself refuses calls without a token"
        )
    if auth == "anonymous" and credential is not None:
        raise ConfigError("azure: give a credential or auth 'anonymous', not both")
