"""AMIs on EC2: the boot image of a plan, and snapshots (CreateImage) with restore.

A restore is a root volume replacement task; endpoints without it (EC2
look-alikes) get the former stop / swap root volume / start.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.parsers import ResponseParserError

from vmkit.errors import DeployTimeout, NotFound, ProviderError, SpecError
from vmkit.machine import Machine, MachineState, Snapshot
from vmkit.provider import REPLICA_TAG, WORKLOAD_TAG
from vmkit.providers.aws import translate as tr
from vmkit.providers.aws.errors import aws_error_code

if TYPE_CHECKING:
    from vmkit.providers.aws.provider import AwsProvider

__all__ = ["Images"]

log = logging.getLogger(__name__)

# AMI names: 3-128 of letters, digits, ( ) [ ] space . / - ' @ _
# (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateImage.html).
_AMI_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9()\[\] ./'@_-]+")
# ReplaceRootVolumeTask's taskState values
# (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_ReplaceRootVolumeTask.html).
TASK_FAILED = frozenset({"failed", "failed-detached"})
TASK_ENDED = TASK_FAILED | {"succeeded"}
# What an endpoint without root volume replacement answers (see _unimplemented).
UNIMPLEMENTED_CODES = frozenset({"InvalidAction", "UnsupportedOperation", "NotImplemented"})


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

    def root_device(self, image_id: str) -> tuple[str, int]:
        """The root device name and root volume size in GiB (0 when the image
        does not say) of the workload's boot image, as RunInstances'
        BlockDeviceMappings need them: EC2 refuses a root volume smaller than
        the image's snapshot ("Volume of size 20GB is smaller than snapshot
        ..., expect size >= 40GB", InvalidBlockDeviceMapping), which a clone
        of a bigger disk would ask for. SpecError naming ``os_image`` when the
        image does not exist (a deleted snapshot, a mistyped AMI id): plans
        call this before any change."""
        image = self.describe(image_id)
        if image is None:
            raise SpecError("os_image", f"image {image_id} does not exist in {self._p.location}")
        device = str(image.get("RootDeviceName") or "/dev/xvda")
        return device, tr.root_volume_size(image) or 0

    # --------------------------------------------------------------- snapshots

    def snapshot(self, machine: Machine, name: str) -> Snapshot:
        """CreateImage of ``machine`` without a reboot; the AMI and its EBS
        snapshots are tagged with the machine's workload, replica and id."""
        tags = {
            WORKLOAD_TAG: machine.workload,
            tr.MACHINE_TAG: machine.id,
            tr.SNAPSHOT_NAME_TAG: name,
            "Name": name,
        }
        if machine.replica is not None:
            tags[REPLICA_TAG] = str(machine.replica)
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
        """Replace the machine's root volume by one made from the snapshot.

        A root volume replacement task (``CreateReplaceRootVolumeTask``,
        https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateReplaceRootVolumeTask.html)
        made from the AMI's root EBS snapshot when the snapshot is of this
        machine, from the AMI itself otherwise (EC2 takes only snapshots of
        the instance's own root volumes), then polled with one
        ``DescribeReplaceRootVolumeTasks`` per poll round until it ends, the
        provider's timeout as deadline (DeployTimeout past it). EC2 needs the
        instance ``running``: a stopped machine is started first. The
        instance keeps its id, network interfaces and IP addresses, tags and
        name; the new root volume gets the old one's type, size,
        DeleteOnTermination, encryption and (set here) tags, and the old one
        is deleted once the task succeeds (``DeleteReplacedRootVolume``).
        A task that fails leaves the old root volume attached and raises
        ProviderError naming the machine and the task's state ("Replace a
        root volume", https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/replace-root.html).

        NotFound, before any change, for an image that is not a vmkit
        snapshot. An EC2-compatible endpoint that does not implement the
        action gets the stop / swap / start of :meth:`_restore_by_swap`.
        """
        image = self.describe(snapshot.id)
        source = tr.root_snapshot_id(image) if image else None
        if image is None or source is None or WORKLOAD_TAG not in tr.tags_of(image):
            raise NotFound(
                f"snapshot {snapshot.id} is not a vmkit snapshot: no image vmkit made "
                f"with a root EBS snapshot has that id in {self._p.location}",
                provider="aws",
            )
        deadline = time.monotonic() + self._p.timeout
        current = self._p._get(machine.id)
        try:
            # Read-only, before anything changes: whether the endpoint knows
            # root volume replacement at all, and what is in flight already.
            ongoing = self._ongoing_tasks(current.id)
        except ProviderError as exc:
            if not _unimplemented(exc, probe=True):
                raise
            self._fall_back(current, image, source, deadline, exc)
            return
        for task in ongoing:
            self._wait_task(current, task, deadline)
        current = self._running(current, deadline)
        device = str(current.raw.get("RootDeviceName") or "/dev/xvda")
        old_volume = _root_volume(current.raw, device)
        old_tags = tr.tags_of(self._volume(old_volume))
        try:
            task = self._create_task(current, image, source)
        except ProviderError as exc:
            if not _unimplemented(exc, probe=False):
                raise
            self._fall_back(current, image, source, deadline, exc)
            return
        ended = self._wait_task(current, task, deadline)
        state = str(ended.get("TaskState"))
        if state in TASK_FAILED:
            raise ProviderError(_task_failure(current, ended, old_volume, device), provider="aws")
        self._tag_new_root(current, device, old_volume, old_tags)

    def _ongoing_tasks(self, instance_id: str) -> list[dict[str, Any]]:
        """The instance's replacement tasks that have not ended yet."""
        ongoing: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Filters": [{"Name": "instance-id", "Values": [instance_id]}]}
            if token:
                params["NextToken"] = token
            page = self._p._call(
                "ec2:DescribeReplaceRootVolumeTasks",
                self._ec2.describe_replace_root_volume_tasks,
                **params,
            )
            ongoing.extend(
                dict(t)
                for t in page.get("ReplaceRootVolumeTasks", [])
                if t.get("TaskState") not in TASK_ENDED
            )
            token = page.get("NextToken")
            if not token:
                return ongoing

    def _running(self, machine: Machine, deadline: float) -> Machine:
        """The machine once it runs: "The instance must be in the running
        state" for a root volume replacement (replace-root.html above)."""
        if machine.state == MachineState.RUNNING:
            return machine
        if machine.state == MachineState.STOPPING:
            (machine,) = self._p._wait_for(
                machine.workload, [machine], {MachineState.STOPPED}, deadline
            )
        if machine.state == MachineState.STOPPED:
            self._p._start(machine)
        (running,) = self._p._wait_for(
            machine.workload, [machine], {MachineState.RUNNING}, deadline
        )
        return running

    def _create_task(
        self, machine: Machine, image: Mapping[str, Any], source: str
    ) -> dict[str, Any]:
        """CreateReplaceRootVolumeTask; its ClientToken is new for each restore
        and the same on each retry of this call."""
        tags = tr.tags_of(image)
        own = machine.id in (tags.get(tr.MACHINE_TAG), image.get("SourceInstanceId"))
        # "You can only use snapshots that were created directly from the
        # instance's current or previous root volumes" (replace-root.html); a
        # snapshot of another machine (a clone's golden image) goes by its AMI,
        # which EC2 takes when its architecture, virtualization type, product
        # codes and billing information are the instance's (same page).
        origin = {"SnapshotId": source} if own else {"ImageId": str(image["ImageId"])}
        task_tags = {WORKLOAD_TAG: machine.workload, tr.MACHINE_TAG: machine.id}
        answer = self._p._call(
            "ec2:CreateReplaceRootVolumeTask",
            self._ec2.create_replace_root_volume_task,
            InstanceId=machine.id,
            DeleteReplacedRootVolume=True,
            ClientToken=str(uuid.uuid4()),
            TagSpecifications=[
                {"ResourceType": "replace-root-volume-task", "Tags": tr.tag_list(task_tags)}
            ],
            **origin,
        )
        return dict(answer["ReplaceRootVolumeTask"])

    def _wait_task(
        self, machine: Machine, task: Mapping[str, Any], deadline: float
    ) -> dict[str, Any]:
        """Poll the task, one DescribeReplaceRootVolumeTasks per round, until
        it has ended; DeployTimeout at the deadline."""
        current = dict(task)
        task_id = str(current["ReplaceRootVolumeTaskId"])
        while current.get("TaskState") not in TASK_ENDED:
            if time.monotonic() >= deadline:
                raise DeployTimeout(
                    f"{machine.name}: root volume replacement {task_id} is still "
                    f"{current.get('TaskState')} at the deadline",
                    pending=[machine.name],
                    provider="aws",
                    operation="ec2:DescribeReplaceRootVolumeTasks",
                )
            time.sleep(self._p.poll_interval)
            answer = self._p._call(
                "ec2:DescribeReplaceRootVolumeTasks",
                self._ec2.describe_replace_root_volume_tasks,
                ReplaceRootVolumeTaskIds=[task_id],
            )
            found = answer.get("ReplaceRootVolumeTasks") or []
            if found:  # not listed yet: EC2 is eventually consistent
                current = dict(found[0])
        return current

    def _tag_new_root(
        self, machine: Machine, device: str, old_volume: str, tags: Mapping[str, str]
    ) -> None:
        """Give the new root volume the old one's tags: the guide says the
        replacement gets the old one's type, size and DeleteOnTermination, not
        its tags, and gc finds a workload's volumes by them."""
        restored = self._p._get(machine.id)
        new_volume = _root_volume(restored.raw, device)
        if new_volume == old_volume:
            return
        self._p._call(
            "ec2:CreateTags",
            self._ec2.create_tags,
            Resources=[new_volume],
            Tags=tr.tag_list(dict(tags) or {WORKLOAD_TAG: machine.workload}),
        )

    def _volume(self, volume_id: str) -> dict[str, Any]:
        answer = self._p._call(
            "ec2:DescribeVolumes", self._ec2.describe_volumes, VolumeIds=[volume_id]
        )
        return dict(answer["Volumes"][0])

    def _fall_back(
        self,
        machine: Machine,
        image: Mapping[str, Any],
        source: str,
        deadline: float,
        reason: ProviderError,
    ) -> None:
        log.warning(
            "aws: the endpoint has no root volume replacement (%s); restoring %s by "
            "stopping it and swapping its root volume",
            reason,
            machine.name,
        )
        self._restore_by_swap(machine, image, source, deadline)

    def _restore_by_swap(
        self, current: Machine, image: Mapping[str, Any], source: str, deadline: float
    ) -> None:
        """Stop, swap the root volume for one made from ``source``, start: for
        EC2-compatible endpoints without root volume replacement.

        The new volume is encrypted, takes the old one's tags and size (or the
        snapshot's, if larger), and is deleted with the instance. The old
        volume is deleted once the swap is done. If a step fails, the old
        volume goes back, the new one is deleted and a machine that ran is
        started again before raising.
        """
        instance = current.raw
        device = str(instance.get("RootDeviceName") or "/dev/xvda")
        old_volume = _root_volume(instance, device)
        was_up = current.state in (MachineState.RUNNING, MachineState.PENDING)
        if current.state != MachineState.STOPPED:
            self._p._stop(current)
            self._p._wait_for(current.workload, [current], {MachineState.STOPPED}, deadline)
        try:
            old = self._volume(old_volume)
            size = max(int(old.get("Size", 0)), _image_size(image), 1)
            tags = tr.tags_of(old) or {WORKLOAD_TAG: current.workload}
            created = self._p._call(
                "ec2:CreateVolume",
                self._ec2.create_volume,
                SnapshotId=source,
                AvailabilityZone=instance["Placement"]["AvailabilityZone"],
                # A retry after a lost answer must not make a second volume.
                ClientToken=str(uuid.uuid4()),
                Encrypted=True,
                VolumeType="gp3",
                Size=size,
                TagSpecifications=[{"ResourceType": "volume", "Tags": tr.tag_list(tags)}],
            )
            new_volume = str(created["VolumeId"])
            try:
                self._wait_volume(new_volume, "available", deadline)
            except BaseException:
                self._undo_swap(current.id, device, old_volume, new_volume, False, deadline)
                raise
            self._swap_root(current.id, device, old_volume, new_volume, deadline)
            # A volume attached by hand would outlive the instance otherwise.
            self._p._call(
                "ec2:ModifyInstanceAttribute",
                self._ec2.modify_instance_attribute,
                InstanceId=current.id,
                BlockDeviceMappings=[{"DeviceName": device, "Ebs": {"DeleteOnTermination": True}}],
            )
        except BaseException:
            if was_up:
                self._start_quietly(current)
            raise
        self._p._start(current)
        self._p._call("ec2:DeleteVolume", self._ec2.delete_volume, VolumeId=old_volume)

    def _start_quietly(self, machine: Machine) -> None:
        try:
            self._p._start(machine)
        except ProviderError as exc:
            # The restore's own error is the one raised; this one is only reported.
            log.warning("aws: %s could not be started again: %s", machine.name, exc)

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
                volume = self._volume(new_volume)
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


def _unimplemented(exc: ProviderError, *, probe: bool) -> bool:
    """Whether ``exc`` says the endpoint lacks the action (not that EC2 refused it).

    EC2 answers an action it does not know with ``InvalidAction`` and one it
    cannot carry out here with ``UnsupportedOperation`` ("Error codes for the
    Amazon EC2 API", errors-overview.html); other EC2-compatible endpoints say
    ``NotImplemented``. moto 5.2.5 raises NotImplementedError in-process
    (``mock_aws``) and answers its server's HTTP 500 HTML page, which botocore
    cannot parse (ResponseParserError): taken as "unimplemented" only for the
    read-only probe, never after a call that may have changed something.
    """
    if aws_error_code(exc) in UNIMPLEMENTED_CODES:
        return True
    cause: BaseException | None = exc.__cause__
    while cause is not None:
        if isinstance(cause, NotImplementedError):
            return True
        if probe and isinstance(cause, ResponseParserError):
            return True
        cause = cause.__cause__
    return False


def _task_failure(machine: Machine, task: Mapping[str, Any], old_volume: str, device: str) -> str:
    state = task.get("TaskState")
    head = (
        f"restore of {machine.name} ({machine.id}) failed: root volume replacement task "
        f"{task.get('ReplaceRootVolumeTaskId')} ended {state}"
    )
    if state == "failed-detached":
        return (
            f"{head}; the instance has no root volume attached, its former root volume "
            f"{old_volume} is kept (attach it at {device} to boot it again)"
        )
    return f"{head}; the machine keeps its root volume {old_volume}"


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
