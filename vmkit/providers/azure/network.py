"""What a workload's VMs share on Azure (resource group, NSG, virtual network) and
what each replica owns besides its VM (NIC, public IP, OS disk)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from vmkit.errors import NotFound, ProviderError
from vmkit.machine import Machine
from vmkit.providers.azure import translate as tr
from vmkit.providers.azure.errors import azure_error_code
from vmkit.spec import Workload

if TYPE_CHECKING:
    from vmkit.providers.azure.provider import AzureProvider

__all__ = ["Network", "as_dict", "nic_addresses"]

log = logging.getLogger(__name__)

# The Network RP's answers when a subnet or NSG is still referenced.
IN_USE_CODES = frozenset(
    {
        "InUseSubnetCannotBeDeleted",
        "InUseNetworkSecurityGroupCannotBeDeleted",
        "NetworkSecurityGroupInUse",
    }
)


class Network:
    """Resource group, NSGs, virtual network, NICs and public IPs, through the
    provider's retried, counted calls."""

    def __init__(self, provider: AzureProvider) -> None:
        self._p = provider

    # ------------------------------------------------------------------ shared

    def ensure_group(self) -> None:
        """Create the resource group when it does not exist (never changes an existing one)."""
        rg = self._p.resource_group
        groups = self._p.clients.resources.resource_groups
        if self._p._call("resources:CheckResourceGroup", groups.check_existence, rg):
            return
        self._p._call(
            "resources:CreateResourceGroup",
            groups.create_or_update,
            rg,
            {"location": self._p.location, "tags": {tr.MANAGED_TAG: "true"}},
        )

    def ensure(self, workload: Workload) -> None:
        """The workload's NSG with exactly the declared rules, and vmkit's virtual network
        unless the workload names its own subnet. Idempotent (PUT by name)."""
        self.ensure_group()
        network = self._p.clients.network
        self._p._lro(
            "network:CreateNSG",
            network.network_security_groups.begin_create_or_update,
            self._p.resource_group,
            tr.nsg_name(workload.name),
            tr.nsg_body(workload, self._p.location),
        )
        if tr.parse_options(workload).subnet_id is None:
            self._ensure_vnet()

    def _ensure_vnet(self) -> None:
        rg, network = self._p.resource_group, self._p.clients.network
        try:
            self._p._call(
                "network:GetSubnet", network.subnets.get, rg, tr.VNET_NAME, tr.SUBNET_NAME
            )
            return
        except NotFound:
            pass
        try:
            self._p._call(
                "network:GetVirtualNetwork", network.virtual_networks.get, rg, tr.VNET_NAME
            )
        except NotFound:
            self._p._lro(
                "network:CreateVirtualNetwork",
                network.virtual_networks.begin_create_or_update,
                rg,
                tr.VNET_NAME,
                tr.vnet_body(self._p.location),
            )
            return
        # The network is there but someone removed vmkit's subnet: put it back alone,
        # a PUT of the whole network would drop the subnets others added.
        subnet = tr.vnet_body(self._p.location)["properties"]["subnets"][0]
        self._p._lro(
            "network:CreateSubnet",
            network.subnets.begin_create_or_update,
            rg,
            tr.VNET_NAME,
            tr.SUBNET_NAME,
            {"properties": subnet["properties"]},
        )

    def delete_shared(self, workload: str) -> None:
        """Delete the workload's NSG, then vmkit's virtual network when vmkit made it and
        no NIC is left in it (other workloads of the group may still use it). A user's
        subnet is never touched."""
        rg, network = self._p.resource_group, self._p.clients.network
        try:
            self._p._lro(
                "network:DeleteNSG",
                network.network_security_groups.begin_delete,
                rg,
                tr.nsg_name(workload),
            )
        except NotFound:
            return  # no resource group: nothing else to delete either
        try:
            vnet = as_dict(
                self._p._call(
                    "network:GetVirtualNetwork", network.virtual_networks.get, rg, tr.VNET_NAME
                )
            )
        except NotFound:
            return
        if (vnet.get("tags") or {}).get(tr.MANAGED_TAG) != "true":
            return
        subnets = (vnet.get("properties") or {}).get("subnets") or []
        if any((s.get("properties") or {}).get("ipConfigurations") for s in subnets):
            return
        try:
            self._p._lro(
                "network:DeleteVirtualNetwork",
                network.virtual_networks.begin_delete,
                rg,
                tr.VNET_NAME,
            )
        except ProviderError as exc:
            # Another workload's deploy put a NIC in it meanwhile.
            if azure_error_code(exc) not in IN_USE_CODES:
                raise
            log.info("azure: %s is in use, kept", tr.VNET_NAME)

    # ------------------------------------------------------------- per replica

    def create_public_ip(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the replica's public IP and wait for it."""
        return as_dict(
            self._p._lro(
                "network:CreatePublicIP",
                self._p.clients.network.public_ip_addresses.begin_create_or_update,
                self._p.resource_group,
                name,
                dict(body),
            )
        )

    def create_nic(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the replica's NIC and wait for it."""
        return as_dict(
            self._p._lro(
                "network:CreateNIC",
                self._p.clients.network.network_interfaces.begin_create_or_update,
                self._p.resource_group,
                name,
                dict(body),
            )
        )

    def delete_leftovers(self, machines: Sequence[Machine]) -> None:
        """Delete what the VMs of ``machines`` (deleted by now) leave behind: their NICs,
        public IPs and OS disks by vmkit's names and the names in each VM's record.

        VMs vmkit makes delete their NIC, public IP and OS disk with them (``deleteOption``
        Delete), so there is usually nothing left: one listing each of the group's NICs,
        public IPs and disks, sent together, shows what is still there, and only that is
        deleted (a VM made without those deleteOptions leaves them all). The listings come
        from the resource providers themselves: ARM's generic resource listing is served
        from a cache that can lag behind (Azure/AKS#1964, Azure/azure-rest-api-specs#21221).
        What another VM holds now (one made again under the same name) is left alone.
        NICs go first: a public IP cannot be deleted while a NIC uses it."""
        if not machines:
            return
        nics: set[str] = set()
        pips: set[str] = set()
        disks: set[str] = set()
        for machine in machines:
            props = (machine.raw or {}).get("properties") or {}
            nics.add(tr.nic_name(machine.name).lower())
            for ref in (props.get("networkProfile") or {}).get("networkInterfaces") or []:
                parsed = tr.parse_id(str(ref.get("id") or ""))
                if parsed is not None:
                    nics.add(parsed.name.lower())
            pips.add(tr.ip_name(machine.name).lower())
            disks.add(tr.os_disk_name(machine.name).lower())
            os_disk = (props.get("storageProfile") or {}).get("osDisk") or {}
            parsed_disk = tr.parse_id(str((os_disk.get("managedDisk") or {}).get("id") or ""))
            if parsed_disk is not None:
                disks.add(parsed_disk.name.lower())
        try:
            found_nics, found_pips, found_disks = self._listings()
        except NotFound:
            return  # no resource group: nothing left
        doomed_nics = [
            n
            for n in found_nics
            if str(n.get("name")).lower() in nics
            and not (n.get("properties") or {}).get("virtualMachine")
        ]
        doomed_ids = {str(n.get("id") or "").lower() for n in doomed_nics}
        doomed_pips = []
        for pip in found_pips:
            if str(pip.get("name")).lower() not in pips:
                continue
            config = ((pip.get("properties") or {}).get("ipConfiguration") or {}).get("id")
            user = str(config or "").lower().split("/ipconfigurations/", 1)[0]
            if not config or user in doomed_ids:
                doomed_pips.append(pip)
        doomed_disks = [
            d for d in found_disks if str(d.get("name")).lower() in disks and not d.get("managedBy")
        ]
        clients = self._p.clients
        for operation, operations, batch in (
            ("network:DeleteNIC", clients.network.network_interfaces, doomed_nics),
            ("network:DeletePublicIP", clients.network.public_ip_addresses, doomed_pips),
            ("compute:DeleteDisk", clients.compute.disks, doomed_disks),
        ):
            rg = self._p.resource_group
            self.delete_each(operation, operations, [(rg, str(r["name"])) for r in batch])

    def _listings(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """The group's NICs, public IPs and disks, listed together (one round trip)."""
        p, rg = self._p, self._p.resource_group
        with ThreadPoolExecutor(3, thread_name_prefix="vmkit-azure-list") as pool:
            nics = pool.submit(
                p._paged, "network:ListNICs", p.clients.network.network_interfaces.list, rg
            )
            pips = pool.submit(
                p._paged, "network:ListPublicIPs", p.clients.network.public_ip_addresses.list, rg
            )
            disks = pool.submit(
                p._paged, "compute:ListDisks", p.clients.compute.disks.list_by_resource_group, rg
            )
        return nics.result(), pips.result(), disks.result()

    def delete_each(
        self, operation: str, operations: Any, targets: Sequence[tuple[str, str]]
    ) -> None:
        """Delete the (resource group, name) ``targets`` with ``operations.begin_delete``,
        awaited, ``concurrency`` at a time; one gone already is fine. Raises the first
        error once all were tried."""
        if not targets:
            return

        def remove(target: tuple[str, str]) -> None:
            try:
                self._p._lro(operation, operations.begin_delete, *target)
            except NotFound:
                return

        workers = min(self._p.concurrency, len(targets))
        with ThreadPoolExecutor(workers, thread_name_prefix="vmkit-azure-delete") as pool:
            futures = [pool.submit(remove, target) for target in targets]
        for future in futures:
            future.result()

    def addresses(self) -> dict[str, tuple[str | None, str | None]]:
        """``{vm name (lower case): (private IP, public IP)}`` from one listing of the
        group's NICs and one of its public IPs."""
        rg, network = self._p.resource_group, self._p.clients.network
        with ThreadPoolExecutor(1, thread_name_prefix="vmkit-azure-list") as pool:
            pending = pool.submit(
                self._p._paged, "network:ListPublicIPs", network.public_ip_addresses.list, rg
            )
            nics = self._p._paged("network:ListNICs", network.network_interfaces.list, rg)
        pips = pending.result()
        public = {
            str(p.get("id") or "").lower(): (p.get("properties") or {}).get("ipAddress")
            for p in pips
        }
        found: dict[str, tuple[str | None, str | None]] = {}
        for nic in nics:
            props = nic.get("properties") or {}
            vm = tr.parse_id(str((props.get("virtualMachine") or {}).get("id") or ""))
            if vm is None:
                continue
            found[vm.name.lower()] = nic_addresses(nic, public)
        return found


def nic_addresses(
    nic: Mapping[str, Any], public: Mapping[str, str | None]
) -> tuple[str | None, str | None]:
    """(private, public) address of a NIC's primary ipConfiguration; ``public`` maps
    lower-cased public IP ids to their address."""
    configs = (nic.get("properties") or {}).get("ipConfigurations") or []
    primary = next(
        (c for c in configs if (c.get("properties") or {}).get("primary")),
        configs[0] if configs else None,
    )
    if primary is None:
        return None, None
    props = primary.get("properties") or {}
    pip_id = str((props.get("publicIPAddress") or {}).get("id") or "").lower()
    return props.get("privateIPAddress"), public.get(pip_id) if pip_id else None


def as_dict(model: Any) -> dict[str, Any]:
    """An azure-mgmt model (a mapping of its REST JSON) as a plain dict."""
    if model is None:
        return {}
    if hasattr(model, "as_dict"):
        return dict(model.as_dict())
    return dict(model)
