"""Virtual machines of the Azure fake (Microsoft.Compute/virtualMachines): the PUT that
creates or updates one, with Compute's validation, and reads. What happens after the
PUT (provisioning, power, deletion, diagnostics) is in ``vm_lifecycle.py``.

Shapes: azure-mgmt-compute 39.0.0 ``models/_models.py`` (VirtualMachine,
VirtualMachineProperties, OSProfile, StorageProfile, NetworkProfile). A VM PUT answers
201 (create) or 200 (update) with ``Azure-AsyncOperation``
(``VirtualMachinesOperations._create_or_update_initial``).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any

from vmkit.testing.fakes._http import Request, Response
from vmkit.testing.fakes.azure import errors
from vmkit.testing.fakes.azure.core import NAME, RG, SUB, Json
from vmkit.testing.fakes.azure.disks import COMPUTE
from vmkit.testing.fakes.azure.errors import ArmError
from vmkit.testing.fakes.azure.state import DISK, NIC, VM, Group, Resource, iso, ref_id
from vmkit.testing.fakes.azure.vm_lifecycle import ACTIONS, FailureRule, VmLifecycle

__all__ = ["DEFAULT_VM_SIZES", "ComputeApi"]

#: name -> (vCPUs, memory MiB), from the B, Dsv5, Dasv5, Esv5, Fsv2 and NCasT4_v3 size pages
#: on learn.microsoft.com/azure/virtual-machines/sizes.
DEFAULT_VM_SIZES: Mapping[str, tuple[int, int]] = {
    "Standard_B1s": (1, 1024),
    "Standard_B1ms": (1, 2048),
    "Standard_B2s": (2, 4096),
    "Standard_B2ms": (2, 8192),
    "Standard_D2s_v5": (2, 8192),
    "Standard_D4s_v5": (4, 16384),
    "Standard_D8s_v5": (8, 32768),
    "Standard_D2as_v5": (2, 8192),
    "Standard_E2s_v5": (2, 16384),
    "Standard_F2s_v2": (2, 4096),
    "Standard_F4s_v2": (4, 8192),
    "Standard_NC4as_T4_v3": (4, 28672),
}

_CUSTOM_DATA_LIMIT = 87380


def _decode_custom_data(value: Any) -> bytes:
    # ansible/ansible#25924 quotes the error for data that is not base64.
    text = str(value)
    try:
        if len(text) > _CUSTOM_DATA_LIMIT:
            raise ValueError(text[:20])
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.invalid_parameter(
            "Custom data in OSProfile must be in Base64 encoding and with a maximum length of "
            f"{_CUSTOM_DATA_LIMIT} characters.",
            "customData",
        ) from exc


# "The size can't exceed 64 KB" once base64-encoded for the API
# (learn.microsoft.com/azure/virtual-machines/user-data).
_USER_DATA_LIMIT = 65536


def _decode_user_data(value: Any) -> bytes | None:
    if value is None:
        return None
    text = str(value)
    try:
        if len(text) > _USER_DATA_LIMIT:
            raise ValueError(text[:20])
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.invalid_parameter(
            f"User data must be base64 encoded and at most {_USER_DATA_LIMIT} bytes.", "userData"
        ) from exc


class ComputeApi(VmLifecycle):
    """The VM PUT/PATCH/GET/list routes, with Compute's validation of a VM model."""

    def _register_compute(
        self,
        vm_sizes: Mapping[str, tuple[int, int]],
        images: Collection[str] | None,
        image_disk_gb: int,
    ) -> None:
        self.vm_sizes = dict(vm_sizes)
        self.images = {i.lower() for i in images} if images is not None else None
        self.image_disk_gb = image_disk_gb
        self._failures: list[FailureRule] = []
        self._cores_quota: dict[str | None, int] = {}
        self._held: list[str] | None = None
        vms = RG + "/providers/Microsoft.Compute/virtualMachines"
        item = f"{vms}/{NAME}"
        self.arm_route("PUT", item, "virtualMachines", self._vm_put)
        self.arm_route("PATCH", item, "virtualMachines", self._vm_patch)
        self.arm_route("GET", item, "virtualMachines", self._vm_get)
        self.arm_route("DELETE", item, "virtualMachines", self._vm_delete)
        self.arm_route("GET", vms, "virtualMachines.list", lambda r: self.list_tracked(r, VM))
        self.arm_route(
            "GET",
            SUB + "/providers/Microsoft.Compute/virtualMachines",
            "virtualMachines.listAll",
            self._vm_list_all,
        )
        self.arm_route(
            "GET", f"{item}/instanceView", "virtualMachines.instanceView", self._vm_instance_view
        )
        for action in ACTIONS:
            self.arm_route("POST", f"{item}/{action}", f"virtualMachines.{action}", self._vm_action)
        self.arm_route(
            "POST",
            f"{item}/retrieveBootDiagnosticsData",
            "virtualMachines.bootDiagnostics",
            self._vm_boot_diagnostics,
        )
        self.arm_route(
            "GET",
            SUB + r"/providers/Microsoft.Compute/locations/(?P<loc>[^/]+)/vmSizes",
            "vmSizes",
            self._vm_sizes,
        )
        self.route(
            "GET",
            r"/blob/(?P<vmid>[^/]+)/(?P<blob>serialconsole\.log|screenshot\.bmp)",
            "blob",
            self._blob,
        )
        self.renderer(VM, self._vm_json)

    # ------------------------------------------------------------ validation

    def _size(self, size: Any, vm: Resource) -> str:
        """The offered size; a well-formed name not offered is 409 SkuNotAvailable, anything
        else 400 InvalidParameter ("The value 150 provided for the VM size is not valid.")."""
        for known in self.vm_sizes:
            if known.lower() == str(size).lower():
                return known
        if re.match(r"(?i)^(standard|basic)_", str(size)):
            raise errors.sku_not_available(vm.id, vm.location, vm.subscription)
        raise errors.invalid_parameter(
            f"The value {size} provided for the VM size is not valid.", "vmSize"
        )

    @staticmethod
    def _os_profile(raw: Any, vm_name: str) -> tuple[Json, bytes | None]:
        """The stored osProfile (without secrets) and the decoded customData."""
        if not isinstance(raw, dict) or not raw:
            raise errors.invalid_parameter(
                "Required parameter 'osProfile' is missing (null).", "osProfile"
            )
        if not raw.get("adminUsername"):
            raise errors.invalid_parameter(
                "Required parameter 'adminUsername' is missing (null).", "adminUsername"
            )
        linux = raw.get("linuxConfiguration") or {}
        disabled = bool(linux.get("disablePasswordAuthentication", False))
        keys = list((linux.get("ssh") or {}).get("publicKeys") or [])
        if disabled and not keys:
            # ComputeCanada/magic_castle#44
            raise errors.invalid_parameter(
                "Authentication using either SSH or by user name and password must be enabled in "
                "Linux profile.",
                "linuxConfiguration",
            )
        if not disabled and not raw.get("adminPassword"):
            # Azure/azure-cli#228
            raise errors.invalid_parameter(
                "Required parameter 'adminPassword' is missing (null).", "adminPassword"
            )
        custom = (
            _decode_custom_data(raw["customData"]) if raw.get("customData") is not None else None
        )
        stored: Json = {
            "computerName": str(raw.get("computerName") or vm_name),
            "adminUsername": str(raw["adminUsername"]),
            "linuxConfiguration": {
                "disablePasswordAuthentication": disabled,
                "ssh": {"publicKeys": keys},
                "provisionVMAgent": bool(linux.get("provisionVMAgent", True)),
            },
            "secrets": [],
            "allowExtensionOperations": True,
            "requireGuestProvisionSignal": True,
        }
        return stored, custom

    def _network_interfaces(self, props: Json, vm: Resource) -> list[tuple[Resource, Json]]:
        """The VM's NICs: existing, in its region, not used by another VM."""
        refs = (props.get("networkProfile") or {}).get("networkInterfaces") or []
        if not refs:
            raise errors.invalid_parameter(
                "Required parameter 'networkProfile' is missing (null).", "networkProfile"
            )
        found: list[tuple[Resource, Json]] = []
        for raw in refs:
            nic_id = ref_id(raw) or ""
            nic = self.store.get(nic_id)
            if (
                nic is None
                or nic.provider_type.lower() != NIC.lower()
                or nic.location != vm.location
            ):
                raise ArmError(404, "NotFound", f"Resource {nic_id} not found.")
            owner = ref_id(nic.properties.get("virtualMachine"))
            if owner is not None and owner.lower() != vm.key and self.store.get(owner) is not None:
                raise errors.nic_in_use(nic.id, owner)
            options = (raw.get("properties") or {}) if isinstance(raw, dict) else {}
            found.append(
                (
                    nic,
                    {
                        "id": nic.id,
                        "properties": {
                            "deleteOption": str(options.get("deleteOption") or "Detach"),
                            "primary": bool(options.get("primary", len(found) == 0)),
                        },
                    },
                )
            )
        return found

    def _image(self, vm: Resource, storage: Json) -> tuple[Json, str, str]:
        """(imageReference as returned, its URN, the ARM id of the image version)."""
        image = storage.get("imageReference") or {}
        publisher, offer, sku = (str(image.get(k) or "") for k in ("publisher", "offer", "sku"))
        if not (publisher and offer and sku):
            raise errors.invalid_parameter(
                "Required parameter 'imageReference' is missing (null).", "imageReference"
            )
        version = str(image.get("version") or "latest")
        base = f"{publisher}:{offer}:{sku}"
        if (
            self.images is not None
            and not {base.lower(), f"{base}:{version}".lower()} & self.images
        ):
            raise errors.image_not_found(f"{base}:{version}")
        exact = "1.0.0" if version.lower() == "latest" else version
        reference = {
            "publisher": publisher,
            "offer": offer,
            "sku": sku,
            "version": version,
            "exactVersion": exact,
        }
        image_id = (
            f"/Subscriptions/{vm.subscription}/Providers/Microsoft.Compute/Locations/{vm.location}"
            f"/Publishers/{publisher}/ArtifactTypes/VMImage/Offers/{offer}/Skus/{sku}/Versions/{exact}"
        )
        return reference, f"{base}:{version}", image_id

    # ---------------------------------------------------------------- create

    def _vm_put(self, request: Request) -> Response:
        sub, rg, name = request.params["sub"], request.params["rg"], request.params["name"]
        group = self.group_for_write(sub, rg)
        body = self.body_of(request)
        existing = self.store.find(sub, rg, VM, name)
        if existing is not None:
            if (request.headers.get("if-none-match") or "").strip() == "*":
                raise errors.resource_exists(existing.id)
            self.check_same_location(existing, body)
            return self._vm_update(request, existing, body)
        return self._vm_create(request, group, body)

    def _vm_create(self, request: Request, group: Group, body: Json) -> Response:
        vm = self.new_resource(request, group, VM, body)
        props = body.get("properties") or {}
        size = self._size((props.get("hardwareProfile") or {}).get("vmSize"), vm)
        storage = props.get("storageProfile") or {}
        os_disk = storage.get("osDisk") or {}
        option = str(os_disk.get("createOption") or "FromImage").lower()
        if option == "attach":
            return self._vm_attach_create(request, vm, body, size)
        if option != "fromimage":
            raise errors.invalid_parameter(
                f"The fake creates VMs with osDisk.createOption FromImage or Attach, not "
                f"'{os_disk.get('createOption')}'.",
                "osDisk.createOption",
            )
        reference, urn, image_id = self._image(vm, storage)
        os_profile, custom = self._os_profile(props.get("osProfile"), vm.name)
        user_data = _decode_user_data(props.get("userData"))
        nics = self._network_interfaces(props, vm)
        disk_size = int(os_disk.get("diskSizeGB") or self.image_disk_gb)
        if disk_size < self.image_disk_gb:
            raise errors.invalid_parameter(
                f"The specified disk size {disk_size} GB is smaller than the size of the "
                f"corresponding disk in the VM image: {self.image_disk_gb} GB. This is not "
                "allowed. Please choose equal or greater size or do not specify an explicit size.",
                "osDisk.diskSizeGB",
            )
        disk_name = str(os_disk.get("name") or f"{vm.name}_OsDisk_1_{uuid.uuid4().hex}")
        if self.store.find(vm.subscription, vm.group, DISK, disk_name) is not None:
            raise ArmError(
                409,
                "ConflictingUserInput",
                f"Disk {disk_name} already exists in resource group {vm.group.upper()}. Only "
                "CreateOption.Attach is supported.",
            )
        storage_type = str(
            (os_disk.get("managedDisk") or {}).get("storageAccountType") or "Standard_LRS"
        )
        self.check_cores_quota(vm, size)
        disk = self.new_os_disk(vm, disk_name, disk_size, storage_type, image_id)
        vm.properties = {
            "vmId": str(uuid.uuid4()),
            "hardwareProfile": {"vmSize": size},
            "storageProfile": {
                "imageReference": reference,
                "osDisk": {
                    "osType": "Linux",
                    "name": disk.name,
                    "createOption": "FromImage",
                    "caching": str(os_disk.get("caching") or "ReadWrite"),
                    "managedDisk": {"id": disk.id, "storageAccountType": storage_type},
                    "deleteOption": str(os_disk.get("deleteOption") or "Detach"),
                    "diskSizeGB": disk_size,
                },
                "dataDisks": [],
            },
            "osProfile": os_profile,
            "networkProfile": {"networkInterfaces": [entry for _, entry in nics]},
            "timeCreated": iso(vm.created),
        }
        self._optional_properties(vm, body)
        vm.state.update(
            power="starting",
            custom_data=custom,
            user_data=user_data,
            console=[],
            sas=secrets.token_urlsafe(16),
            image=urn,
        )
        self.store.add(disk)
        return self._vm_created(request, vm, nics)

    def _vm_attach_create(self, request: Request, vm: Resource, body: Json, size: str) -> Response:
        """A VM that boots an existing managed disk (see :meth:`DiskApi.attach_os_disk`);
        the workload's cloud-init can only come as ``userData`` then."""
        props = body.get("properties") or {}
        disk, os_disk = self.attach_os_disk(vm, props)
        user_data = _decode_user_data(props.get("userData"))
        nics = self._network_interfaces(props, vm)
        self.check_cores_quota(vm, size)
        vm.properties = {
            "vmId": str(uuid.uuid4()),
            "hardwareProfile": {"vmSize": size},
            "storageProfile": {"osDisk": os_disk, "dataDisks": []},
            "networkProfile": {"networkInterfaces": [entry for _, entry in nics]},
            "timeCreated": iso(vm.created),
        }
        self._optional_properties(vm, body)
        vm.state.update(
            power="starting",
            custom_data=None,
            user_data=user_data,
            console=[],
            sas=secrets.token_urlsafe(16),
            image=disk.id,
        )
        self.attach(disk, vm)
        return self._vm_created(request, vm, nics)

    @staticmethod
    def _optional_properties(vm: Resource, body: Json) -> None:
        props = body.get("properties") or {}
        for key in (
            "diagnosticsProfile",
            "priority",
            "evictionPolicy",
            "billingProfile",
            "securityProfile",
        ):
            if props.get(key) is not None:
                vm.properties[key] = props[key]
        if body.get("zones"):
            vm.top["zones"] = list(body["zones"])

    def _vm_created(
        self, request: Request, vm: Resource, nics: list[tuple[Resource, Json]]
    ) -> Response:
        self.store.add(vm)
        for nic, entry in nics:
            nic.properties["virtualMachine"] = {"id": vm.id}
            nic.properties["primary"] = entry["properties"]["primary"]
        op = self._provision(vm, "Creating")
        return Response(201, self.render(vm), headers=self.lro_headers(op, request, location=False))

    # ---------------------------------------------------------------- update

    def _vm_update(self, request: Request, vm: Resource, body: Json) -> Response:
        """A PUT on an existing VM: the model sent replaces the one stored (tags too)."""
        apply = self._vm_changes(vm, body.get("properties") or {})
        apply()
        vm.tags = dict(body.get("tags") or {})
        return self._vm_updated(request, vm)

    def _vm_patch(self, request: Request) -> Response:
        """A PATCH (VirtualMachineUpdate): only what the body names changes, with the same
        rules as a PUT; an OS disk swap by PATCH is what Azure/azure-sdk-for-net#37285
        does."""
        vm = self.lookup(request, VM)
        body = self.body_of(request)
        apply = self._vm_changes(vm, body.get("properties") or {})
        apply()
        if "tags" in body:
            vm.tags = dict(body.get("tags") or {})
        return self._vm_updated(request, vm)

    def _vm_updated(self, request: Request, vm: Resource) -> Response:
        if vm.properties.get("provisioningState") == "Failed":
            op = self._provision(vm, "Updating")
        else:
            op = self.begin(vm, COMPUTE, "Updating")
        return Response(200, self.render(vm), headers=self.lro_headers(op, request, location=False))

    def _vm_changes(self, vm: Resource, props: Json) -> Callable[[], None]:
        """Validate every change ``props`` asks of ``vm``; return what applies them all
        (nothing is written unless everything is valid)."""
        changes: list[Callable[[], Any]] = []
        if (props.get("hardwareProfile") or {}).get("vmSize") is not None:
            size = self._size(props["hardwareProfile"]["vmSize"], vm)
            changes.append(lambda: vm.properties["hardwareProfile"].update(vmSize=size))
        self._immutables(vm, props)
        os_disk = (props.get("storageProfile") or {}).get("osDisk") or {}
        current = vm.properties["storageProfile"]["osDisk"]
        new_disk_id = ref_id(os_disk.get("managedDisk"))
        wanted_name = os_disk.get("name")
        if new_disk_id is not None and new_disk_id.lower() != current["managedDisk"]["id"].lower():
            target = self.store.get(new_disk_id)
            changes.append(self.os_disk_swap(vm, new_disk_id))
            expected = target.name if target is not None else wanted_name
        else:
            expected = current["name"]
        if wanted_name is not None and str(wanted_name).lower() != str(expected).lower():
            # MicrosoftDocs/azure-docs#11611: 409 on a name that is not the disk's.
            raise errors.property_change_not_allowed("osDisk.name")
        if os_disk.get("deleteOption"):
            changes.append(lambda: current.update(deleteOption=str(os_disk["deleteOption"])))
        if (props.get("networkProfile") or {}).get("networkInterfaces"):
            nics = self._network_interfaces(props, vm)
            changes.append(lambda: self._attach_nics(vm, nics))
        if "diagnosticsProfile" in props:
            changes.append(
                lambda: vm.properties.update(diagnosticsProfile=props["diagnosticsProfile"])
            )
        if "userData" in props:
            # User data "can be updated from outside the VM, without stopping or rebooting"
            # (learn.microsoft.com/azure/virtual-machines/user-data).
            data = _decode_user_data(props["userData"])
            changes.append(lambda: vm.state.update(user_data=data))

        def apply() -> None:
            for change in changes:
                change()

        return apply

    def _immutables(self, vm: Resource, props: Json) -> None:
        """PropertyChangeNotAllowed for what a VM cannot change after creation."""
        stored = vm.properties
        os_profile = props.get("osProfile") or {}
        if os_profile and "osProfile" not in stored:
            # A VM made from an attached disk never takes one (see attach_os_disk).
            raise errors.invalid_parameter("Parameter 'osProfile' is not allowed.", "osProfile")
        for key in ("adminUsername", "computerName"):
            if os_profile.get(key) is not None and str(os_profile[key]) != stored["osProfile"][key]:
                raise errors.property_change_not_allowed(f"osProfile.{key}")
        custom = os_profile.get("customData")
        if custom is not None and _decode_custom_data(custom) != (
            vm.state.get("custom_data") or b""
        ):
            raise errors.property_change_not_allowed("customData")
        keys = ((os_profile.get("linuxConfiguration") or {}).get("ssh") or {}).get("publicKeys")
        if (
            keys is not None
            and list(keys) != stored["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"]
        ):
            raise errors.property_change_not_allowed("linuxConfiguration.ssh.publicKeys")
        storage = props.get("storageProfile") or {}
        image = storage.get("imageReference")
        if image:
            old = stored["storageProfile"].get("imageReference") or {}
            for key in ("publisher", "offer", "sku"):
                if str(image.get(key, old.get(key))).lower() != str(old.get(key)).lower():
                    raise errors.property_change_not_allowed("imageReference")
        option = (storage.get("osDisk") or {}).get("createOption")
        current = stored["storageProfile"]["osDisk"]["createOption"]
        if option is not None and str(option).lower() != str(current).lower():
            # Azure/azure-powershell#7621: 409 PropertyChangeNotAllowed, target
            # osDisk.createOption, e.g. when a swap sends Attach for a FromImage VM.
            raise errors.property_change_not_allowed("osDisk.createOption")
        if props.get("priority") is not None and props["priority"] != stored.get(
            "priority", "Regular"
        ):
            raise errors.property_change_not_allowed("priority")

    def _attach_nics(self, vm: Resource, nics: list[tuple[Resource, Json]]) -> None:
        keep = {nic.key for nic, _ in nics}
        for old in vm.properties["networkProfile"]["networkInterfaces"]:
            nic = self.store.get(old["id"])
            if nic is not None and nic.key not in keep:
                for key in ("virtualMachine", "primary", "macAddress"):
                    nic.properties.pop(key, None)
        for nic, entry in nics:
            nic.properties["virtualMachine"] = {"id": vm.id}
            nic.properties["primary"] = entry["properties"]["primary"]
        vm.properties["networkProfile"]["networkInterfaces"] = [entry for _, entry in nics]

    # ------------------------------------------------------------- read, list

    def _vm_json(self, vm: Resource, expand: bool = False) -> Json:
        # customData and adminPassword are write-only: ARM never returns them on GET.
        out = self.base_json(vm)
        if expand:
            out["properties"]["instanceView"] = self._instance_view(vm)
        return out

    def _vm_get(self, request: Request) -> Response:
        vm = self.lookup(request, VM)
        expand = (request.arg("$expand") or "").lower()
        out = self._vm_json(vm, expand == "instanceview")
        data = vm.state.get("user_data")
        if expand == "userdata" and data is not None:
            # userData is returned only on a GET with $expand=userData
            # (learn.microsoft.com/azure/virtual-machines/user-data).
            out["properties"]["userData"] = base64.b64encode(data).decode()
        return Response(200, out)

    def _vm_list_all(self, request: Request) -> Response:
        vms = self.store.of_type(VM, request.params["sub"])
        if (request.arg("statusOnly") or "").lower() == "true":
            # statusOnly=true answers the run-time status, not the model: tags and the
            # profiles are left out (Azure/azure-sdk-for-go#18565,
            # Azure/azure-rest-api-specs#42411).
            return self.page(request, [self._vm_status_json(v) for v in vms])
        return self.page(request, [self.render(v) for v in vms])

    def _vm_status_json(self, vm: Resource) -> Json:
        return {
            "id": vm.id,
            "name": vm.name,
            "type": vm.provider_type,
            "location": vm.location,
            "properties": {"instanceView": self._instance_view(vm)},
        }

    def _vm_instance_view(self, request: Request) -> Response:
        return Response(200, self._instance_view(self.lookup(request, VM)))
