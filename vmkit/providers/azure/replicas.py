"""Creating one replica: its public IP, its NIC, for a clone its OS disk, then its VM, and
what is undone when that fails.

A VM is created by name, and two deploys of one workload (two pipelines, two laptops)
send the same names at the same time. The VM PUT therefore carries ``If-None-Match:
*``: it creates the VM or fails with 412 when a VM of that name exists, and never
updates a VM some other call made (a retried PUT whose first answer was lost finds its
own VM the same way). A replica whose VM exists already, with the workload's tag and
spec hash, is adopted: it is the replica, whoever made it. Nothing is ever deleted by
name unless the cloud would refuse to delete it while in use (a NIC or disk attached to a
VM, a public IP attached to a NIC), so a failed create cannot take away a VM, or what a
VM holds, that another deploy made.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions

from vmkit.errors import DeployTimeout, NotFound, ProviderError
from vmkit.machine import Machine, MachineState
from vmkit.provider import SPEC_TAG, WORKLOAD_TAG, CreateRequest
from vmkit.providers.azure import translate as tr
from vmkit.providers.azure.errors import azure_error_code
from vmkit.providers.azure.network import as_dict, nic_addresses
from vmkit.spec import Workload

if TYPE_CHECKING:
    from vmkit.providers.azure.provider import AzureProvider

__all__ = ["Replicas", "for_replica"]

log = logging.getLogger(__name__)

# What the Network RP answers a DELETE of a NIC or public IP that is still attached
# (errors of vmkit/testing/fakes/azure/errors.py: NicInUse, PublicIPAddressCannotBeDeleted).
IN_USE_CODES = frozenset({"NicInUse", "PublicIPAddressCannotBeDeleted"})
# Compute's answer to deleting a disk a VM holds ("Disk X is attached to VM Y.",
# ansible/ansible#54644).
DISK_IN_USE_CODES = frozenset({"OperationNotAllowed"})


class Replicas:
    """Create-by-name of single replicas, through the provider's retried, counted calls."""

    def __init__(self, provider: AzureProvider) -> None:
        self._p = provider

    def create(self, workload: Workload, request: CreateRequest) -> Machine:
        """Public IP and NIC (each awaited), for a clone the OS disk copied from the
        snapshot (awaited), then the VM PUT (not awaited: the deploy waits for every
        replica with one listing per round). Returns the replica's machine, pending, or
        the one already there (see the module). On failure the replica's NIC, public IP
        and copied disk are deleted unless a VM holds them, and the error, renamed for the
        replica, is raised."""
        body = request.body
        vm_name = str(body["virtualMachine"]["name"])
        public: dict[str, str | None] = {}
        try:
            if "publicIPAddress" in body:
                pip = self._p.network.create_public_ip(
                    body["publicIPAddress"]["name"], body["publicIPAddress"]["parameters"]
                )
                public[str(pip.get("id") or "").lower()] = (pip.get("properties") or {}).get(
                    "ipAddress"
                )
            nic = self._p.network.create_nic(
                body["networkInterface"]["name"], body["networkInterface"]["parameters"]
            )
        except ProviderError as exc:
            self.discard(body)
            raise for_replica(exc, vm_name) from exc
        if "osDisk" in body:
            try:
                self._p._lro(
                    "compute:CreateDisk",
                    self._p.clients.compute.disks.begin_create_or_update,
                    self._p.resource_group,
                    str(body["osDisk"]["name"]),
                    dict(body["osDisk"]["parameters"]),
                )
            except ProviderError as exc:
                # A VM of that name may hold a disk of that name made from another source.
                existing = self._existing(workload, vm_name, exc)
                if existing is not None:
                    return existing
                self.discard(body)
                raise for_replica(exc, vm_name) from exc
        try:
            vm = as_dict(self._put_vm(vm_name, body["virtualMachine"]["parameters"]))
        except ProviderError as exc:
            existing = self._existing(workload, vm_name, exc)
            if existing is not None:
                return existing
            self.discard(body)
            raise for_replica(exc, vm_name) from exc
        private_ip, public_ip = nic_addresses(nic, public)
        machine = tr.to_machine(vm, None, private_ip=private_ip, public_ip=public_ip)
        return replace(machine, state=MachineState.PENDING)

    def _put_vm(self, name: str, parameters: Any) -> Any:
        """The VM PUT alone: ``If-None-Match: *`` (the SDK's ``MatchConditions.IfMissing``,
        ``prep_if_none_match`` in azure/mgmt/compute/_utils/utils.py), and no polling
        (``polling=False`` answers the PUT's own body)."""
        # The models are mappings of the REST JSON: the body goes as the plan shows it.
        vms: Any = self._p.clients.compute.virtual_machines

        def put() -> Any:
            return vms.begin_create_or_update(
                self._p.resource_group,
                name,
                dict(parameters),
                match_condition=MatchConditions.IfMissing,
                polling=False,
            ).result()

        return self._p._call("compute:CreateVM", put)

    def _existing(self, workload: Workload, vm_name: str, cause: ProviderError) -> Machine | None:
        """The VM named ``vm_name`` when it is this workload's replica of this spec (made
        by an earlier try of this request or by another deploy): adopted. None when there
        is no VM of that name; ProviderError when one of another workload or spec holds
        the name (left alone)."""
        try:
            vm = as_dict(
                self._p._call(
                    "compute:GetVM",
                    self._p.clients.compute.virtual_machines.get,
                    self._p.resource_group,
                    vm_name,
                )
            )
        except NotFound:
            return None
        except ProviderError as exc:
            log.warning("azure: cannot read VM %s after its create failed: %s", vm_name, exc)
            return None
        tags = vm.get("tags") or {}
        if tags.get(WORKLOAD_TAG) != workload.name or tags.get(SPEC_TAG) != workload.spec_hash:
            owner = tags.get(WORKLOAD_TAG)
            what = f"of workload {owner!r}" if owner else "not made by vmkit"
            if owner == workload.name:
                what = "of another spec of this workload"
            raise ProviderError(
                f"{vm_name}: a VM of that name exists, {what}; vmkit leaves it alone",
                provider="azure",
                operation="compute:CreateVM",
            ) from cause
        log.info("azure: %s exists already with this spec: adopted", vm_name)
        return replace(tr.to_machine(vm, None), state=MachineState.PENDING)

    def discard(self, body: Any) -> None:
        """Delete the NIC, then the public IP, then a clone's disk, of a replica that has no
        VM. Best effort: one still in use (another deploy's VM holds it) is left, as is
        one the cloud would not delete now; the create's own error is what the caller
        must see."""
        network, compute = self._p.clients.network, self._p.clients.compute
        steps: list[tuple[str, Any, str, frozenset[str]]] = [
            (
                "network:DeleteNIC",
                network.network_interfaces.begin_delete,
                str(body["networkInterface"]["name"]),
                IN_USE_CODES,
            )
        ]
        if "publicIPAddress" in body:
            steps.append(
                (
                    "network:DeletePublicIP",
                    network.public_ip_addresses.begin_delete,
                    str(body["publicIPAddress"]["name"]),
                    IN_USE_CODES,
                )
            )
        if "osDisk" in body:
            steps.append(
                (
                    "compute:DeleteDisk",
                    compute.disks.begin_delete,
                    str(body["osDisk"]["name"]),
                    DISK_IN_USE_CODES,
                )
            )
        for operation, begin, name, in_use in steps:
            try:
                self._p._lro(operation, begin, self._p.resource_group, name)
            except NotFound:
                continue
            except ProviderError as exc:
                if azure_error_code(exc) in in_use:
                    log.info("azure: %s is in use, kept", name)
                else:
                    log.warning("azure: could not delete %s: %s", name, exc)


def for_replica(exc: ProviderError, replica: str) -> ProviderError:
    """``exc`` again, same type, its message prefixed with the replica's name."""
    message = f"{replica}: {exc}"
    if isinstance(exc, DeployTimeout):
        return DeployTimeout(
            message, pending=exc.pending, provider=exc.provider, operation=exc.operation
        )
    return type(exc)(message, provider=exc.provider, operation=exc.operation)
