"""Managed disks and snapshots of the Azure fake (Microsoft.Compute/disks, /snapshots),
and the rules for a VM's OS disk: attaching an existing disk at create, swapping it later.

OS disks are created by a VM PUT (see ``compute.py``); here disks can also be created
empty or copied from a snapshot or disk, which is how a boot disk is restored or a VM
cloned. Shapes: azure-mgmt-compute 39.0.0 ``models/_models.py`` (Disk, DiskProperties,
Snapshot, CreationData). The Disks RP answers create, update and delete with
202 Accepted (``DisksOperations._create_or_update_initial`` accepts 200/202).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from vmkit.testing.fakes._http import Request, Response
from vmkit.testing.fakes.azure import errors
from vmkit.testing.fakes.azure.core import NAME, RG, ArmCore, Json
from vmkit.testing.fakes.azure.errors import ArmError
from vmkit.testing.fakes.azure.state import DISK, SNAPSHOT, Resource, iso, ref_id

__all__ = ["COMPUTE", "DiskApi", "disk_sku"]

COMPUTE = "Microsoft.Compute"
#: When a disk was last attached to or detached from a VM: "LastOwnershipUpdateTime",
#: so spelled in the REST JSON (Disk.last_ownership_update_time of azure-mgmt-compute 39,
#: ``rest_field(name="LastOwnershipUpdateTime")``).
OWNERSHIP_TIME = "LastOwnershipUpdateTime"


def disk_sku(name: str) -> Json:
    """A disk SKU object; the tier follows the storage type."""
    return {"name": name, "tier": "Premium" if name.lower().startswith("premium") else "Standard"}


class DiskApi(ArmCore):
    """Disks and snapshots."""

    def _register_disks(self) -> None:
        base = RG + "/providers/Microsoft.Compute"
        self.tracked_routes(base + "/disks", DISK, "disks", self._disk_put, self._disk_delete)
        self.tracked_routes(
            base + "/snapshots", SNAPSHOT, "snapshots", self._snapshot_put, self._snapshot_delete
        )
        self.arm_route("PATCH", f"{base}/snapshots/{NAME}", "snapshots", self._snapshot_patch)
        self.renderer(DISK, self._disk_json)
        self.renderer(SNAPSHOT, self.base_json)

    def new_os_disk(
        self, vm: Resource, name: str, size_gb: int, storage_type: str, image_id: str
    ) -> Resource:
        """The OS disk a VM PUT creates from its image, attached to the VM."""
        now = time.time()
        return Resource(
            subscription=vm.subscription,
            group=vm.group,
            provider_type=DISK,
            name=name,
            location=vm.location,
            top=_zoned({"managedBy": vm.id, "sku": disk_sku(storage_type)}, vm.top.get("zones")),
            properties={
                "osType": "Linux",
                "hyperVGeneration": "V2",
                "creationData": {"createOption": "FromImage", "imageReference": {"id": image_id}},
                "diskSizeGB": size_gb,
                "diskSizeBytes": size_gb << 30,
                "diskState": "Attached",
                "timeCreated": iso(now),
                OWNERSHIP_TIME: iso(now),
                "uniqueId": str(uuid.uuid4()),
                "provisioningState": "Succeeded",
            },
            created=now,
        )

    def _source(self, res: Resource, creation: Json) -> Resource:
        """The disk or snapshot a Copy reads from, in the same region."""
        source_id = creation.get("sourceResourceId")
        source = self.store.get(source_id) if isinstance(source_id, str) else None
        if source is None or source.provider_type.lower() not in (DISK.lower(), SNAPSHOT.lower()):
            raise errors.child_not_found(str(source_id))
        if source.location != res.location:
            raise errors.invalid_parameter(
                f"Source {source.id} is in location '{source.location}', not '{res.location}'.",
                "sourceResourceId",
            )
        return source

    def _copy_properties(self, res: Resource, source: Resource, props: Json) -> None:
        size = max(int(props.get("diskSizeGB") or 0), int(source.properties["diskSizeGB"]))
        res.properties.update(
            {
                "creationData": {
                    "createOption": "Copy",
                    "sourceResourceId": source.id,
                    "sourceUniqueId": source.properties["uniqueId"],
                },
                "diskSizeGB": size,
                "diskSizeBytes": size << 30,
                "osType": source.properties.get("osType", "Linux"),
                "hyperVGeneration": source.properties.get("hyperVGeneration", "V2"),
                "timeCreated": iso(time.time()),
                "uniqueId": str(uuid.uuid4()),
                "diskState": "Unattached",
            }
        )

    # ------------------------------------------------------------------ disks

    def _disk_put(self, request: Request) -> Response:
        def apply(res: Resource, body: Json, created: bool) -> None:
            props = body.get("properties") or {}
            sku = str(
                (body.get("sku") or {}).get("name")
                or res.top.get("sku", {}).get("name")
                or "Standard_LRS"
            )
            if created:
                creation = props.get("creationData") or {}
                option = str(creation.get("createOption") or "")
                if option.lower() == "copy":
                    self._copy_properties(res, self._source(res, creation), props)
                elif option.lower() == "empty":
                    size = props.get("diskSizeGB")
                    if not isinstance(size, int) or size <= 0:
                        raise errors.invalid_parameter(
                            "Required parameter 'diskSizeGB' is missing (null).", "diskSizeGB"
                        )
                    res.properties.update(
                        {
                            "creationData": {"createOption": "Empty"},
                            "diskSizeGB": size,
                            "diskSizeBytes": size << 30,
                            "timeCreated": iso(time.time()),
                            "uniqueId": str(uuid.uuid4()),
                            "diskState": "Unattached",
                        }
                    )
                else:
                    raise errors.invalid_parameter(
                        "The fake creates disks only with createOption Copy or Empty, "
                        f"not '{option}'.",
                        "creationData.createOption",
                    )
                if body.get("zones"):
                    res.top["zones"] = [str(z) for z in body["zones"]]
            else:
                _same_creation(res, props.get("creationData"))
                size = props.get("diskSizeGB")
                if isinstance(size, int) and size < res.properties["diskSizeGB"]:
                    raise errors.invalid_parameter("Disk size can only be increased.", "diskSizeGB")
                if isinstance(size, int):
                    res.properties["diskSizeGB"], res.properties["diskSizeBytes"] = size, size << 30
            res.top["sku"] = disk_sku(sku)

        return self.put_tracked(
            request, DISK, apply, namespace=COMPUTE, statuses=(202, 202), location_header=True
        )

    def _attached_vm(self, disk: Resource) -> str | None:
        vm_id = disk.top.get("managedBy")
        return vm_id if isinstance(vm_id, str) and self.store.get(vm_id) is not None else None

    def attach_conflict(self, disk: Resource, vm_key: str) -> ArmError | None:
        """Why ``disk`` cannot be attached to the VM ``vm_key``, or None when it can."""
        owner = self._attached_vm(disk)
        if owner is not None and owner.lower() != vm_key:
            return errors.operation_not_allowed(f"Disk {disk.name} is attached to VM {owner}.")
        return None

    def _disk_delete(self, request: Request) -> Response:
        def check(disk: Resource) -> None:
            vm_id = self._attached_vm(disk)
            if vm_id is not None:
                # 409 OperationNotAllowed, text as quoted in ansible/ansible#54644.
                raise errors.operation_not_allowed(f"Disk {disk.name} is attached to VM {vm_id}.")

        return self.delete_tracked(request, DISK, COMPUTE, check)

    def _disk_json(self, disk: Resource) -> Json:
        out = self.base_json(disk)
        if self._attached_vm(disk) is None:
            out.pop("managedBy", None)
            out["properties"]["diskState"] = "Unattached"
        return out

    # ------------------------------------------------------------- OS disks

    def _existing_disk(self, disk_id: str | None, vm: Resource) -> Resource:
        disk = self.store.get(disk_id) if disk_id else None
        wrong_type = disk is None or disk.provider_type.lower() != DISK.lower()
        if disk is None or wrong_type or disk.location != vm.location:
            raise ArmError(404, "NotFound", f"Resource {disk_id} not found.")
        return disk

    def attach_os_disk(self, vm: Resource, props: Json) -> tuple[Resource, Json]:
        """Validate a VM create whose OS disk is an existing managed disk (``createOption``
        Attach, how a VM is made from a snapshot: a disk copied from it, then attached,
        learn.microsoft.com/azure/virtual-machines/scripts/create-vm-from-snapshot).
        Returns the disk and the stored osDisk; :meth:`attach` makes it the VM's.

        Such a VM boots what is on the disk, so Compute refuses what only provisioning from
        an image uses, each with 400 InvalidParameter: an ``osProfile`` ("Parameter
        'osProfile' is not allowed.", hashicorp/terraform-provider-azurerm#3247), an
        ``imageReference`` (Azure/azure-powershell#29158), and a missing ``osType``
        (hashicorp/terraform-provider-azurerm#83)."""
        storage = props.get("storageProfile") or {}
        os_disk = storage.get("osDisk") or {}
        if props.get("osProfile"):
            raise errors.invalid_parameter("Parameter 'osProfile' is not allowed.", "osProfile")
        if storage.get("imageReference"):
            raise errors.invalid_parameter(
                "Cannot attach an existing OS disk if the VM is created from a platform, user "
                "or a shared gallery image.",
                "osDisk",
            )
        if not os_disk.get("osType"):
            raise errors.invalid_parameter(
                "Required parameter 'osDisk.osType' is missing (null).", "osDisk.osType"
            )
        disk = self._existing_disk(ref_id(os_disk.get("managedDisk")), vm)
        conflict = self.attach_conflict(disk, vm.key)
        if conflict is not None:
            raise conflict
        stored: Json = {
            "osType": str(os_disk["osType"]),
            "name": disk.name,
            "createOption": "Attach",
            "caching": str(os_disk.get("caching") or "ReadWrite"),
            "managedDisk": {"id": disk.id, "storageAccountType": disk.top["sku"]["name"]},
            "deleteOption": str(os_disk.get("deleteOption") or "Detach"),
            "diskSizeGB": disk.properties["diskSizeGB"],
        }
        return disk, stored

    @staticmethod
    def attach(disk: Resource, vm: Resource) -> None:
        """Mark ``disk`` as in use by ``vm``."""
        disk.top["managedBy"] = vm.id
        disk.properties["diskState"] = "Attached"
        disk.properties[OWNERSHIP_TIME] = iso(time.time())

    @staticmethod
    def detach(disk: Resource) -> None:
        """Mark ``disk`` as used by no VM."""
        disk.top.pop("managedBy", None)
        disk.properties["diskState"] = "Unattached"
        disk.properties[OWNERSHIP_TIME] = iso(time.time())

    def os_disk_swap(self, vm: Resource, disk_id: str) -> Callable[[], None]:
        """Validate a change of the VM's OS disk to ``disk_id``; return what applies it.

        The fake holds Azure to the rule its OS-disk swap articles first stated: "The VM
        does need to be stopped\\deallocated, then the resource ID of the managed disk can
        be replaced" (articles/virtual-machines/{linux,windows}/os-disk-swap.md in
        MicrosoftDocs/azure-docs, 2018; Azure/azure-sdk-for-net#37285 deallocates first to
        avoid a 409). The current articles no longer require it, so a client that passes
        here works under both. The disk must exist, in the VM's region, and be used by no
        other VM (:meth:`attach_conflict`)."""
        if vm.state["power"] != "deallocated":
            raise errors.operation_not_allowed(
                f"The OS disk of VM '{vm.name}' can only be changed while the VM is stopped "
                "(deallocated)."
            )
        disk = self._existing_disk(disk_id, vm)
        conflict = self.attach_conflict(disk, vm.key)
        if conflict is not None:
            raise conflict

        def apply() -> None:
            os_disk = vm.properties["storageProfile"]["osDisk"]
            old = self.store.get(os_disk["managedDisk"]["id"])
            if old is not None and old is not disk:
                self.detach(old)
            self.attach(disk, vm)
            os_disk.update(name=disk.name, diskSizeGB=disk.properties["diskSizeGB"])
            os_disk["managedDisk"]["id"] = disk.id

        return apply

    # -------------------------------------------------------------- snapshots

    def _snapshot_put(self, request: Request) -> Response:
        def apply(res: Resource, body: Json, created: bool) -> None:
            props = body.get("properties") or {}
            if created:
                creation = props.get("creationData") or {}
                if str(creation.get("createOption") or "").lower() not in ("copy", "copystart"):
                    raise errors.invalid_parameter(
                        "A snapshot is created with createOption Copy from a disk or snapshot.",
                        "creationData.createOption",
                    )
                self._copy_properties(res, self._source(res, creation), props)
                res.properties["incremental"] = bool(props.get("incremental", False))
            sku = (body.get("sku") or {}).get("name") or res.top.get("sku", {}).get("name")
            res.top["sku"] = {"name": str(sku or "Standard_LRS"), "tier": "Standard"}

        return self.put_tracked(
            request, SNAPSHOT, apply, namespace=COMPUTE, statuses=(202, 202), location_header=True
        )

    def _snapshot_patch(self, request: Request) -> Response:
        snap = self.lookup(request, SNAPSHOT)
        body = self.body_of(request)
        if "tags" in body:
            snap.tags = dict(body.get("tags") or {})
        op = self.begin(snap, COMPUTE, "Updating")
        return Response(
            202, self.render(snap), headers=self.lro_headers(op, request, location=True)
        )

    def _snapshot_delete(self, request: Request) -> Response:
        return self.delete_tracked(request, SNAPSHOT, COMPUTE)


def _zoned(top: Json, zones: object) -> Json:
    """``top`` with the availability zones of the VM a disk is made for, if any."""
    if isinstance(zones, list) and zones:
        top["zones"] = [str(z) for z in zones]
    return top


def _same_creation(disk: Resource, creation: object) -> None:
    """A disk's source is fixed at creation: a PUT that names another one is refused with
    409 PropertyChangeNotAllowed on ``creationData`` (ansible/ansible#38883)."""
    if not isinstance(creation, dict) or not creation:
        return
    stored = disk.properties.get("creationData") or {}
    option = str(creation.get("createOption") or stored.get("createOption") or "")
    source = creation.get("sourceResourceId", stored.get("sourceResourceId"))
    if (
        option.lower() != str(stored.get("createOption") or "").lower()
        or str(source or "").lower() != str(stored.get("sourceResourceId") or "").lower()
    ):
        raise errors.property_change_not_allowed("creationData")
