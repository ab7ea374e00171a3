"""What vmkit made in a resource group that no VM owns any more: for ``Provider.gc``.

Ownership is the cloud's own: a NIC names the VM that uses it
(``properties.virtualMachine``), a public IP the NIC ipConfiguration it is on
(``properties.ipConfiguration``), a managed disk its state (``diskState``
Unattached, no ``managedBy``), an NSG the NICs and subnets associated with it
(NetworkInterface, PublicIPAddress, Disk and NetworkSecurityGroup in
https://learn.microsoft.com/rest/api/virtualnetwork/ and
https://learn.microsoft.com/rest/api/compute/disks/get). Only what carries vmkit's
workload tag counts, and vmkit's own virtual network (tagged ``vmkit-managed``);
snapshots are backups and are never listed. An OS disk made by a VM PUT carries no
tag (Azure does not copy a VM's tags to it), so one left behind is not found: vmkit
creates VMs with deleteOption Delete on the OS disk, which leaves none. The disks vmkit
makes itself (a clone's OS disk, a restore's new disk) carry the workload's tags, so one
a crash left unattached is found once it is older than a restore takes, and (while the
workload has a VM) detached longer ago than that.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vmkit.errors import NotFound
from vmkit.machine import Orphan
from vmkit.plan import recent
from vmkit.provider import WORKLOAD_TAG
from vmkit.providers.azure import translate as tr

if TYPE_CHECKING:
    from vmkit.providers.azure.provider import AzureProvider

__all__ = ["DELETE_ORDER", "Orphans"]

log = logging.getLogger(__name__)

Json = dict[str, Any]

#: A disk's "last attached or detached" time, so spelled in the REST JSON
#: (Disk.last_ownership_update_time of azure-mgmt-compute: name="LastOwnershipUpdateTime").
OWNERSHIP_TIME = "LastOwnershipUpdateTime"
#: Kinds in the order they can be deleted: a NIC before the public IP and NSG it uses,
#: the NICs before the virtual network they sit in.
DELETE_ORDER = ("nic", "public-ip", "disk", "security-group", "virtual-network")


class Orphans:
    """Finding and deleting orphans, through the provider's retried, counted calls."""

    def __init__(self, provider: AzureProvider) -> None:
        self._p = provider

    def find(self, workload: str | None) -> list[Orphan]:
        """Read-only: the orphans of ``workload`` (of every workload, and vmkit's virtual
        network, when None). See the module for what counts."""
        p, rg = self._p, self._p.resource_group
        network, compute = p.clients.network, p.clients.compute
        try:
            nics = p._paged("network:ListNICs", network.network_interfaces.list, rg)
        except NotFound:
            return []  # no resource group: nothing at all
        pips = p._paged("network:ListPublicIPs", network.public_ip_addresses.list, rg)
        disks = p._paged("compute:ListDisks", compute.disks.list_by_resource_group, rg)
        nsgs = p._paged("network:ListNSGs", network.network_security_groups.list, rg)
        vnets = p._paged("network:ListVirtualNetworks", network.virtual_networks.list, rg)
        now = datetime.now(UTC)
        alive = {
            str((vm.get("tags") or {}).get(WORKLOAD_TAG)) for vm in p._machines.owned_vms(None)
        }

        def mine(resource: Json) -> str | None:
            owner = (resource.get("tags") or {}).get(WORKLOAD_TAG)
            return str(owner) if owner is not None else None

        found: list[Orphan] = []
        loose_nics = {
            _key(nic)
            for nic in nics
            if mine(nic) is not None and not (nic.get("properties") or {}).get("virtualMachine")
        }
        for nic in nics:
            if _key(nic) in loose_nics:
                found.append(self._orphan("nic", nic, mine(nic), "attached to no VM"))
        for pip in pips:
            user = _ref((pip.get("properties") or {}).get("ipConfiguration"))
            if mine(pip) is None:
                continue
            if user is None:
                found.append(self._orphan("public-ip", pip, mine(pip), "on no network interface"))
            elif _owner_nic(user) in loose_nics:
                found.append(self._orphan("public-ip", pip, mine(pip), "on an orphaned NIC only"))
        for disk in disks:
            props = disk.get("properties") or {}
            # Made a moment ago, it may be a restore's, about to be swapped in; detached
            # a moment ago from a VM of a live workload, a restore's old OS disk, which
            # a restore that fails swaps back ("LastOwnershipUpdateTime": when the disk
            # was last attached or detached, Disk of the Compute REST reference).
            moving = recent(props.get("timeCreated"), now) or (
                mine(disk) in alive and recent(props.get(OWNERSHIP_TIME), now)
            )
            if (
                mine(disk) is not None
                and str(props.get("diskState") or "").lower() == "unattached"
                and not disk.get("managedBy")
                and not moving
            ):
                found.append(self._orphan("disk", disk, mine(disk), "attached to no VM"))
        for nsg in nsgs:
            owner = mine(nsg)
            if owner is None or owner in alive or nsg.get("name") != tr.nsg_name(owner):
                continue
            props = nsg.get("properties") or {}
            users = [_owner_nic(_ref(n) or "") for n in props.get("networkInterfaces") or []]
            if props.get("subnets") or any(u not in loose_nics for u in users):
                continue  # a user associated it with something vmkit did not make
            found.append(self._orphan("security-group", nsg, owner, "its workload has no VM"))
        if workload is None:
            found.extend(self._idle_networks(vnets, loose_nics))
        return [o for o in found if workload is None or o.workload == workload]

    def _idle_networks(self, vnets: list[Json], loose_nics: set[str]) -> list[Orphan]:
        """vmkit's virtual network when every NIC in it is an orphan."""
        idle = []
        for vnet in vnets:
            if (vnet.get("tags") or {}).get(tr.MANAGED_TAG) != "true":
                continue
            subnets = (vnet.get("properties") or {}).get("subnets") or []
            users = [
                _owner_nic(_ref(config) or "")
                for subnet in subnets
                for config in (subnet.get("properties") or {}).get("ipConfigurations") or []
            ]
            if all(u in loose_nics for u in users):
                idle.append(self._orphan("virtual-network", vnet, None, "no machine uses it"))
        return idle

    def delete(self, orphans: Sequence[Orphan]) -> None:
        """Delete ``orphans`` kind by kind (see DELETE_ORDER), each awaited, ``concurrency``
        at a time; one already gone is fine. Raises the first error after each kind."""
        begins = {
            "nic": ("network:DeleteNIC", self._p.clients.network.network_interfaces),
            "public-ip": ("network:DeletePublicIP", self._p.clients.network.public_ip_addresses),
            "disk": ("compute:DeleteDisk", self._p.clients.compute.disks),
            "security-group": (
                "network:DeleteNSG",
                self._p.clients.network.network_security_groups,
            ),
            "virtual-network": (
                "network:DeleteVirtualNetwork",
                self._p.clients.network.virtual_networks,
            ),
        }
        for kind in DELETE_ORDER:
            batch = [o for o in orphans if o.kind == kind]
            if not batch:
                continue
            operation, operations = begins[kind]
            self._p.network.delete_each(operation, operations, [self._target(o) for o in batch])

    def _target(self, orphan: Orphan) -> tuple[str, str]:
        """The (resource group, name) of ``orphan``: the group from its id, else ours."""
        parsed = tr.parse_id(orphan.id)
        group = parsed.resource_group if parsed is not None else self._p.resource_group
        return group, orphan.name

    def _orphan(self, kind: str, resource: Json, workload: str | None, reason: str) -> Orphan:
        return Orphan(
            kind=kind,
            id=str(resource.get("id") or ""),
            name=str(resource.get("name") or ""),
            provider="azure",
            workload=workload,
            reason=reason,
            raw=resource,
        )


def _ref(obj: Any) -> str | None:
    if isinstance(obj, dict) and obj.get("id"):
        return str(obj["id"])
    return None


def _key(resource: Json) -> str:
    return str(resource.get("id") or "").lower()


def _owner_nic(config_id: str) -> str:
    """The NIC id of ``.../networkInterfaces/<nic>/ipConfigurations/<name>``, lower case."""
    return config_id.lower().split("/ipconfigurations/", 1)[0]
