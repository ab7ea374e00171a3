"""What happens to a VM after its PUT in the Azure fake: provisioning (and injected
provisioning failures), power actions, the instance view, deletion with its
deleteOptions, boot diagnostics and the serial console log.

Shapes: azure-mgmt-compute 39.0.0 ``models/_models.py`` (VirtualMachineInstanceView,
InstanceViewStatus, RetrieveBootDiagnosticsDataResult, VirtualMachineSize). DELETE
and the power actions answer 202 with ``Azure-AsyncOperation`` and ``Location``
(``VirtualMachinesOperations`` in ``operations/_operations.py``).
"""

from __future__ import annotations

import fnmatch
import math
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from vmkit.testing.fakes._http import Request, Response
from vmkit.testing.fakes.azure import errors
from vmkit.testing.fakes.azure.core import Json
from vmkit.testing.fakes.azure.disks import COMPUTE, DiskApi
from vmkit.testing.fakes.azure.errors import ArmError
from vmkit.testing.fakes.azure.state import VM, Operation, Resource, iso

__all__ = ["ACTIONS", "FailureRule", "VmLifecycle", "computer_name"]

_POWER_DISPLAY = {
    "running": "VM running",
    "stopped": "VM stopped",
    "deallocated": "VM deallocated",
    "starting": "VM starting",
    "stopping": "VM stopping",
    "deallocating": "VM deallocating",
}

# action -> (power state while it runs, power state after)
ACTIONS = {
    "start": ("starting", "running"),
    "powerOff": ("stopping", "stopped"),
    "deallocate": ("deallocating", "deallocated"),
    "restart": ("starting", "running"),
}

_FAILURE_MESSAGES = {
    "AllocationFailed": (
        "Allocation failed. We do not have sufficient capacity for the requested VM size in this "
        "region. Read more about improving likelihood of allocation success at "
        "http://aka.ms/allocation-guidance"
    ),
    "QuotaExceeded": (
        "Operation could not be completed as it results in exceeding approved Total Regional "
        "Cores quota."
    ),
}


@dataclass
class FailureRule:
    """Makes VM creates whose name matches ``pattern`` (a case-insensitive glob) fail."""

    pattern: str
    code: str
    message: str | None = None
    count: int | None = None
    fired: int = 0

    def take(self, name: str) -> bool:
        """True (and counted) when this rule fails a create of ``name``."""
        if self.count is not None and self.count <= 0:
            return False
        if not fnmatch.fnmatchcase(name.lower(), self.pattern.lower()):
            return False
        if self.count is not None:
            self.count -= 1
        self.fired += 1
        return True


class VmLifecycle(DiskApi):
    """Provisioning, power, deletion and diagnostics of VMs."""

    vm_sizes: dict[str, tuple[int, int]]
    _failures: list[FailureRule]
    #: regional vCPU quota by location (None: every location)
    _cores_quota: dict[str | None, int]
    #: ids of the provisioning operations held back, None when not holding
    _held: list[str] | None

    def cores_in_use(self, subscription: str, location: str) -> int:
        """vCPUs the subscription's VMs hold in ``location``. A deallocated VM holds none:
        only allocated VMs count against the regional quota
        (learn.microsoft.com/azure/virtual-machines/quotas)."""
        used = 0
        for vm in self.store.of_type(VM, subscription):
            if vm.location != location or vm.state.get("power") in ("deallocated", "deallocating"):
                continue
            size = vm.properties.get("hardwareProfile", {}).get("vmSize", "")
            used += self.vm_sizes.get(size, (0, 0))[0]
        return used

    def check_cores_quota(self, vm: Resource, size: str) -> None:
        """Refuse (409 OperationNotAllowed) a VM of ``size`` that would pass the regional
        vCPU quota set by :meth:`set_cores_quota`."""
        limit = self._cores_quota.get(vm.location, self._cores_quota.get(None))
        if limit is None:
            return
        usage = self.cores_in_use(vm.subscription, vm.location)
        required = self.vm_sizes[size][0]
        if usage + required > limit:
            raise errors.cores_quota_exceeded(vm.location, limit, usage, required, vm.subscription)

    def _provision(self, vm: Resource, transient: str) -> Operation:
        """Start (or retry) provisioning; an armed FailureRule makes it end Failed."""
        rule = next((r for r in self._failures if r.take(vm.name)), None)
        vm.state["power"] = "starting"

        def done() -> ArmError | None:
            if rule is not None:
                code = rule.code
                message = (
                    rule.message
                    or _FAILURE_MESSAGES.get(code)
                    or f"The operation failed with {code}."
                )
                if code == "SkuNotAvailable" and rule.message is None:
                    message = errors.sku_not_available(vm.id, vm.location, vm.subscription).message
                vm.properties["provisioningState"] = "Failed"
                vm.state.update(power="deallocated", failure=(code, message))
                return ArmError(409, code, message)
            vm.state.pop("failure", None)
            self._booted(vm)
            return None

        op = self.begin(vm, COMPUTE, transient, done)
        if self._held is not None:
            op.done_at = math.inf
            self._held.append(op.id)
        return op

    def _booted(self, vm: Resource) -> None:
        vm.state["power"] = "running"
        host = computer_name(vm)
        for nic_ref in vm.properties["networkProfile"]["networkInterfaces"]:
            nic = self.store.get(nic_ref["id"])
            if nic is not None and "macAddress" not in nic.properties:
                nic.properties["macAddress"] = "00-22-48-" + "-".join(
                    f"{b:02X}" for b in secrets.token_bytes(3)
                )
        now = time.time()
        vm.state["console"] += [
            "[    0.000000] Linux version 6.5.0-1025-azure (buildd@lcy02-amd64) #26-Ubuntu SMP",
            f"[    4.210113] cloud-init[612]: Cloud-init v. 24.1 running 'init' at {iso(now)}.",
            "[    9.778410] cloud-init[981]: Cloud-init v. 24.1 finished. DataSourceAzure.",
            f"Ubuntu 22.04.4 LTS {host} ttyS0",
            f"{host} login: ",
        ]

    def _instance_view(self, vm: Resource) -> Json:
        state = str(vm.properties.get("provisioningState", "Succeeded"))
        failure = vm.state.get("failure")
        if state == "Failed" and failure is not None:
            provisioning: Json = {
                "code": f"ProvisioningState/failed/{failure[0]}",
                "level": "Error",
                "displayStatus": "Provisioning failed",
                "message": failure[1],
            }
        elif state == "Succeeded":
            provisioning = {
                "code": "ProvisioningState/succeeded",
                "level": "Info",
                "displayStatus": "Provisioning succeeded",
            }
        else:
            provisioning = {
                "code": f"ProvisioningState/{state.lower()}",
                "level": "Info",
                "displayStatus": state,
            }
        provisioning["time"] = iso(time.time())
        power = str(vm.state["power"])
        return {
            "computerName": computer_name(vm),
            "osName": "ubuntu",
            "osVersion": "22.04",
            "disks": [
                {
                    "name": vm.properties["storageProfile"]["osDisk"]["name"],
                    "statuses": [dict(provisioning)],
                }
            ],
            "statuses": [
                provisioning,
                {
                    "code": f"PowerState/{power}",
                    "level": "Info",
                    "displayStatus": _POWER_DISPLAY[power],
                },
            ],
        }

    # ------------------------------------------------------------ actions

    def _vm_action(self, request: Request) -> Response:
        vm = self.lookup(request, VM)
        action = next(a for a in ACTIONS if request.path.lower().endswith("/" + a.lower()))
        if action in ("powerOff", "restart") and vm.state["power"] in (
            "deallocated",
            "deallocating",
        ):
            # The Compute RP's wording, e.g. "Operation 'PUT' is not allowed on VM 'avd-0' since
            # the VM is deallocated or marked to be deallocated."
            raise errors.operation_not_allowed(
                f"Operation '{action}' is not allowed on VM '{vm.name}' since the VM is "
                "deallocated or marked to be deallocated."
            )
        if action == "start" and vm.state["power"] == "deallocated":
            # Starting a deallocated VM allocates its cores again.
            self.check_cores_quota(vm, vm.properties["hardwareProfile"]["vmSize"])
        transient, final = ACTIONS[action]
        vm.state["power"] = transient

        def done() -> ArmError | None:
            if final == "running":
                self._booted(vm)
            else:
                vm.state["power"] = final
                vm.state["console"].append("[  OK  ] Reached target System Power Off.")
            return None

        return self.accepted(self.begin(vm, COMPUTE, "Updating", done), request)

    def _vm_delete(self, request: Request) -> Response:
        return self.delete_tracked(request, VM, COMPUTE, on_deleted=self._release)

    def _release(self, vm: Resource) -> None:
        """What deleting a VM does to its NICs and OS disk, by their deleteOption: Delete
        removes them (and a NIC's public IPs whose ipConfiguration says Delete), Detach
        leaves them unattached."""
        for entry in vm.properties["networkProfile"]["networkInterfaces"]:
            nic = self.store.get(entry["id"])
            if nic is None:
                continue
            if entry["properties"]["deleteOption"].lower() != "delete":
                for key in ("virtualMachine", "primary", "macAddress"):
                    nic.properties.pop(key, None)
                continue
            for cfg in nic.properties.get("ipConfigurations", []):
                pip_ref = cfg["properties"].get("publicIPAddress") or {}
                if (
                    str((pip_ref.get("properties") or {}).get("deleteOption", "")).lower()
                    == "delete"
                ):
                    pip = self.store.get(pip_ref["id"])
                    if pip is not None:
                        self.store.remove(pip)
            self.store.remove(nic)
        os_disk = vm.properties["storageProfile"]["osDisk"]
        disk = self.store.get(os_disk["managedDisk"]["id"])
        if disk is not None:
            if os_disk["deleteOption"].lower() == "delete":
                self.store.remove(disk)
            else:
                self.detach(disk)

    # ----------------------------------------------------- boot diagnostics

    def _vm_boot_diagnostics(self, request: Request) -> Response:
        vm = self.lookup(request, VM)
        boot = (vm.properties.get("diagnosticsProfile") or {}).get("bootDiagnostics") or {}
        if not boot.get("enabled"):
            raise errors.operation_not_allowed(
                f"Boot diagnostics is not enabled for VM '{vm.name}'."
            )
        minutes = int(request.arg("sasUriExpirationTimeInMinutes") or 120)
        query = urlencode(
            {
                "sv": "2021-08-06",
                "sr": "b",
                "sp": "r",
                "se": iso(time.time() + 60 * minutes),
                "sig": vm.state["sas"],
            }
        )
        base = f"{self.url}/blob/{vm.properties['vmId']}"
        return Response(
            200,
            {
                "consoleScreenshotBlobUri": f"{base}/screenshot.bmp?{query}",
                "serialConsoleLogBlobUri": f"{base}/serialconsole.log?{query}",
            },
        )

    def _blob(self, request: Request) -> Response:
        """The SAS-signed blob behind a boot diagnostics URI; storage answers errors in XML."""
        wanted = request.params["vmid"].lower()
        vm = next(
            (v for v in self.store.of_type(VM) if v.properties["vmId"].lower() == wanted), None
        )
        if vm is None:
            return _storage_error(404, "BlobNotFound", "The specified blob does not exist.")
        expiry = request.arg("se") or ""
        if request.arg("sig") != vm.state["sas"] or expiry < iso(time.time()):
            return _storage_error(
                403, "AuthenticationFailed", "Server failed to authenticate the request."
            )
        if request.params["blob"].lower() == "screenshot.bmp":
            return Response(200, b"BM" + bytes(52), content_type="image/bmp")
        text = "\n".join(vm.state["console"]) + ("\n" if vm.state["console"] else "")
        return Response(200, text, content_type="text/plain; charset=utf-8")

    def _vm_sizes(self, request: Request) -> Response:
        return Response(
            200,
            {
                "value": [
                    {
                        "name": name,
                        "numberOfCores": cores,
                        "memoryInMB": memory,
                        "maxDataDiskCount": max(4, 2 * cores),
                        "osDiskSizeInMB": 1047552,
                        "resourceDiskSizeInMB": 0,
                    }
                    for name, (cores, memory) in self.vm_sizes.items()
                ]
            },
        )

    # ------------------------------------------------------- test controls

    def fail_vm_create(
        self,
        name_pattern: str,
        code: str = "AllocationFailed",
        message: str | None = None,
        *,
        count: int | None = None,
    ) -> FailureRule:
        """Make the provisioning of VMs whose name matches ``name_pattern`` (glob, case-
        insensitive) end Failed with ``code``/``message``: the VM PUT is accepted, the
        operation then reports ``{"status": "Failed", "error": {...}}`` and the VM stays in
        provisioningState Failed, as Azure leaves it after an allocation failure
        (hashicorp/terraform-provider-azurerm#7516). ``count`` limits how many creates fail."""
        rule = FailureRule(name_pattern, code, message, count)
        with self.lock:
            self._failures.append(rule)
        return rule

    def set_cores_quota(self, limit: int | None, location: str | None = None) -> None:
        """Set the regional vCPU quota ("Total Regional vCPUs") of ``location`` (every
        location when None); ``limit`` None lifts it. A VM PUT or start that would pass
        it is refused at once with Compute's 409 OperationNotAllowed, and no VM is made."""
        key = location.replace(" ", "").lower() if location is not None else None
        with self.lock:
            if limit is None:
                self._cores_quota.pop(key, None)
            else:
                self._cores_quota[key] = limit

    def hold_provisioning(self) -> None:
        """Keep VMs created from now on provisioning (Creating, power state starting)
        until :meth:`release_provisioning`: a boot that takes far longer than usual."""
        with self.lock:
            if self._held is None:
                self._held = []

    def release_provisioning(self) -> None:
        """Let held VMs finish provisioning now, and new ones as usual."""
        with self.lock:
            now = time.time()
            for op_id in self._held or []:
                op = self.store.operations.get(op_id)
                if op is not None and op.status == "InProgress":
                    op.done_at = now
            self._held = None

    def _vm_named(self, name_or_id: str) -> Resource:
        """A VM by ARM id, or by name when only one VM has that name (KeyError otherwise)."""
        by_id = self.store.get(name_or_id)
        if by_id is not None and by_id.provider_type.lower() == VM.lower():
            return by_id
        named = [v for v in self.store.of_type(VM) if v.name.lower() == name_or_id.lower()]
        if len(named) != 1:
            raise KeyError(f"{len(named)} VMs are named {name_or_id!r}; pass the VM's id")
        return named[0]

    def console_write(self, vm: str, text: str) -> None:
        """Append ``text`` to a VM's serial console log (VM by id, or by unique name)."""
        with self.lock:
            self._vm_named(vm).state["console"] += text.splitlines()

    def custom_data(self, vm: str) -> bytes | None:
        """The decoded customData a VM (by id or unique name) was created with; ARM never
        returns it on GET."""
        with self.lock:
            data = self._vm_named(vm).state.get("custom_data")
            return bytes(data) if data is not None else None

    def user_data(self, vm: str) -> bytes | None:
        """The decoded userData of a VM (by id or unique name): what the VM reads from the
        Instance Metadata Service, and cloud-init runs when there is no customData."""
        with self.lock:
            data = self._vm_named(vm).state.get("user_data")
            return bytes(data) if data is not None else None


def computer_name(vm: Resource) -> str:
    """The VM's host name: its osProfile's, or (a VM made from an attached OS disk has no
    osProfile) the name the guest already has, which the fake takes to be the VM's."""
    profile = vm.properties.get("osProfile") or {}
    return str(profile.get("computerName") or vm.name)


def _storage_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(status, body, headers={"x-ms-error-code": code}, content_type="application/xml")
