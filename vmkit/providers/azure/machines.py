"""Finding vmkit's VMs: the listing of a resource group's machines and the lookup of one
by id, with their power states and addresses."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from vmkit.errors import NotFound
from vmkit.machine import Machine
from vmkit.provider import WORKLOAD_TAG
from vmkit.providers.azure import translate as tr
from vmkit.providers.azure.network import as_dict, nic_addresses

if TYPE_CHECKING:
    from vmkit.providers.azure.provider import AzureProvider

__all__ = ["Machines", "is_vm_id"]

# A vmId is the VM's 128-bit unique id, read-only, written as a GUID (8-4-4-4-12 hex):
# learn.microsoft.com/dotnet/api/azure.resourcemanager.compute.models.virtualmachinepatch.vmid
_VM_ID = re.compile(r"^[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}$", re.IGNORECASE)


class Machines:
    """Listings and lookups of the group's VMs, through the provider's retried, counted
    calls."""

    def __init__(self, provider: AzureProvider) -> None:
        self._p = provider

    def owned_vms(self, workload: str | None) -> list[dict[str, Any]]:
        """The group's VMs that carry a vmkit workload tag (of ``workload``), from one
        paged listing; none when the resource group does not exist yet."""
        compute = self._p.clients.compute
        try:
            vms = self._p._paged(
                "compute:ListVMs", compute.virtual_machines.list, self._p.resource_group
            )
        except NotFound:
            return []
        return [
            vm
            for vm in vms
            if WORKLOAD_TAG in (vm.get("tags") or {})
            and (workload is None or (vm.get("tags") or {}).get(WORKLOAD_TAG) == workload)
        ]

    def list(self, workload: str | None) -> list[Machine]:
        """The managed machines (of ``workload``), with power states and addresses."""
        # The VM listing has the tags but not the power state, and Azure's listings
        # cannot return both (Azure/azure-rest-api-specs#42411: $expand=instanceView
        # needs a VMSS $filter; statusOnly=true drops the tags, azure-sdk-for-go#18565):
        # one listing of the group's VMs, one status listing of the subscription, and
        # for addresses one of the group's NICs and one of its public IPs. Four calls
        # (per page) per round, whatever the number of machines, in two round trips.
        owned = self.owned_vms(workload)
        if not owned:
            return []
        # The status and address listings do not depend on each other: one
        # round trip for both instead of two (three with the IPs).
        with ThreadPoolExecutor(2, thread_name_prefix="vmkit-azure-list") as pool:
            pending_statuses = pool.submit(self._statuses)
            pending_addresses = pool.submit(self._p.network.addresses)
        statuses, addresses = pending_statuses.result(), pending_addresses.result()
        machines = []
        for vm in owned:
            name = str(vm["name"]).lower()
            private_ip, public_ip = addresses.get(name, (None, None))
            machines.append(
                tr.to_machine(vm, statuses.get(name), private_ip=private_ip, public_ip=public_ip)
            )
        return machines

    def _statuses(self) -> dict[str, dict[str, Any]]:
        """The instance views of the group's VMs, by lower-cased name."""
        statuses: dict[str, dict[str, Any]] = {}
        group = self._p.resource_group.lower()
        for item in self._p._paged(
            "compute:ListVMStatuses",
            self._p.clients.compute.virtual_machines.list_all,
            status_only="true",
        ):
            parsed = tr.parse_id(str(item.get("id") or ""))
            if parsed is not None and parsed.resource_group.lower() == group:
                view = (item.get("properties") or {}).get("instanceView")
                statuses[parsed.name.lower()] = dict(view or {})
        return statuses

    def get(self, machine_id: str) -> Machine:
        """The managed machine of ``machine_id``; NotFound when there is none.

        A vmId (see :func:`translate.machine_id`) is looked up in one listing of the
        group's VMs, case-insensitively, then read by name with its instance view; a VM
        of that name that has another vmId by then is NotFound too. The bare ARM id of
        a VM of the group is read directly. Anything else is NotFound without an API call.
        """
        text = machine_id.strip()
        wanted = text
        if is_vm_id(wanted):
            found = next(
                (
                    vm
                    for vm in self.owned_vms(None)
                    if str((vm.get("properties") or {}).get("vmId") or "").lower() == wanted.lower()
                ),
                None,
            )
            if found is None:
                raise NotFound(f"no machine {machine_id}", provider="azure")
            return self._read(machine_id, str(found["name"]), wanted)
        parsed = tr.parse_id(text)
        if parsed is None or parsed.provider_type.lower() != tr.VM_TYPE.lower():
            raise NotFound(f"no machine {machine_id}", provider="azure")
        inside = (parsed.subscription.lower(), parsed.resource_group.lower()) == (
            self._p.subscription_id.lower(),
            self._p.resource_group.lower(),
        )
        if not inside:
            raise NotFound(f"{machine_id} is outside {self._p.resource_group}", provider="azure")
        return self._read(machine_id, parsed.name, None)

    def _read(self, machine_id: str, name: str, vm_id: str | None) -> Machine:
        """The VM ``name`` with its instance view and addresses; NotFound unless vmkit
        manages it and (when given) its vmId is ``vm_id``."""
        try:
            vm = as_dict(
                self._p._call(
                    "compute:GetVM",
                    self._p.clients.compute.virtual_machines.get,
                    self._p.resource_group,
                    name,
                    expand="instanceView",
                )
            )
        except NotFound as exc:
            raise NotFound(f"no machine {machine_id}", provider="azure") from exc
        if WORKLOAD_TAG not in (vm.get("tags") or {}):
            raise NotFound(f"no machine {machine_id} managed by vmkit", provider="azure")
        if vm_id and str((vm.get("properties") or {}).get("vmId") or "").lower() != vm_id.lower():
            raise NotFound(
                f"machine {machine_id} was replaced by another VM named {name}", provider="azure"
            )
        view = (vm.get("properties") or {}).get("instanceView")
        private_ip, public_ip = self._addresses_of(vm)
        return tr.to_machine(vm, view, private_ip=private_ip, public_ip=public_ip)

    def _addresses_of(self, vm: dict[str, Any]) -> tuple[str | None, str | None]:
        """(private, public) address of the VM's first NIC, read by id."""
        refs = ((vm.get("properties") or {}).get("networkProfile") or {}).get(
            "networkInterfaces"
        ) or []
        nic_ref = tr.parse_id(str(refs[0].get("id") or "")) if refs else None
        if nic_ref is None:
            return None, None
        network = self._p.clients.network
        try:
            nic = as_dict(
                self._p._call(
                    "network:GetNIC",
                    network.network_interfaces.get,
                    nic_ref.resource_group,
                    nic_ref.name,
                )
            )
        except NotFound:
            return None, None
        public: dict[str, str | None] = {}
        for config in (nic.get("properties") or {}).get("ipConfigurations") or []:
            pip_ref = tr.parse_id(
                str(((config.get("properties") or {}).get("publicIPAddress") or {}).get("id") or "")
            )
            if pip_ref is None:
                continue
            try:
                pip = as_dict(
                    self._p._call(
                        "network:GetPublicIP",
                        network.public_ip_addresses.get,
                        pip_ref.resource_group,
                        pip_ref.name,
                    )
                )
            except NotFound:
                continue
            public[str(pip.get("id") or "").lower()] = (pip.get("properties") or {}).get(
                "ipAddress"
            )
        return nic_addresses(nic, public)


def is_vm_id(value: str) -> bool:
    """Whether ``value`` has the form of a vmId (a GUID, any case)."""
    return _VM_ID.match(value) is not None
