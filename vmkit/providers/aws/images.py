"""AMIs on EC2: the boot image of a plan, and snapshots (CreateImage) with restore."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vmkit.errors import NotFound, ProviderError
from vmkit.machine import Machine, MachineState, Snapshot
from vmkit.provider import WORKLOAD_TAG
from vmkit.providers.aws import translate as tr
from vmkit.providers.aws.errors import aws_error_code

if TYPE_CHECKING:
    from vmkit.providers.aws.provider import AwsProvider

__all__ = ["Images"]

log = logging.getLogger(__name__)

# AMI names: 3-128 of letters, digits, ( ) [ ] space . / - ' @ _
# (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateImage.html).
_AMI_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9()\[\] ./'@_-]+")


class Images:
    """AMI look-ups, snapshots and restores, through the provider's ``_call``."""

    def __init__(self, provider: AwsProvider) -> None:
        self._p = provider
        self._ec2 = provider.ec2_client

    def describe(self, image_id: str) -> dict[str, Any] | None:
        """The image, or None when it does not exist (or no longer does)."""
        try:
            answer = self._p._call(
                "ec2:DescribeImages", self._ec2.describe_images, ImageIds=[image_id]
            )
        except NotFound:
            return None
        images: list[dict[str, Any]] = answer.get("Images", [])
        return images[0] if images else None

    def root_device(self, image_id: str) -> str:
        """The image's root device name, as RunInstances' BlockDeviceMappings need it."""
        image = self.describe(image_id)
        if image is None:
            raise NotFound(f"image {image_id} does not exist in {self._p.location}", provider="aws")
        return str(image.get("RootDeviceName") or "/dev/xvda")

    # --------------------------------------------------------------- snapshots

    def snapshot(self, machine: Machine, name: str) -> Snapshot:
        """CreateImage of ``machine`` without a reboot, tagged for its workload."""
        tags = {
            WORKLOAD_TAG: machine.workload,
            tr.MACHINE_TAG: machine.id,
            tr.SNAPSHOT_NAME_TAG: name,
            "Name": name,
        }
        ami_name = _AMI_NAME_UNSAFE.sub("-", f"{machine.name}-{name}")[:110]
        # moto 5 cannot take a "snapshot" TagSpecification in CreateImage
        # (moto/ec2/models/amis.py, create_image raises NotImplementedError)
        # and EC2 takes CreateTags as well: the image is tagged at creation,
        # its EBS snapshots right after.
        created = self._p._call(
            "ec2:CreateImage",
            self._ec2.create_image,
            InstanceId=machine.id,
            Name=f"{ami_name}-{uuid.uuid4().hex[:8]}",
            Description=f"vmkit snapshot of {machine.name}",
            NoReboot=True,
            TagSpecifications=[{"ResourceType": "image", "Tags": tr.tag_list(tags)}],
        )
        image_id = str(created["ImageId"])
        image = self.describe(image_id) or {"ImageId": image_id, "Tags": tr.tag_list(tags)}
        snapshots = tr.snapshot_ids(image)
        if snapshots:
            self._p._call(
                "ec2:CreateTags",
                self._ec2.create_tags,
                Resources=snapshots,
                Tags=tr.tag_list({**tags, tr.SNAPSHOT_IMAGE_TAG: image_id}),
            )
        return tr.to_snapshot(image)

    def snapshots(self, workload: str | None) -> list[Snapshot]:
        """The images this account owns that carry the workload's tag."""
        owner = (
            {"Name": f"tag:{WORKLOAD_TAG}", "Values": [workload]}
            if workload is not None
            else {"Name": "tag-key", "Values": [WORKLOAD_TAG]}
        )
        found: list[Snapshot] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Owners": ["self"], "Filters": [owner]}
            if token:
                params["NextToken"] = token
            page = self._p._call("ec2:DescribeImages", self._ec2.describe_images, **params)
            found.extend(tr.to_snapshot(i) for i in page.get("Images", []))
            token = page.get("NextToken")
            if not token:
                return found

    def delete(self, image_id: str) -> None:
        """DeregisterImage and DeleteSnapshot of its snapshots. Idempotent;
        NotFound for an image vmkit did not make."""
        image = self.describe(image_id)
        if image is not None and WORKLOAD_TAG not in tr.tags_of(image):
            raise NotFound(f"{image_id} is not a vmkit snapshot", provider="aws")
        leftovers = self._p._call(
            "ec2:DescribeSnapshots",
            self._ec2.describe_snapshots,
            OwnerIds=["self"],
            Filters=[{"Name": f"tag:{tr.SNAPSHOT_IMAGE_TAG}", "Values": [image_id]}],
        ).get("Snapshots", [])
        # The image's own list, plus those tagged for it: an earlier attempt may
        # have deregistered the image and failed before deleting its snapshots.
        snapshots = set(tr.snapshot_ids(image or {})) | {str(s["SnapshotId"]) for s in leftovers}
        if image is not None:
            try:
                self._p._call("ec2:DeregisterImage", self._ec2.deregister_image, ImageId=image_id)
            except NotFound:
                pass
            except ProviderError as exc:
                if aws_error_code(exc) != "InvalidAMIID.Unavailable":
                    raise
        for snapshot_id in sorted(snapshots):
            try:
                self._p._call(
                    "ec2:DeleteSnapshot", self._ec2.delete_snapshot, SnapshotId=snapshot_id
                )
            except NotFound:
                continue

    # ----------------------------------------------------------------- restore

    def restore(self, machine: Machine, snapshot: Snapshot) -> None:
        """Stop, swap the root volume for one made from the snapshot, start.

        The instance keeps its id, name and tags; the new volume is encrypted,
        takes the old one's tags and size (or the snapshot's, if larger), and
        is deleted with the instance. The old volume is deleted once the swap
        is done; if the swap fails, the old volume goes back before raising.
        """
        image = self.describe(snapshot.id)
        source = tr.root_snapshot_id(image) if image else None
        if image is None or source is None:
            raise NotFound(f"snapshot {snapshot.id} has no root volume", provider="aws")
        current = self._p._get(machine.id)
        instance = current.raw
        device = str(instance.get("RootDeviceName") or "/dev/xvda")
        old_volume = _root_volume(instance, device)
        deadline = time.monotonic() + self._p.timeout
        if current.state != MachineState.STOPPED:
            self._p._stop(current)
            self._p._wait_for(current.workload, [current], {MachineState.STOPPED}, deadline)
        old = self._p._call(
            "ec2:DescribeVolumes", self._ec2.describe_volumes, VolumeIds=[old_volume]
        )["Volumes"][0]
        size = max(int(old.get("Size", 0)), _image_size(image), 1)
        tags = tr.tags_of(old) or {WORKLOAD_TAG: current.workload}
        created = self._p._call(
            "ec2:CreateVolume",
            self._ec2.create_volume,
            SnapshotId=source,
            AvailabilityZone=instance["Placement"]["AvailabilityZone"],
            Encrypted=True,
            VolumeType="gp3",
            Size=size,
            TagSpecifications=[{"ResourceType": "volume", "Tags": tr.tag_list(tags)}],
        )
        new_volume = str(created["VolumeId"])
        self._wait_volume(new_volume, "available", deadline)
        self._swap_root(current.id, device, old_volume, new_volume, deadline)
        # A volume attached by hand would outlive the instance otherwise.
        self._p._call(
            "ec2:ModifyInstanceAttribute",
            self._ec2.modify_instance_attribute,
            InstanceId=current.id,
            BlockDeviceMappings=[{"DeviceName": device, "Ebs": {"DeleteOnTermination": True}}],
        )
        self._p._start(current)
        self._p._call("ec2:DeleteVolume", self._ec2.delete_volume, VolumeId=old_volume)

    def _swap_root(
        self, instance_id: str, device: str, old_volume: str, new_volume: str, deadline: float
    ) -> None:
        detached = False
        try:
            self._p._call(
                "ec2:DetachVolume",
                self._ec2.detach_volume,
                VolumeId=old_volume,
                InstanceId=instance_id,
            )
            detached = True
            self._wait_volume(old_volume, "available", deadline)
            self._p._call(
                "ec2:AttachVolume",
                self._ec2.attach_volume,
                VolumeId=new_volume,
                InstanceId=instance_id,
                Device=device,
            )
            self._wait_volume(new_volume, "in-use", deadline)
        except BaseException:
            self._undo_swap(instance_id, device, old_volume, new_volume, detached, deadline)
            raise

    def _undo_swap(
        self,
        instance_id: str,
        device: str,
        old_volume: str,
        new_volume: str,
        detached: bool,
        deadline: float,
    ) -> None:
        try:
            if detached:
                volume = self._p._call(
                    "ec2:DescribeVolumes", self._ec2.describe_volumes, VolumeIds=[new_volume]
                )["Volumes"][0]
                if volume.get("State") == "in-use":
                    self._p._call("ec2:DetachVolume", self._ec2.detach_volume, VolumeId=new_volume)
                    self._wait_volume(new_volume, "available", deadline)
                self._p._call(
                    "ec2:AttachVolume",
                    self._ec2.attach_volume,
                    VolumeId=old_volume,
                    InstanceId=instance_id,
                    Device=device,
                )
            self._p._call("ec2:DeleteVolume", self._ec2.delete_volume, VolumeId=new_volume)
        except ProviderError as exc:
            # The original error is the one raised; this one is only reported.
            log.warning("aws: restore of %s could not be undone: %s", instance_id, exc)

    def _wait_volume(self, volume_id: str, state: str, deadline: float) -> None:
        while True:
            answer = self._p._call(
                "ec2:DescribeVolumes", self._ec2.describe_volumes, VolumeIds=[volume_id]
            )
            volumes = answer.get("Volumes", [])
            if volumes and volumes[0].get("State") == state:
                return
            if time.monotonic() >= deadline:
                raise ProviderError(f"volume {volume_id} is not {state} in time", provider="aws")
            time.sleep(self._p.poll_interval)


def _image_size(image: Mapping[str, Any]) -> int:
    sizes = [
        int(m["Ebs"].get("VolumeSize", 0))
        for m in image.get("BlockDeviceMappings") or []
        if "Ebs" in m
    ]
    return max(sizes, default=0)


def _root_volume(instance: Mapping[str, Any], device: str) -> str:
    for mapping in instance.get("BlockDeviceMappings") or []:
        if mapping.get("DeviceName") == device and mapping.get("Ebs", {}).get("VolumeId"):
            return str(mapping["Ebs"]["VolumeId"])
    raise ProviderError(
        f"{instance.get('InstanceId')} has no EBS root volume at {device}", provider="aws"
    )
