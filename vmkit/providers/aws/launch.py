"""Replica identity of the instances of one EC2 launch.

One ``RunInstances`` applies one tag set to every instance it launches, so the
launch carries the list of its replicas (``vmkit-replicas``) and an
instance's replica is the entry at its ``AmiLaunchIndex``; an instance tagged
on its own (``vmkit-replica``) says it directly. Pure functions: nothing here
calls AWS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vmkit.provider import REPLICA_TAG

__all__ = [
    "REPLICAS_TAG",
    "TAG_VALUE_LIMIT",
    "format_replicas",
    "instance_replica",
    "launch_batches",
    "launch_indexed",
    "parse_replica",
    "replica_at",
    "tags_of",
]

#: The replicas of one launch, in AmiLaunchIndex order (see format_replicas).
REPLICAS_TAG = "vmkit-replicas"
# "Maximum value length - 256 Unicode characters in UTF-8" (EC2 User Guide,
# "Tag restrictions": https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions).
TAG_VALUE_LIMIT = 256
# Between the items of a replica list: the same page allows letters, digits,
# spaces and + - = . _ : / @ across services (no comma), so "_" separates.
_ITEM_SEPARATOR = "_"


def tags_of(resource: Mapping[str, Any]) -> dict[str, str]:
    """The ``Tags`` of an EC2 resource as a dict (empty when untagged)."""
    return {str(t["Key"]): str(t.get("Value", "")) for t in resource.get("Tags") or []}


def _run(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def format_replicas(replicas: Sequence[int]) -> str:
    """Replica indexes, in their order, as runs: ``(0, 1, 2, 5, 7, 8)`` ->
    ``"0-2_5_7-8"``. A run is a stretch of consecutive increasing indexes;
    :func:`replica_at` reads the list back by position."""
    runs: list[tuple[int, int]] = []
    for replica in replicas:
        if runs and replica == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], replica)
        else:
            runs.append((replica, replica))
    return _ITEM_SEPARATOR.join(_run(first, last) for first, last in runs)


def replica_at(value: str, position: int) -> int | None:
    """The replica at ``position`` (from 0) of a :func:`format_replicas` list;
    None when the list is shorter or ``value`` is not of that form."""
    runs: list[tuple[int, int]] = []
    for item in value.split(_ITEM_SEPARATOR):
        first, dash, last = item.partition("-")
        if not _digits(first) or (dash and not _digits(last)):
            return None
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            return None
        runs.append((low, high))
    if position < 0:
        return None
    for low, high in runs:
        if position <= high - low:
            return low + position
        position -= high - low + 1
    return None


def launch_batches(replicas: Sequence[int], limit: int = TAG_VALUE_LIMIT) -> list[tuple[int, ...]]:
    """``replicas`` (in order) cut into launches whose :func:`format_replicas`
    fits in ``limit`` characters, the most a tag value holds. One launch
    unless the indexes are scattered: 0 to 199 is ``"0-199"``."""
    batches: list[list[int]] = []
    runs: list[tuple[int, int]] = []
    length = 0
    for replica in replicas:
        if runs and replica == runs[-1][1] + 1:
            first, last = runs[-1]
            grown = length - len(_run(first, last)) + len(_run(first, replica))
            if grown <= limit:
                runs[-1], length = (first, replica), grown
                batches[-1].append(replica)
                continue
        elif runs:
            grown = length + len(_ITEM_SEPARATOR) + len(str(replica))
            if grown <= limit:
                runs.append((replica, replica))
                length = grown
                batches[-1].append(replica)
                continue
        batches.append([replica])
        runs, length = [(replica, replica)], len(str(replica))
    return [tuple(batch) for batch in batches]


def launch_indexed(instances: Sequence[Mapping[str, Any]], count: int) -> bool:
    """Whether a RunInstances answer numbers its instances as EC2 does: each
    with its own ``AmiLaunchIndex``, from 0, below ``count`` (the launch asked
    for). Instance, EC2 API reference: "The AMI launch index, which can be
    used to find this instance in the launch group"
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Instance.html)."""
    indexes = [i.get("AmiLaunchIndex") for i in instances]
    numbers = [n for n in indexes if isinstance(n, int) and not isinstance(n, bool)]
    if len(numbers) != len(indexes) or len(set(numbers)) != len(numbers):
        return False
    return all(0 <= n < count for n in numbers)


def instance_replica(instance: Mapping[str, Any]) -> int | None:
    """The replica an EC2 instance is, from its record alone.

    Its ``vmkit-replica`` tag wins when it has one (an instance tagged on its
    own: made by an earlier vmkit, or through an endpoint whose answers
    lack ``AmiLaunchIndex``). Otherwise the launch's
    ``vmkit-replicas`` list, at the instance's ``AmiLaunchIndex``. None when
    neither says (not vmkit's, or a launch list that does not cover it).
    """
    tags = tags_of(instance)
    tagged = parse_replica(tags.get(REPLICA_TAG))
    if tagged is not None:
        return tagged
    launch = tags.get(REPLICAS_TAG)
    index = instance.get("AmiLaunchIndex")
    if launch is None or not isinstance(index, int) or isinstance(index, bool):
        return None
    return replica_at(launch, index)


def _digits(text: str) -> bool:
    # str.isdigit alone takes "²", which int() refuses.
    return text.isascii() and text.isdigit()


def parse_replica(value: str | None) -> int | None:
    if value is None or not _digits(value):
        return None
    return int(value)
