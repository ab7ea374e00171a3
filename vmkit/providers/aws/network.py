"""What a workload's instances share on EC2: its VPC, security group and key pair.

The security group and key pair are found by name (``vmkit-<workload>``) or,
on destroy, from what the workload's own instances say they use: every
listing of a workload's instances is shown to :meth:`Network.observe`, which
notes the group ids and key pair of the live ones. That spares a deploy and a
destroy their look-ups in the common case; the look-ups remain for the rest.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmkit.errors import ConfigError, NotFound, ProviderError
from vmkit.provider import WORKLOAD_TAG
from vmkit.providers.aws import translate as tr
from vmkit.providers.aws.errors import aws_error_code
from vmkit.spec import Workload

if TYPE_CHECKING:
    from vmkit.providers.aws.provider import AwsProvider

__all__ = ["Network", "Seen"]

# EC2 refuses a security group without VpcId where the region has no default
# VPC ("Error codes for the Amazon EC2 API", VPCIdNotSpecified:
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
NO_DEFAULT_VPC = "VPCIdNotSpecified"
# Instance states in which an instance is gone or going (InstanceState, EC2 API reference).
_ENDING = ("shutting-down", "terminated")


@dataclass(frozen=True)
class Seen:
    """What listings of a workload showed its live instances use.

    ``groups`` and ``key_pairs`` accumulate (the workload's own names only:
    ``vmkit-<workload>``); ``live`` is whether the latest listing had a live
    instance.
    """

    groups: frozenset[str] = frozenset()
    key_pairs: frozenset[str] = frozenset()
    live: bool = False


class Network:
    """Security groups, key pairs and VPC look-ups, through the provider's
    retried, counted ``_call``."""

    def __init__(self, provider: AwsProvider) -> None:
        self._p = provider
        self._ec2 = provider.ec2_client
        self._seen: dict[str, Seen] = {}
        self._seen_lock = threading.Lock()

    # ------------------------------------------------------------ observing

    def observe(self, instances: Iterable[Mapping[str, Any]], workload: str | None) -> None:
        """Note, per workload, the security group and key pair its live
        instances in this listing use; ``workload`` names the one listed (all
        when None), which has no live instance when none is in the listing.
        Makes no call."""
        found: dict[str, tuple[set[str], set[str], bool]] = {}
        if workload is not None:
            found[workload] = (set(), set(), False)
        for instance in instances:
            owner = tr.tags_of(instance).get(WORKLOAD_TAG)
            if not owner:
                continue
            groups, pairs, _ = found.setdefault(owner, (set(), set(), False))
            if instance.get("State", {}).get("Name") in _ENDING:
                continue
            found[owner] = (groups, pairs, True)
            name = tr.security_group_name(owner)
            groups.update(
                str(g["GroupId"])
                for g in instance.get("SecurityGroups") or []
                if g.get("GroupName") == name and g.get("GroupId")
            )
            if instance.get("KeyName") == tr.key_pair_name(owner):
                pairs.add(str(instance["KeyName"]))
        with self._seen_lock:
            for owner, (groups, pairs, live) in found.items():
                before = self._seen.get(owner, Seen())
                self._seen[owner] = Seen(before.groups | groups, before.key_pairs | pairs, live)

    def forget(self, workload: str) -> Seen:
        """What was seen of ``workload`` (empty when nothing), forgotten."""
        with self._seen_lock:
            return self._seen.pop(workload, Seen())

    def seen(self, workload: str) -> Seen:
        """What was seen of ``workload`` (empty when nothing)."""
        with self._seen_lock:
            return self._seen.get(workload, Seen())

    def subnet_vpc(self, options: tr.AwsOptions) -> str:
        """The VPC of ``options.subnet_id``; ConfigError if ``vpc_id`` disagrees."""
        answer = self._p._call(
            "ec2:DescribeSubnets", self._ec2.describe_subnets, SubnetIds=[options.subnet_id]
        )
        subnets = answer.get("Subnets", [])
        if not subnets:
            raise NotFound(f"subnet {options.subnet_id} does not exist", provider="aws")
        vpc_id = str(subnets[0]["VpcId"])
        if options.vpc_id is not None and options.vpc_id != vpc_id:
            raise ConfigError(
                f"options.aws.vpc_id: subnet {options.subnet_id} is in {vpc_id}, "
                f"not {options.vpc_id}"
            )
        return vpc_id

    def default_vpc(self) -> str:
        """The region's default VPC; ProviderError when it has none."""
        answer = self._p._call(
            "ec2:DescribeVpcs",
            self._ec2.describe_vpcs,
            Filters=[{"Name": "is-default", "Values": ["true"]}],
        )
        vpcs = answer.get("Vpcs", [])
        if not vpcs:
            raise ProviderError(
                f"{self._p.location} has no default VPC: set options.aws.subnet_id",
                provider="aws",
            )
        return str(vpcs[0]["VpcId"])

    def find_group(self, name: str, vpc_id: str) -> dict[str, Any] | None:
        """The security group ``name`` in ``vpc_id``, or None. Read-only."""
        answer = self._p._call(
            "ec2:DescribeSecurityGroups",
            self._ec2.describe_security_groups,
            Filters=[
                {"Name": "group-name", "Values": [name]},
                {"Name": "vpc-id", "Values": [vpc_id]},
            ],
        )
        groups: list[dict[str, Any]] = answer.get("SecurityGroups", [])
        return groups[0] if groups else None

    def ensure(self, workload: Workload) -> None:
        """Make the workload's group hold exactly the declared ingress, and its
        key pair hold the spec's key (or be gone, when the spec has none and
        its instances used one). Idempotent.

        In the default VPC, when the latest listing showed no live instance of
        the workload (a first deploy), the group is created at once, and
        looked up only if it exists already: two requests (create, open the
        ports) instead of four.
        """
        options = tr.parse_options(workload)
        vpc_id = self.subnet_vpc(options) if options.subnet_id else None
        group = self._ensure_group(workload.name, vpc_id)
        wanted = tr.desired_rules(
            workload.ports, ssh=workload.ssh_public_key is not None, cidrs=options.ingress_cidrs
        )
        self._converge_rules(group, wanted)
        if workload.ssh_public_key is not None:
            self._ensure_key_pair(workload.name, workload.ssh_public_key)
        else:
            self._drop_unused_key_pair(workload.name)

    def _ensure_group(self, workload: str, vpc_id: str | None) -> dict[str, Any]:
        """The workload's group in ``vpc_id`` (the default VPC when None), made if missing."""
        name = tr.security_group_name(workload)
        if vpc_id is None and not self.seen(workload).live:
            created = self._create_group(workload, None)
            if created is not None:
                return created
        vpc = vpc_id or self.default_vpc()
        found = self.find_group(name, vpc)
        if found is not None:
            return found
        created = self._create_group(workload, vpc)
        if created is not None:
            return created
        # A concurrent deploy of the same workload made it a moment ago.
        again = self.find_group(name, vpc)
        if again is None:
            raise ProviderError(
                f"security group {name} exists yet cannot be found in {vpc}", provider="aws"
            )
        return again

    def _create_group(self, workload: str, vpc_id: str | None) -> dict[str, Any] | None:
        """A new group for the workload, with no ingress; None when it exists.

        Without ``vpc_id`` EC2 makes it in the default VPC ("VpcId: The ID of
        the VPC. Required for a nondefault VPC.", CreateSecurityGroup, EC2 API
        reference: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html).
        """
        name = tr.security_group_name(workload)
        params: dict[str, Any] = {
            "GroupName": name,
            "Description": f"vmkit workload {workload}: declared ports only",
            "TagSpecifications": [
                {
                    "ResourceType": "security-group",
                    "Tags": tr.tag_list({WORKLOAD_TAG: workload, "Name": name}),
                }
            ],
        }
        if vpc_id is not None:
            params["VpcId"] = vpc_id
        try:
            created = self._p._call(
                "ec2:CreateSecurityGroup", self._ec2.create_security_group, **params
            )
        except ProviderError as exc:
            code = aws_error_code(exc)
            if code == "InvalidGroup.Duplicate":
                return None
            if code == NO_DEFAULT_VPC:
                raise ProviderError(
                    f"{self._p.location} has no default VPC: set options.aws.subnet_id",
                    provider="aws",
                    operation="ec2:CreateSecurityGroup",
                ) from exc
            raise
        return {"GroupId": created["GroupId"], "GroupName": name, "IpPermissions": []}

    def _converge_rules(self, group: Mapping[str, Any], wanted: set[tr.Rule]) -> None:
        have = tr.existing_rules(group.get("IpPermissions") or [])
        extra, missing = have - wanted, wanted - have
        if extra:
            try:
                self._revoke(group, extra)
            except NotFound:
                # A retried revoke whose first answer was lost: the rules may
                # be gone already. Read the group again; revoke what is left.
                fresh = self._describe_group(str(group["GroupId"]))
                left = tr.existing_rules(fresh.get("IpPermissions") or []) - wanted
                if left:
                    self._revoke(fresh, left)
        if missing:
            try:
                self._p._call(
                    "ec2:AuthorizeSecurityGroupIngress",
                    self._ec2.authorize_security_group_ingress,
                    GroupId=group["GroupId"],
                    IpPermissions=tr.permissions(missing),
                )
            except ProviderError as exc:
                if aws_error_code(exc) != "InvalidPermission.Duplicate":
                    raise

    def _ensure_key_pair(self, workload: str, public_key: str) -> None:
        # EC2 fingerprints differ by key type, so the pair is tagged with a
        # digest of the material vmkit imported: a changed key is re-imported.
        name = tr.key_pair_name(workload)
        digest = hashlib.sha256(public_key.encode()).hexdigest()[:16]
        answer = self._p._call(
            "ec2:DescribeKeyPairs",
            self._ec2.describe_key_pairs,
            Filters=[{"Name": "key-name", "Values": [name]}],
        )
        for pair in answer.get("KeyPairs", []):
            if tr.tags_of(pair).get(tr.KEY_HASH_TAG) == digest:
                return
            # Instances already running keep the key they booted with.
            self._p._call("ec2:DeleteKeyPair", self._ec2.delete_key_pair, KeyName=name)
        tags = {WORKLOAD_TAG: workload, tr.KEY_HASH_TAG: digest}
        try:
            self._p._call(
                "ec2:ImportKeyPair",
                self._ec2.import_key_pair,
                KeyName=name,
                PublicKeyMaterial=public_key.encode(),
                TagSpecifications=[{"ResourceType": "key-pair", "Tags": tr.tag_list(tags)}],
            )
        except ProviderError as exc:
            # A retried import whose first answer was lost finds its own pair:
            # fine when it carries this key's digest.
            if aws_error_code(exc) != "InvalidKeyPair.Duplicate":
                raise
            again = self._p._call(
                "ec2:DescribeKeyPairs",
                self._ec2.describe_key_pairs,
                Filters=[{"Name": "key-name", "Values": [name]}],
            )
            if not any(
                tr.tags_of(p).get(tr.KEY_HASH_TAG) == digest for p in again.get("KeyPairs", [])
            ):
                raise

    def _revoke(self, group: Mapping[str, Any], rules: set[tr.Rule]) -> None:
        self._p._call(
            "ec2:RevokeSecurityGroupIngress",
            self._ec2.revoke_security_group_ingress,
            GroupId=group["GroupId"],
            IpPermissions=tr.permissions(rules),
        )

    def _describe_group(self, group_id: str) -> Mapping[str, Any]:
        answer = self._p._call(
            "ec2:DescribeSecurityGroups", self._ec2.describe_security_groups, GroupIds=[group_id]
        )
        groups = answer.get("SecurityGroups") or []
        if not groups:
            raise NotFound(f"security group {group_id} is gone", provider="aws")
        return dict(groups[0])

    def delete(self, workload: str, *, patience: float | None = None) -> None:
        """Delete the workload's security group(s) and key pair.

        When listings showed live instances of the workload, those they used
        are deleted by id and name, with no look-up (one request for a
        workload without a key). Otherwise every group and key pair tagged
        with the workload is looked up and deleted. A group still in use
        (DependencyViolation) is retried for ``patience`` seconds (the
        provider's ``timeout`` when None), then the error raised; one already
        gone is fine. Forgets what was seen of the workload.
        """
        deadline = time.monotonic() + (self._p.timeout if patience is None else patience)
        seen = self.forget(workload)
        if seen.groups:
            for group_id in sorted(seen.groups):
                self.delete_group(group_id, deadline)
            for name in sorted(seen.key_pairs):
                self.delete_key_pair(name)
            return
        owner = [{"Name": f"tag:{WORKLOAD_TAG}", "Values": [workload]}]
        groups = self._p._call(
            "ec2:DescribeSecurityGroups", self._ec2.describe_security_groups, Filters=owner
        ).get("SecurityGroups", [])
        for group in groups:
            self.delete_group(str(group["GroupId"]), deadline)
        pairs = self._p._call("ec2:DescribeKeyPairs", self._ec2.describe_key_pairs, Filters=owner)
        for pair in pairs.get("KeyPairs", []):
            self.delete_key_pair(str(pair["KeyName"]))

    def delete_key_pair(self, name: str) -> None:
        """Delete a key pair by name; gone already is fine."""
        try:
            self._p._call("ec2:DeleteKeyPair", self._ec2.delete_key_pair, KeyName=name)
        except NotFound:
            return

    def _drop_unused_key_pair(self, workload: str) -> None:
        # The spec no longer has a key but its instances were launched with the
        # workload's pair: the pair goes (instances keep the key they booted with).
        seen = self.seen(workload)
        for name in sorted(seen.key_pairs):
            self.delete_key_pair(name)
        if seen.key_pairs:
            with self._seen_lock:
                current = self._seen.get(workload, seen)
                self._seen[workload] = Seen(current.groups, frozenset(), current.live)

    def delete_group(self, group_id: str, deadline: float) -> None:
        """Delete a security group; gone already is fine. While it is still in
        use (DependencyViolation) it is tried again until ``deadline``."""
        # Network interfaces of terminated instances linger for a while, and
        # the group cannot go before they do.
        while True:
            try:
                self._p._call(
                    "ec2:DeleteSecurityGroup", self._ec2.delete_security_group, GroupId=group_id
                )
                return
            except NotFound:
                return
            except ProviderError as exc:
                if aws_error_code(exc) != "DependencyViolation" or time.monotonic() >= deadline:
                    raise
            time.sleep(self._p.poll_interval)
