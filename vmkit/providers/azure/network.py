"""What a workload's VMs share on Azure (resource group, NSG, virtual network) and
what each replica owns besides its VM (NIC, public IP, OS disk)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from vmkit.errors import NotFound, ProviderError
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

    def delete_leftovers(self, vm_name: str, raw: Mapping[str, Any] | None = None) -> None:
        """Delete the NIC, public IP and OS disk of a VM that is gone, by the names in its
        record (``raw``) and vmkit's deterministic ones. An absent one answers 204 at
        once, so this also checks that deleteOption left nothing behind."""
        rg, clients = self._p.resource_group, self._p.clients
        props = (raw or {}).get("properties") or {}
        nics = {tr.nic_name(vm_name)}
        for ref in (props.get("networkProfile") or {}).get("networkInterfaces") or []:
            parsed = tr.parse_id(str(ref.get("id") or ""))
            if parsed is not None:
                nics.add(parsed.name)
        disks = {tr.os_disk_name(vm_name)}
        disk_id = ((props.get("storageProfile") or {}).get("osDisk") or {}).get("managedDisk") or {}
        parsed_disk = tr.parse_id(str(disk_id.get("id") or ""))
        if parsed_disk is not None:
            disks.add(parsed_disk.name)
        steps: list[tuple[str, Any, str]] = [
            *(
                ("network:DeleteNIC", clients.network.network_interfaces.begin_delete, n)
                for n in sorted(nics)
            ),
            (
                "network:DeletePublicIP",
                clients.network.public_ip_addresses.begin_delete,
                tr.ip_name(vm_name),
            ),
            *(("compute:DeleteDisk", clients.compute.disks.begin_delete, d) for d in sorted(disks)),
        ]
        for operation, begin, name in steps:
            try:
                self._p._lro(operation, begin, rg, name)
            except NotFound:
                continue

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
