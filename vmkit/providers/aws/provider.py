"""The EC2 backend: workloads as EC2 instances, found again by their tags.

See :class:`vmkit.provider.Provider` for the guarantees. What is specific to
EC2 is documented on :class:`AwsProvider`.
"""

from __future__ import annotations

import builtins
import copy
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.config import Config

from vmkit._settle import GONE
from vmkit.catalog import fitting_types, resolve_instance_type
from vmkit.errors import AuthError, ConfigError, NotFound, ProviderError, QuotaExceeded, SpecError
from vmkit.machine import Machine, Orphan, Snapshot
from vmkit.provider import WORKLOAD_TAG, CreateRequest, PartialCreate, Provider
from vmkit.providers.aws import translate as tr
from vmkit.providers.aws.errors import AwsErrors, aws_error_code
from vmkit.providers.aws.images import Images
from vmkit.providers.aws.network import Network
from vmkit.providers.aws.orphans import delete_orphans, find_orphans
from vmkit.providers.aws.session import session as make_session
from vmkit.render import render_cloud_init
from vmkit.spec import Workload

__all__ = ["AwsProvider"]

log = logging.getLogger(__name__)

# RunInstances in a named subnet needs the id of a group the deploy creates,
# unknown to a plan: the body carries this marker, which _create swaps.
GROUP_ID_PENDING = "resolve:security-group/"
# CreateTags in flight when tagging one by one; the pool too (botocore's is 10).
TAG_WORKERS = 16
# Candidates per DescribeInstanceTypeOfferings filter (EC2 caps filter values).
OFFERING_CHUNK = 100
# The refusal after which EC2 launches part of a batch (MinCount below MaxCount),
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
CAPACITY_CODE = "InsufficientInstanceCapacity"
# Termination protection refuses TerminateInstances with this code
# (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_TerminateInstances.html).
PROTECTED_CODE = "OperationNotPermitted"
# "User data is limited to 16 KB" (before base64), RunInstances API reference:
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html
USER_DATA_LIMIT = 16 * 1024


class AwsProvider(Provider):
    """Amazon EC2. ``vmkit.connect("aws", region="eu-west-1")``.

    Options: ``region`` (required unless the profile or ``AWS_DEFAULT_REGION``
    sets one), ``profile``, ``endpoint_url`` (used for EC2 and SSM, e.g. a
    moto server or a VPC endpoint), explicit ``aws_access_key_id`` /
    ``aws_secret_access_key`` / ``aws_session_token``, and the shared
    ``retry_attempts``, ``retry_timeout``, ``poll_interval``, ``timeout``.
    Credentials otherwise come from boto3's standard chain. No API call is
    made on connect.

    What is specific to EC2:

    * Replicas of one deploy are launched by ONE ``RunInstances``
      (``MinCount == MaxCount``) whose ``ClientToken`` is a fresh uuid4 per
      deploy call and is resent unchanged on retries. It tags every instance
      and root volume with the workload's tags and the list of its replicas
      (``vmkit-replicas``, e.g. ``0-199``): EC2 numbers the instances of a
      launch by ``AmiLaunchIndex`` (in RunInstances and DescribeInstances
      answers alike), and the instance with index *i* is the list's *i*-th
      replica. No request per instance. A list longer than a tag value (256
      characters: scattered missing replicas) is cut into several launches.
    * Names are ``<workload>-<replica>``; the ``Name`` tag (EC2's console) is
      the workload's name on every instance, as a launch tags all alike.
    * A ``vmkit-replica`` tag wins over the launch list. Instances made by an
      earlier vmkit carry it, and so do those launched through an endpoint
      whose RunInstances answer lacks ``AmiLaunchIndex``: vmkit then tags
      each (``CreateTags``: ``vmkit-replica``, ``Name`` ``<workload>-<i>``),
      in the answer's order; an instance that cannot be tagged is terminated
      and its replica reported failed, the others stay.
    * When EC2 lacks the capacity for the whole batch
      (``InsufficientInstanceCapacity``), a second ``RunInstances`` with
      ``MinCount`` 1 launches what it has room for; the replicas left out
      fail with ``QuotaExceeded`` carrying EC2's reason, the others stay.
    * An instance under termination protection (``disableApiTermination``)
      makes ``destroy`` and ``delete`` fail naming it, once the others are
      terminated.
    * Each workload owns a security group ``vmkit-<workload>`` opening only the
      declared ports (and 22/tcp only with ``ssh_public_key``, imported as key
      pair ``vmkit-<workload>``); a deploy brings an existing group's rules back
      to exactly that set, and deletes the key pair once the spec has no key.
      ``destroy`` deletes the group and key pair its instances used (no
      look-up), else those tagged with the workload; ``gc`` finds any other
      (a group in a VPC the workload left, say).
    * ``options["aws"]``: ``instance_type`` (always wins), ``arch``
      (``"x86_64"`` or ``"arm64"``), ``subnet_id`` (else the default VPC),
      ``vpc_id`` (checked against the subnet's), ``ingress_cidrs`` (instead of
      anywhere).
    * ``isolation``: every level is met by a VM (recorded in ``vmkit-isolation``).
    * Snapshots are AMIs (``CreateImage``, ``NoReboot``), ids the AMI ids;
      restore is a root volume replacement task (see :mod:`.images`).
    """

    name = "aws"
    kind = "vm"
    errors = AwsErrors()

    def __init__(
        self,
        *,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        retry_attempts: int = 8,
        retry_timeout: float = 120.0,
        poll_interval: float = 5.0,
        timeout: float = 900.0,
    ) -> None:
        super().__init__(
            retry_attempts=retry_attempts,
            retry_timeout=retry_timeout,
            poll_interval=poll_interval,
            timeout=timeout,
        )
        session = make_session(
            profile=profile,
            region=region,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
        )
        if not session.region_name:
            raise ConfigError(
                "aws: region is required: connect('aws', region='us-east-1'), "
                "or set it in the profile or AWS_DEFAULT_REGION"
            )
        self._region: str = session.region_name
        # vmkit's retry.py is the one retry policy, so botocore must not retry
        # underneath it. In a client Config, "max_attempts" counts retries
        # (1 would mean two tries) while "total_max_attempts" counts tries,
        # first included (botocore/config.py, Config docstring).
        self._config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=TAG_WORKERS,
        )
        self._session = session
        self._endpoint_url = endpoint_url
        self._ec2: Any = session.client("ec2", config=self._config, endpoint_url=endpoint_url)
        # Only image resolution needs SSM: its client (~25 ms to build) is made then.
        self._ssm: Any = None
        self._ssm_lock = threading.Lock()
        self._network = Network(self)
        self._images = Images(self)

    @classmethod
    def credentials_status(cls, **config: Any) -> str | None:
        """None when boto3's chain finds credentials for ``config``, else why not.

        No AWS API call (an instance-role lookup may query the local metadata
        endpoint, as boto3 itself does).
        """
        try:
            session = make_session(
                profile=config.get("profile"),
                region=config.get("region"),
                aws_access_key_id=config.get("aws_access_key_id"),
                aws_secret_access_key=config.get("aws_secret_access_key"),
                aws_session_token=config.get("aws_session_token"),
            )
        except ConfigError as exc:
            return str(exc)
        if session.get_credentials() is None:
            return (
                "no AWS credentials found (environment variables, shared credentials "
                "file, profile or instance role)"
            )
        return None

    @property
    def location(self) -> str:
        """The region."""
        return self._region

    @property
    def ec2_client(self) -> Any:
        """The boto3 EC2 client, for what vmkit does not model (calls made on it
        are not retried nor counted)."""
        return self._ec2

    @property
    def ssm_client(self) -> Any:
        """The boto3 SSM client used for public image parameters (made on first use)."""
        with self._ssm_lock:
            if self._ssm is None:
                self._ssm = self._session.client(
                    "ssm", config=self._config, endpoint_url=self._endpoint_url
                )
            return self._ssm

    # -------------------------------------------------------------- validation

    def _validate(self, workload: Workload) -> None:
        options = tr.parse_options(workload)
        tr.image_reference(workload.os_image, options.arch)
        if options.instance_type is None:
            resolve_instance_type("aws", workload.resources, arch=options.arch, available=None)
        user_data = render_cloud_init(workload)
        if user_data is not None and len(user_data.encode()) > USER_DATA_LIMIT:
            raise SpecError(
                "user_data",
                f"the VM's user data comes to {len(user_data.encode())} bytes; "
                f"EC2 takes at most {USER_DATA_LIMIT}",
            )

    # ----------------------------------------------------------------- listing

    def _describe_instances(self, **params: Any) -> Iterator[dict[str, Any]]:
        # One call per page, each retried on its own. Not a boto3 waiter: they
        # read the first page only, and moto pages at 100 reservations.
        token: str | None = None
        while True:
            page_params = dict(params, NextToken=token) if token else params
            page = self._call("ec2:DescribeInstances", self._ec2.describe_instances, **page_params)
            for reservation in page.get("Reservations", []):
                yield from reservation.get("Instances", [])
            token = page.get("NextToken")
            if not token:
                return

    def _list(self, workload: str | None) -> builtins.list[Machine]:
        owner = (
            {"Name": f"tag:{WORKLOAD_TAG}", "Values": [workload]}
            if workload is not None
            else {"Name": "tag-key", "Values": [WORKLOAD_TAG]}
        )
        # Terminated instances are listed too (EC2 shows them for about an
        # hour): waiting must see a replica that died while starting, at once.
        # Provider.list and convergence leave them out.
        instances = list(self._describe_instances(Filters=[owner]))
        self._network.observe(instances, workload)
        return [tr.to_machine(i) for i in instances]

    def _failure_reason(self, machine: Machine) -> str:
        # StateReason says why an instance stopped or terminated, e.g.
        # "Server.InsufficientInstanceCapacity" (Instance, EC2 API reference).
        reason = machine.raw.get("StateReason") or {}
        return str(reason.get("Message") or reason.get("Code") or machine.state)

    def _get(self, machine_id: str) -> Machine:
        try:
            instances = list(self._describe_instances(InstanceIds=[machine_id]))
        except NotFound as exc:
            raise NotFound(f"no machine {machine_id}", provider=self.name) from exc
        managed = [i for i in instances if WORKLOAD_TAG in tr.tags_of(i)]
        if not managed:
            raise NotFound(f"no machine {machine_id} managed by vmkit", provider=self.name)
        return tr.to_machine(managed[0])

    # --------------------------------------------------------------- planning

    def _build_requests(
        self, workload: Workload, replicas: Sequence[int]
    ) -> builtins.list[CreateRequest]:
        options = tr.parse_options(workload)
        # The instance type does not depend on the image: both look-ups at once.
        with ThreadPoolExecutor(1, thread_name_prefix="vmkit-aws-plan") as pool:
            sized = (
                pool.submit(self._instance_type, workload, options.arch)
                if options.instance_type is None
                else None
            )
            image_id = self._image_id(workload, options.arch)
            root_device, root_gib = self._images.root_device(image_id)
            instance_type = options.instance_type or (sized.result() if sized else "")
        group = tr.security_group_name(workload.name)
        group_id: str | None = None
        vpc_id: str | None = None
        if options.subnet_id is not None:
            vpc_id = self._network.subnet_vpc(options)
            found = self._network.find_group(group, vpc_id)
            group_id = found["GroupId"] if found else GROUP_ID_PENDING + group
        context = {"security_group": group, "vpc_id": vpc_id}
        requests: builtins.list[CreateRequest] = []
        # One launch, unless the list of replicas outgrows a tag value.
        for batch in tr.launch_batches(replicas):
            body = tr.run_instances_body(
                workload,
                replicas=batch,
                image_id=image_id,
                instance_type=instance_type,
                root_device=root_device,
                root_gib=root_gib,
                client_token=str(uuid.uuid4()),
                user_data=render_cloud_init(workload),
                security_group=group,
                security_group_id=group_id,
                subnet_id=options.subnet_id,
                key_name=tr.key_pair_name(workload.name) if workload.ssh_public_key else None,
            )
            requests.append(CreateRequest("ec2:RunInstances", batch, body, context))
        return requests

    def _image_id(self, workload: Workload, arch: tr.Arch) -> str:
        kind, value = tr.image_reference(workload.os_image, arch)
        if kind == "ami":
            return value
        # Public parameters: https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-public-parameters-ami.html
        answer = self._call("ssm:GetParameter", self.ssm_client.get_parameter, Name=value)
        return str(answer["Parameter"]["Value"])

    def _instance_type(self, workload: Workload, arch: tr.Arch) -> str:
        candidates = [t.name for t in fitting_types("aws", workload.resources, arch=arch)]
        available: set[str] | None = None
        if candidates:
            try:
                available = self._offered(candidates)
            except AuthError:
                raise
            except ProviderError as exc:
                log.debug("aws: instance type offerings unavailable, using the catalog: %s", exc)
        chosen = resolve_instance_type("aws", workload.resources, arch=arch, available=available)
        return chosen.name

    def _offered(self, candidates: Sequence[str]) -> set[str]:
        """The candidates offered in the region. Candidates are cheapest first,
        so the first chunk with any offered type holds the cheapest one."""
        offered: set[str] = set()
        for start in range(0, len(candidates), OFFERING_CHUNK):
            chunk = list(candidates[start : start + OFFERING_CHUNK])
            token: str | None = None
            while True:
                params: dict[str, Any] = {
                    "LocationType": "region",
                    "Filters": [{"Name": "instance-type", "Values": chunk}],
                }
                if token:
                    params["NextToken"] = token
                page = self._call(
                    "ec2:DescribeInstanceTypeOfferings",
                    self._ec2.describe_instance_type_offerings,
                    **params,
                )
                offered.update(o["InstanceType"] for o in page.get("InstanceTypeOfferings", []))
                token = page.get("NextToken")
                if not token:
                    break
            if offered:
                return offered
        return offered

    # ------------------------------------------------------------ shared state

    def _ensure_shared(self, workload: Workload) -> None:
        self._network.ensure(workload)

    def _delete_shared(self, workload: str) -> None:
        self._network.delete(workload)

    # ---------------------------------------------------------------- creating

    def _create(self, workload: Workload, request: CreateRequest) -> builtins.list[Machine]:
        body = copy.deepcopy(dict(request.body))
        pending = [g for g in body.get("SecurityGroupIds", []) if g.startswith(GROUP_ID_PENDING)]
        if pending:
            name = str(request.context["security_group"])
            group = self._network.find_group(name, str(request.context["vpc_id"]))
            if group is None:
                raise ProviderError(
                    f"security group {name} is missing",
                    provider=self.name,
                    operation="ec2:RunInstances",
                )
            body["SecurityGroupIds"] = [group["GroupId"]]
        try:
            answer, shortfall = self._launch(body)
        except ProviderError:
            self._release_unused_shared(workload.name)
            raise
        instances = sorted(answer.get("Instances", []), key=lambda i: i.get("AmiLaunchIndex", 0))
        wanted = len(request.replicas)
        # The answer may not repeat the tags of the launch: they are known.
        launch_tags = tr.launch_tags(body)
        instances = [
            {**i, "Tags": tr.tag_list({**tr.tags_of(i), **launch_tags})} for i in instances
        ]
        try:
            if not 0 < len(instances) <= wanted:
                raise ProviderError(
                    f"RunInstances made {len(instances)} instances, {wanted} asked",
                    provider=self.name,
                    operation="ec2:RunInstances",
                )
            error: ProviderError | None = None
            if tr.launch_indexed(instances, wanted):
                machines = [tr.to_machine(i) for i in instances]
            else:
                machines, error = self._tag_all(workload, instances, request.replicas)
        except BaseException:
            # Instances without a replica would be orphans no listing finds by replica.
            self._terminate_quietly([str(i["InstanceId"]) for i in instances])
            raise
        if shortfall is not None:
            error = QuotaExceeded(
                f"{shortfall} (EC2 launched {len(instances)} of {wanted})",
                provider=self.name,
                operation="ec2:RunInstances",
            )
            error.__cause__ = shortfall.__cause__
        if error is None:
            return machines
        if not machines:
            self._release_unused_shared(workload.name)
            raise error
        raise PartialCreate(machines, error)

    def _launch(self, body: dict[str, Any]) -> tuple[dict[str, Any], QuotaExceeded | None]:
        """RunInstances for the whole batch; when EC2 lacks the capacity for
        all of it, again for what it has room for. Returns the answer and, in
        that case, EC2's refusal (why the others were not launched)."""
        try:
            return self._call("ec2:RunInstances", self._ec2.run_instances, **body), None
        except QuotaExceeded as exc:
            if aws_error_code(exc) != CAPACITY_CODE or body["MaxCount"] <= 1:
                raise
            shortfall = exc
        # "If you specify a maximum that is more instances than Amazon EC2 can
        # launch in the target Availability Zone, Amazon EC2 launches the
        # largest possible number of instances above MinCount" (RunInstances,
        # MinCount/MaxCount, EC2 API reference). Other parameters, so another
        # ClientToken: derived from the first, stable across retries.
        partial = dict(body, MinCount=1, ClientToken=tr.partial_token(str(body["ClientToken"])))
        try:
            answer = self._call("ec2:RunInstances", self._ec2.run_instances, **partial)
        except QuotaExceeded as exc:
            if aws_error_code(exc) != CAPACITY_CODE:
                raise
            raise shortfall from shortfall.__cause__
        log.info("aws: %s", shortfall)
        return answer, shortfall

    def _tag_all(
        self, workload: Workload, instances: Sequence[dict[str, Any]], replicas: Sequence[int]
    ) -> tuple[builtins.list[Machine], ProviderError | None]:
        """Tag each instance with its replica, in the answer's order (for an
        endpoint whose answer does not number the instances); the instances
        that could not be tagged are terminated. Returns the tagged machines
        and the first tagging error."""
        pairs = list(zip(instances, replicas, strict=False))

        def tag(pair: tuple[dict[str, Any], int]) -> Machine | ProviderError:
            try:
                return self._tag_replica(workload, *pair)
            except ProviderError as exc:
                return exc

        # Each instance needs its own tags, so one CreateTags per instance;
        # they are independent, so they go out together (boto3 clients are
        # thread-safe).
        with ThreadPoolExecutor(max_workers=min(TAG_WORKERS, len(pairs))) as pool:
            results = list(pool.map(tag, pairs))
        machines = [r for r in results if isinstance(r, Machine)]
        errors = [r for r in results if isinstance(r, ProviderError)]
        untagged = [
            str(instance["InstanceId"])
            for (instance, _), result in zip(pairs, results, strict=True)
            if isinstance(result, ProviderError)
        ]
        self._terminate_quietly(untagged)
        return machines, errors[0] if errors else None

    def _tag_replica(self, workload: Workload, instance: dict[str, Any], replica: int) -> Machine:
        per_instance = tr.replica_tags(workload.name, replica)
        self._call(
            "ec2:CreateTags",
            self._ec2.create_tags,
            Resources=[instance["InstanceId"]],
            Tags=per_instance,
        )
        tags = {**tr.tags_of(instance), **tr.tags_of({"Tags": per_instance})}
        return tr.to_machine({**instance, "Tags": tr.tag_list(tags)})

    def _release_unused_shared(self, workload: str) -> None:
        # A first deploy refused outright (quota, capacity...) would otherwise
        # leave the group and key pair it just made behind. Only when the
        # workload has no machine at all, and in one attempt: it is cleanup.
        try:
            if not [m for m in self._list(workload) if m.state not in GONE]:
                self._network.delete(workload, patience=0)
        except ProviderError as exc:
            log.warning("aws: could not clean up the shared resources of %s: %s", workload, exc)

    def _terminate_quietly(self, instance_ids: Sequence[str]) -> None:
        if not instance_ids:
            return
        try:
            self._call(
                "ec2:TerminateInstances",
                self._ec2.terminate_instances,
                InstanceIds=list(instance_ids),
            )
        except ProviderError as exc:
            log.warning("aws: could not clean up %s: %s", ", ".join(instance_ids), exc)

    # ---------------------------------------------------------------- deleting

    def _delete(self, machines: Sequence[Machine]) -> None:
        """Terminate ``machines``. One already gone is fine; one EC2 refuses to
        terminate (termination protection) makes it raise ProviderError naming
        that machine, once the others are terminated."""
        ids = [m.id for m in machines]
        try:
            self._call("ec2:TerminateInstances", self._ec2.terminate_instances, InstanceIds=ids)
            return
        except NotFound:
            pass  # one id already gone fails the whole call
        except ProviderError as exc:
            # A protected instance fails the call for every instance of its
            # zone (TerminateInstances, EC2 API reference).
            if aws_error_code(exc) != PROTECTED_CODE:
                raise
        refused: builtins.list[tuple[Machine, ProviderError]] = []
        for machine in machines:
            try:
                self._call(
                    "ec2:TerminateInstances",
                    self._ec2.terminate_instances,
                    InstanceIds=[machine.id],
                )
            except NotFound:
                continue
            except ProviderError as exc:
                if aws_error_code(exc) != PROTECTED_CODE:
                    raise
                refused.append((machine, exc))
        if refused:
            names = ", ".join(f"{m.name} ({m.id})" for m, _ in refused)
            raise ProviderError(
                f"EC2 refused to terminate {names}: termination protection is on "
                f"(disableApiTermination); {refused[0][1]}",
                provider=self.name,
                operation="ec2:TerminateInstances",
            ) from refused[0][1].__cause__

    # ------------------------------------------------------------ orphans

    def _orphans(self, workload: str | None) -> builtins.list[Orphan]:
        """See Provider.gc. On EC2: the workload's security group and key pair
        once no instance of it is left, EBS volumes it tagged that are
        ``available`` (attached to nothing) and were not made a moment ago,
        and instances with its tag but no replica (neither a ``vmkit-replica``
        tag nor a launch list covering their ``AmiLaunchIndex``: a deploy
        interrupted before it tagged them one by one), older than
        ``vmkit.plan.IN_FLIGHT``, with their volumes."""
        return find_orphans(self, workload)

    def _delete_orphans(self, found: Sequence[Orphan]) -> None:
        """Terminate the orphaned instances and wait until they are gone, then
        delete the volumes, security groups and key pairs. Idempotent."""
        delete_orphans(self, found)

    # --------------------------------------------------------------- lifecycle

    def _start(self, machine: Machine) -> None:
        self._call("ec2:StartInstances", self._ec2.start_instances, InstanceIds=[machine.id])

    def _stop(self, machine: Machine) -> None:
        self._call("ec2:StopInstances", self._ec2.stop_instances, InstanceIds=[machine.id])

    def _reboot(self, machine: Machine) -> None:
        self._call("ec2:RebootInstances", self._ec2.reboot_instances, InstanceIds=[machine.id])

    def _logs(self, machine: Machine) -> str:
        # botocore base64-decodes Output itself (botocore/handlers.py,
        # decode_console_output); it is absent until the instance wrote some.
        answer = self._call(
            "ec2:GetConsoleOutput", self._ec2.get_console_output, InstanceId=machine.id
        )
        return str(answer.get("Output") or "")

    # --------------------------------------------------------------- snapshots

    def _snapshot(self, machine: Machine, name: str) -> Snapshot:
        return self._images.snapshot(machine, name)

    def _snapshots(self, workload: str | None) -> builtins.list[Snapshot]:
        return self._images.snapshots(workload)

    def _delete_snapshot(self, snapshot_id: str) -> None:
        self._images.delete(snapshot_id)

    def _restore(self, machine: Machine, snapshot: Snapshot) -> None:
        self._images.restore(machine, snapshot)
