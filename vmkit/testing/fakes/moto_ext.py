"""Root volume replacement tasks for moto's EC2, which moto 5.2.5 lacks.

vmkit restores an EC2 machine with a *root volume replacement task*
(``CreateReplaceRootVolumeTask``, then ``DescribeReplaceRootVolumeTasks``
until the task ends). moto 5.2.5 implements neither: its dispatcher raises
``NotImplementedError("The ... action has not been implemented")``
(moto/core/responses.py, ``BaseResponse.call_action``), which reaches the
caller as that exception under ``mock_aws`` and as an HTTP 500 HTML page from
moto's server. :func:`install` teaches both actions to ``EC2Response``, the
one response class behind ``mock_aws`` and moto's server alike
(moto/ec2/urls.py), so ``vmkit demo``, ``vmkit sim serve``, the conformance
suite and the reliability harness all restore as on EC2. The tasks live in
moto's own EC2 backend (one book per account and region), so moto's reset
forgets them with everything else.

The rules kept are EC2's, from the API reference
(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateReplaceRootVolumeTask.html,
``API_DescribeReplaceRootVolumeTasks.html``, ``API_ReplaceRootVolumeTask.html``)
and the user guide page "Replace a root volume"
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/replace-root.html):

* the instance must be ``running`` (else ``IncorrectInstanceState``) and its
  root volume an EBS volume (else ``UnsupportedOperation``);
* the replacement comes from ``SnapshotId`` (which must have been taken from
  the instance's current or a previous root volume: an AMI that ``CreateImage``
  made of this instance counts, since moto snapshots a stand-in volume for
  it), from ``ImageId`` (same architecture; the instance then reports that
  AMI), or from the launch state when neither is given; ``VolumeId`` is not
  modelled and raises ``NotImplementedError`` as moto does for what it lacks;
* the new volume is made in the instance's zone, with the original's type
  and DeleteOnTermination and its size (with ``ImageId``: the larger of that
  and the AMI's root size), encrypted when the original, the snapshot or the
  account's encryption by default is, with the original's KMS key when it
  was encrypted; it is attached at the root device in the original's place;
  tags are not copied (the guide names type, size and DeleteOnTermination
  only);
* the original volume is deleted when ``DeleteReplacedRootVolume`` is true,
  otherwise it stays ``available`` (billed) until deleted;
* the instance keeps its id, network interfaces and IP addresses;
* a task goes ``pending`` -> ``in-progress`` -> ``succeeded``, or
  ``pending`` -> ``failing`` -> ``failed`` (original volume still attached)
  or ``failed-detached`` (no root volume attached, the original kept). EC2
  runs a task in the background; here a task moves one state on each time a
  ``DescribeReplaceRootVolumeTasks`` lists it, the replacement happening on
  the step to ``succeeded``. A failed task leaves no replacement volume
  (what EC2 does with its replacement volume is not documented; the fake
  keeps none);
* ids are ``replacevol-`` and 17 hex digits, times are written as the guide's
  example (``2020-11-06 13:09:54.0``); a ``ClientToken`` seen before answers
  the same task when the parameters match and ``IdempotentParameterMismatch``
  otherwise (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html);
* unknown snapshot: ``InvalidSnapshot.NotFound``; unknown AMI:
  ``InvalidAMIID.NotFound``; unknown instance: ``InvalidInstanceID.NotFound``
  ("Error codes for the Amazon EC2 API",
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
  A snapshot of another lineage gets ``InvalidParameterValue``, the common
  code for "a value ... cannot be used": AWS documents no specific one.

Answers are EC2's XML (``replaceRootVolumeTask`` / ``replaceRootVolumeTaskSet``
of ``item``), written by moto's own serializer from botocore's EC2 model.

Fault hook: :func:`fail_next_task` makes the next task created fail.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "FAILED_STATES",
    "TASK_STATES",
    "fail_next_task",
    "install",
    "installed",
    "uninstall",
    "uninstalled",
]

#: Every task state, in the API's own order (ReplaceRootVolumeTask, taskState).
TASK_STATES = ("pending", "in-progress", "failing", "succeeded", "failed", "failed-detached")
#: The states a failed task ends in.
FAILED_STATES = ("failed", "failed-detached")

_BOOK = "_vmkit_replace_root_volume_tasks"
_TASK_RESOURCE = "replace-root-volume-task"
# moto's server answers from many threads; one lock keeps each task's steps
# and the volume swap they make whole.
_lock = threading.RLock()
_failures: list[str] = []


@dataclass
class _Task:
    id: str
    instance_id: str
    snapshot_id: str | None
    image_id: str | None
    delete_replaced: bool
    tags: dict[str, str]
    fingerprint: tuple[Any, ...]
    ahead: list[str]
    state: str = "pending"
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    completed: datetime | None = None

    def record(self) -> dict[str, Any]:
        """The task as the API's ReplaceRootVolumeTask structure."""
        record: dict[str, Any] = {
            "ReplaceRootVolumeTaskId": self.id,
            "InstanceId": self.instance_id,
            "TaskState": self.state,
            "StartTime": _timestamp(self.started),
            "DeleteReplacedRootVolume": self.delete_replaced,
            "Tags": [{"Key": k, "Value": v} for k, v in sorted(self.tags.items())],
        }
        if self.completed is not None:
            record["CompleteTime"] = _timestamp(self.completed)
        if self.snapshot_id is not None:
            record["SnapshotId"] = self.snapshot_id
        if self.image_id is not None:
            record["ImageId"] = self.image_id
        return record


@dataclass
class _Book:
    """One account's tasks in one region, kept on moto's EC2 backend."""

    tasks: dict[str, _Task] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    # Every root volume each instance had while the book watched it: the
    # lineage a snapshot must come from.
    roots: dict[str, set[str]] = field(default_factory=dict)


def _timestamp(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 100000}"


def _book(backend: Any) -> _Book:
    book = getattr(backend, _BOOK, None)
    if not isinstance(book, _Book):
        book = _Book()
        setattr(backend, _BOOK, book)
    return book


def _error(code: str, message: str) -> Exception:
    from moto.ec2.exceptions import EC2ClientError

    return EC2ClientError(code, message)


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


# ------------------------------------------------------------------ the hook


def fail_next_task(state: str = "failed") -> None:
    """Fault hook: the next task created (in any account) ends in ``state``.

    ``"failed"`` leaves the original root volume attached;
    ``"failed-detached"`` leaves the instance without a root volume, the
    original kept ``available``. Calls queue up, one task each;
    :func:`install` forgets those not used.
    """
    if state not in FAILED_STATES:
        raise ValueError(f"state must be one of {', '.join(FAILED_STATES)}, got {state!r}")
    with _lock:
        _failures.append(state)


# --------------------------------------------------------------- the actions


def _create_replace_root_volume_task(self: Any) -> Any:
    from moto.core.responses import ActionResult

    self.error_on_dryrun()
    instance_id = self._get_param("InstanceId")
    if not instance_id:
        raise _error("MissingParameter", "The request must contain the parameter InstanceId")
    request = {
        "instance_id": str(instance_id),
        "snapshot_id": self._get_param("SnapshotId"),
        "image_id": self._get_param("ImageId"),
        "volume_id": self._get_param("VolumeId"),
        "delete_replaced": _flag(self._get_param("DeleteReplacedRootVolume", False)),
        "tags": self._parse_tag_specification().get(_TASK_RESOURCE, {}),
    }
    token = str(self._get_param("ClientToken") or "")
    with _lock:
        task = _create(self.ec2_backend, token, **request)
        return ActionResult({"ReplaceRootVolumeTask": task.record()})


def _create(
    backend: Any,
    token: str,
    *,
    instance_id: str,
    snapshot_id: str | None,
    image_id: str | None,
    volume_id: str | None,
    delete_replaced: bool,
    tags: dict[str, str],
) -> _Task:
    book = _book(backend)
    fingerprint = (
        instance_id,
        snapshot_id,
        image_id,
        volume_id,
        delete_replaced,
        tuple(sorted(tags.items())),
    )
    if token and token in book.tokens:
        known = book.tasks[book.tokens[token]]
        if known.fingerprint != fingerprint:
            raise _error(
                "IdempotentParameterMismatch",
                "The client token was used before with other parameters.",
            )
        return known
    if volume_id:
        raise NotImplementedError("a root volume replacement by an existing volume (VolumeId)")
    if snapshot_id and image_id:
        raise _error(
            "InvalidParameterCombination", "SnapshotId and ImageId cannot be used together."
        )
    instance = backend.get_instance(instance_id)
    if instance.state != "running":
        raise _error(
            "IncorrectInstanceState",
            f"The instance '{instance_id}' is not in the 'running' state.",
        )
    _, mapping = _root_mapping(instance)
    history = book.roots.setdefault(instance.id, set())
    history.add(str(mapping.volume_id))
    if snapshot_id:
        snapshot = backend.get_snapshot(snapshot_id)
        if not _from_lineage(backend, snapshot, instance.id, history):
            raise _error(
                "InvalidParameterValue",
                f"The snapshot '{snapshot_id}' was not created from a root volume of "
                f"instance '{instance_id}'.",
            )
    if image_id:
        (image,) = backend.describe_images(ami_ids=[image_id])
        if image.architecture != instance.architecture:
            raise _error(
                "InvalidParameterValue",
                f"The architecture of image '{image_id}' does not match the instance's.",
            )
    outcome = _failures.pop(0) if _failures else None
    task = _Task(
        id=f"replacevol-{secrets.token_hex(9)[:17]}",
        instance_id=instance.id,
        snapshot_id=snapshot_id or None,
        image_id=image_id or None,
        delete_replaced=delete_replaced,
        tags=dict(tags),
        fingerprint=fingerprint,
        ahead=["in-progress", "succeeded"] if outcome is None else ["failing", outcome],
    )
    book.tasks[task.id] = task
    if token:
        book.tokens[token] = task.id
    return task


def _describe_replace_root_volume_tasks(self: Any) -> Any:
    from moto.core.responses import ActionResult

    self.error_on_dryrun()
    ids = [str(i) for i in self._get_param("ReplaceRootVolumeTaskIds", []) or []]
    filters = self._filters_from_querystring()
    unknown = sorted(set(filters) - {"instance-id"})
    if unknown:
        raise _error("InvalidParameterValue", f"The filter '{unknown[0]}' is invalid")
    instances = {str(v) for v in filters.get("instance-id", [])}
    size = int(self._get_param("MaxResults") or 50)
    if not 1 <= size <= 50:
        raise _error("InvalidParameterValue", "MaxResults must be between 1 and 50")
    start = int(self._get_param("NextToken") or 0)
    backend = self.ec2_backend
    with _lock:
        # Unknown ids are left out rather than refused: AWS documents no
        # error code for them.
        listed = [
            t
            for t in _book(backend).tasks.values()
            if (not ids or t.id in ids) and (not instances or t.instance_id in instances)
        ]
        page = listed[start : start + size]
        for task in page:
            _advance(backend, task)
        answer: dict[str, Any] = {"ReplaceRootVolumeTasks": [t.record() for t in page]}
    if start + size < len(listed):
        answer["NextToken"] = str(start + size)
    return ActionResult(answer)


# ---------------------------------------------------------------- the work


def _advance(backend: Any, task: _Task) -> None:
    """Move ``task`` one state on; the last step does (or undoes) the work."""
    if not task.ahead:
        return
    state = task.ahead.pop(0)
    if state == "succeeded":
        state = _replace(backend, task)
    elif state == "failed-detached":
        _detach_root(backend, task.instance_id)
    task.state = state
    if state in ("succeeded", *FAILED_STATES):
        task.ahead.clear()
        task.completed = datetime.now(UTC)


def _replace(backend: Any, task: _Task) -> str:
    """Swap the instance's root volume for a new one; ``failed`` if it cannot be."""
    from moto.ec2.exceptions import EC2ClientError

    try:
        instance = backend.get_instance(task.instance_id)
        device, mapping = _root_mapping(instance)
        original = backend.get_volume(mapping.volume_id)
        source, size, snapshot = _source(backend, task, original)
    except EC2ClientError:
        return "failed"
    if instance.state != "running":
        return "failed"
    encrypted = bool(
        original.encrypted
        or (snapshot is not None and snapshot.encrypted)
        or getattr(backend, "ebs_encryption_by_default", False)
    )
    key = original.kms_key_id if original.encrypted else None
    if key is None and snapshot is not None and snapshot.encrypted:
        key = snapshot.kms_key_id
    kind = original.volume_type
    replacement = backend.create_volume(
        size=size,
        zone_name=instance.availability_zone,
        snapshot_id=source,
        encrypted=encrypted,
        kms_key_id=key,
        volume_type=kind,
        iops=original.iops if kind in ("io1", "io2", "gp3") else None,
        throughput=original.throughput if kind == "gp3" else None,
    )
    backend.detach_volume(original.id, instance.id, device)
    backend.attach_volume(replacement.id, instance.id, device, mapping.delete_on_termination)
    _book(backend).roots.setdefault(instance.id, set()).update({original.id, replacement.id})
    if task.delete_replaced:
        backend.delete_volume(original.id)
    if task.image_id is not None:
        instance.image_id = task.image_id
    return "succeeded"


def _source(backend: Any, task: _Task, original: Any) -> tuple[str | None, int, Any]:
    """The snapshot the replacement is made from, its size, and that snapshot."""
    if task.snapshot_id is not None:
        snapshot = backend.get_snapshot(task.snapshot_id)
        return snapshot.id, int(original.size), snapshot
    if task.image_id is not None:
        (image,) = backend.describe_images(ami_ids=[task.image_id])
        (root,) = [
            m for m in image.block_device_mappings if m["DeviceName"] == image.root_device_name
        ]
        snapshot = backend.get_snapshot(root["Ebs"]["SnapshotId"])
        return snapshot.id, max(int(original.size), int(root["Ebs"]["VolumeSize"])), snapshot
    launch = original.snapshot_id
    return launch, int(original.size), backend.get_snapshot(launch) if launch else None


def _detach_root(backend: Any, instance_id: str) -> None:
    from moto.ec2.exceptions import EC2ClientError

    try:
        instance = backend.get_instance(instance_id)
        device, mapping = _root_mapping(instance)
    except EC2ClientError:
        return
    backend.detach_volume(mapping.volume_id, instance.id, device)


def _root_mapping(instance: Any) -> tuple[str, Any]:
    """The instance's root device and moto's block device entry for it."""
    device = str(instance.root_device_name)
    mapping = instance.block_device_mapping.get(device)
    if mapping is None or not getattr(mapping, "volume_id", None):
        raise _error(
            "UnsupportedOperation",
            f"The instance '{instance.id}' has no EBS root volume at {device}.",
        )
    return device, mapping


def _from_lineage(backend: Any, snapshot: Any, instance_id: str, history: set[str]) -> bool:
    """Whether ``snapshot`` was taken from one of the instance's root volumes."""
    source = getattr(snapshot, "volume", None)
    if source is not None and getattr(source, "id", None) in history:
        return True
    # moto's CreateImage snapshots a stand-in volume (moto/ec2/models/amis.py,
    # Ami.__init__); the AMI remembers the instance it was made of.
    image = backend.amis.get(snapshot.from_ami) if snapshot.from_ami else None
    return image is not None and image.instance_id == instance_id


# ----------------------------------------------------------------- installing

_HANDLERS: dict[str, Callable[[Any], Any]] = {
    "create_replace_root_volume_task": _create_replace_root_volume_task,
    "describe_replace_root_volume_tasks": _describe_replace_root_volume_tasks,
}


def install() -> None:
    """Teach moto's EC2 the two actions (idempotent) and forget queued faults.

    Applies to ``mock_aws`` and to a moto server running in this process.
    """
    from moto.ec2.responses import EC2Response

    with _lock:
        _failures.clear()
        for name, handler in _HANDLERS.items():
            setattr(EC2Response, name, handler)


def uninstall() -> None:
    """Take the two actions away again: moto answers them as unimplemented."""
    from moto.ec2.responses import EC2Response

    with _lock:
        for name, handler in _HANDLERS.items():
            if EC2Response.__dict__.get(name) is handler:
                delattr(EC2Response, name)


def installed() -> bool:
    """Whether moto's EC2 answers the two actions through this module."""
    from moto.ec2.responses import EC2Response

    return all(EC2Response.__dict__.get(n) is h for n, h in _HANDLERS.items())


@contextmanager
def uninstalled() -> Iterator[None]:
    """Without the two actions for the ``with`` block (an EC2-compatible
    endpoint that lacks them); as before afterwards."""
    was = installed()
    uninstall()
    try:
        yield
    finally:
        if was:
            from moto.ec2.responses import EC2Response

            with _lock:
                for name, handler in _HANDLERS.items():
                    setattr(EC2Response, name, handler)
