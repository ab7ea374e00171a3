"""What vmkit made on EC2 that no live instance owns: found and deleted by ``Provider.gc``.

A resource counts only when it carries vmkit's ``vmkit-workload`` tag AND is
of a kind and name vmkit makes: the workload's security group and key pair
(``vmkit-<workload>``), the EBS volumes vmkit tags (root volumes through
RunInstances' TagSpecifications, restored ones through CreateVolume), and
instances it launched that no replica claims (see
``translate.instance_replica``). Images and EBS snapshots are backups and
never count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vmkit.errors import NotFound, ProviderError
from vmkit.machine import MachineState, Orphan
from vmkit.plan import WORKLOAD_TAG, in_flight, recent
from vmkit.providers.aws import translate as tr
from vmkit.providers.aws.errors import aws_error_code

if TYPE_CHECKING:
    from vmkit.providers.aws.provider import AwsProvider

__all__ = ["delete_orphans", "find_orphans"]

INSTANCE = "instance"
VOLUME = "volume"
SECURITY_GROUP = "security-group"
KEY_PAIR = "key-pair"
# EC2 refuses to delete a volume still attached (or detaching) with this code
# ("Error codes for the Amazon EC2 API", VolumeInUse).
VOLUME_IN_USE = "VolumeInUse"
_ENDED = (MachineState.DELETED, MachineState.DELETING)

log = logging.getLogger(__name__)


def find_orphans(provider: AwsProvider, workload: str | None) -> list[Orphan]:
    """The orphans of ``workload`` (of every workload when None). Read-only."""
    now = datetime.now(UTC)
    machines = [m for m in provider._list(workload) if m.state not in _ENDED]
    debris = [m for m in machines if m.replica is None and not in_flight(m, now)]
    debris_ids = {m.id for m in debris}
    owners = {m.workload for m in machines if m.id not in debris_ids}
    # A restore whose task ended failed-detached (or whose fallback undo failed)
    # leaves its instance with no root volume: the detached old one may be the
    # only copy of the machine's disk, so that workload's volumes all stay.
    rootless = {
        m.workload for m in machines if m.id not in debris_ids and not _has_root_volume(m.raw)
    }
    found = [
        _orphan(
            INSTANCE,
            m.id,
            m.name,
            m.workload,
            "launched by vmkit with no replica (an interrupted deploy)",
            m.raw,
        )
        for m in debris
    ]
    found += _volumes(provider, workload, owners, debris_ids, now, rootless)
    ec2 = provider.ec2_client
    groups = _pages(
        provider,
        "ec2:DescribeSecurityGroups",
        ec2.describe_security_groups,
        "SecurityGroups",
        _owner_filter(workload),
    )
    for group in groups:
        owner = tr.tags_of(group).get(WORKLOAD_TAG, "")
        name = str(group.get("GroupName", ""))
        if owner and owner not in owners and name == tr.security_group_name(owner):
            found.append(
                _orphan(SECURITY_GROUP, str(group["GroupId"]), name, owner, _unowned(owner), group)
            )
    pairs = provider._call(
        "ec2:DescribeKeyPairs", ec2.describe_key_pairs, Filters=_owner_filter(workload)
    ).get("KeyPairs", [])
    for pair in pairs:
        owner = tr.tags_of(pair).get(WORKLOAD_TAG, "")
        name = str(pair.get("KeyName", ""))
        if owner and owner not in owners and name == tr.key_pair_name(owner):
            pair_id = str(pair.get("KeyPairId") or name)
            found.append(_orphan(KEY_PAIR, pair_id, name, owner, _unowned(owner), pair))
    return found


def delete_orphans(provider: AwsProvider, orphans: Sequence[Orphan]) -> None:
    """Delete ``orphans``: instances first (waiting until they are gone, so
    their volumes and network interfaces let go), then volumes, security
    groups and key pairs. One already gone is fine."""
    deadline = time.monotonic() + provider.timeout
    instances = [o for o in orphans if o.kind == INSTANCE]
    if instances:
        machines = [tr.to_machine(o.raw) for o in instances]
        provider._delete(machines)
        for workload in sorted({m.workload for m in machines}):
            ids = [m.id for m in machines if m.workload == workload]
            provider._wait_gone(workload, ids, deadline)
    ec2 = provider.ec2_client
    for orphan in orphans:
        if orphan.kind == VOLUME:
            _delete_volume(provider, orphan.id, deadline)
        elif orphan.kind == SECURITY_GROUP:
            provider._network.delete_group(orphan.id, deadline)
        elif orphan.kind == KEY_PAIR:
            try:
                provider._call("ec2:DeleteKeyPair", ec2.delete_key_pair, KeyName=orphan.name)
            except NotFound:
                continue


def _volumes(
    provider: AwsProvider,
    workload: str | None,
    owners: set[str],
    debris: set[str],
    now: datetime,
    keep: set[str],
) -> list[Orphan]:
    """Tagged volumes attached to nothing (left by a restore that did not
    finish, or by a workload whose instances are gone), and those of debris
    instances. An unattached volume of a live workload younger than
    IN_FLIGHT may be a restore in progress: it stays; so does every
    unattached volume of a workload in ``keep``."""
    found: list[Orphan] = []
    ec2 = provider.ec2_client
    for volume in _pages(
        provider, "ec2:DescribeVolumes", ec2.describe_volumes, "Volumes", _owner_filter(workload)
    ):
        owner = tr.tags_of(volume).get(WORKLOAD_TAG, "")
        volume_id = str(volume["VolumeId"])
        attached = {str(a.get("InstanceId")) for a in volume.get("Attachments") or []}
        if attached & debris:
            reason = f"attached to {', '.join(sorted(attached & debris))}, an orphaned instance"
        elif volume.get("State") == "available" and owner in keep:
            log.warning(
                "aws: keeping volume %s: an instance of %s has no root volume (a restore "
                "cut short?); attach it back or delete it by hand",
                volume_id,
                owner,
            )
            continue
        elif volume.get("State") == "available" and (
            owner not in owners or not recent(volume.get("CreateTime"), now)
        ):
            reason = "attached to no instance"
            if owner not in owners:
                reason += f"; {_unowned(owner)}"
        else:
            continue
        name = tr.tags_of(volume).get("Name") or volume_id
        found.append(_orphan(VOLUME, volume_id, name, owner or None, reason, volume))
    return found


def _has_root_volume(instance: Mapping[str, Any]) -> bool:
    """Whether an instance record shows an EBS volume at its root device
    (Instance: ``RootDeviceName``, ``BlockDeviceMappings``)."""
    root = instance.get("RootDeviceName")
    mappings = instance.get("BlockDeviceMappings") or []
    return any(m.get("DeviceName") == root and m.get("Ebs") for m in mappings)


def _delete_volume(provider: AwsProvider, volume_id: str, deadline: float) -> None:
    # A volume of a just-terminated instance may still be detaching.
    while True:
        try:
            provider._call(
                "ec2:DeleteVolume", provider.ec2_client.delete_volume, VolumeId=volume_id
            )
            return
        except NotFound:
            return
        except ProviderError as exc:
            if aws_error_code(exc) != VOLUME_IN_USE or time.monotonic() >= deadline:
                raise
        time.sleep(provider.poll_interval)


def _pages(
    provider: AwsProvider,
    operation: str,
    method: Callable[..., Any],
    key: str,
    filters: list[dict[str, Any]],
) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        params: dict[str, Any] = {"Filters": filters}
        if token:
            params["NextToken"] = token
        page = provider._call(operation, method, **params)
        yield from page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return


def _owner_filter(workload: str | None) -> list[dict[str, Any]]:
    if workload is None:
        return [{"Name": "tag-key", "Values": [WORKLOAD_TAG]}]
    return [{"Name": f"tag:{WORKLOAD_TAG}", "Values": [workload]}]


def _orphan(
    kind: str, resource_id: str, name: str, workload: str | None, reason: str, raw: Any
) -> Orphan:
    return Orphan(
        kind=kind,
        id=resource_id,
        name=name,
        provider="aws",
        workload=workload,
        reason=reason,
        raw=dict(raw),
    )


def _unowned(workload: str) -> str:
    return f"workload {workload} has no instance left"
