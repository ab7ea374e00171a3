"""The Kubernetes backend: workloads as Pods, found again by their labels.

See :class:`vmkit.provider.Provider` for the guarantees. What is specific to
Kubernetes is documented on :class:`KubernetesProvider`.
"""

from __future__ import annotations

import builtins
import copy
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from kubernetes import client

from vmkit._settle import Tracker
from vmkit.errors import (
    ConfigError,
    DeployTimeout,
    NotFound,
    ProviderError,
    QuotaExceeded,
    Unsupported,
)
from vmkit.machine import Machine, MachineState, Orphan
from vmkit.provider import (
    SPEC_TAG,
    WORKLOAD_TAG,
    CreateRequest,
    Plan,
    Progress,
    Provider,
    converge,
)
from vmkit.providers.kubernetes import runtimeclass as rc
from vmkit.providers.kubernetes import translate as tr
from vmkit.providers.kubernetes.connection import (
    Kubeconfig,
    credentials_problem,
    open_connection,
)
from vmkit.providers.kubernetes.errors import KubernetesErrors, api_status, status_body
from vmkit.providers.kubernetes.watching import follow
from vmkit.spec import Workload

__all__ = ["CREATE_WORKERS", "KubernetesProvider"]

log = logging.getLogger(__name__)

#: Pods created (or deleted) at once by one deploy.
CREATE_WORKERS = 16
#: Items per page of a list.
PAGE_SIZE = 500
#: Connect and read timeouts of every request but watches and log reads.
REQUEST_TIMEOUT = (10.0, 60.0)


def _json(response: Any) -> Any:
    """The JSON body of a response read with ``_preload_content=False``."""
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()


class KubernetesProvider(Provider):
    """Kubernetes. ``vmkit.connect("kubernetes", context="prod", namespace="web")``.

    Options: ``namespace`` (default: the context's, else ``default``),
    ``context`` and ``kubeconfig`` (a path, several joined with ``:``, or a
    dict of a parsed kubeconfig; default ``$KUBECONFIG`` then
    ``~/.kube/config``), or ``host`` and ``token`` for an explicit API server
    (a ``token`` alone overrides the kubeconfig user's), ``verify_ssl`` and
    ``ca_cert``, ``grace_period`` (seconds a deleted pod gets to stop, 30 as
    kubectl), ``runtime_classes`` (the RuntimeClass of each isolation level
    on this cluster, e.g. ``{"vm": "kata-qemu"}``; a workload's own
    ``options.kubernetes.runtime_classes`` win), and the shared
    ``retry_attempts``, ``retry_timeout``, ``poll_interval``, ``timeout``.
    Without host or kubeconfig the in-cluster service account is used. No
    API call is made on connect; a bad ``runtime_classes`` is a ConfigError
    naming its key.

    What is specific to Kubernetes:

    * Each replica is one Pod ``<workload>-<replica>``, created by name (so a
      create is idempotent by itself). A plan holds one ``k8s:CreatePod``
      request per replica whose body is the Pod exactly as sent; a deploy
      sends them concurrently (``CREATE_WORKERS``). A create answered 409
      AlreadyExists (e.g. a retry after a lost response) is a success when
      the existing pod carries the same spec hash, and a replacement when it
      does not (delete, wait until gone, create); a pod of that name vmkit
      does not own is never touched. A create refused by a ResourceQuota
      (403 "exceeded quota") is QuotaExceeded for that replica, unless the
      pod exists after all with the same spec hash (an earlier attempt of
      the same create made it), which is adopted.
    * A machine's ``id`` is the pod's ``uid``: a pod deleted and created again
      under the same name (reboot, replacement, re-deploy) is a new machine,
      as it is a new object to the API server. ``get`` lists the managed
      pods and matches the uid, since pods have no uid field selector.
    * ``isolation="sandbox"``/``"vm"`` sets the pods' ``runtimeClassName``
      (``gvisor``/``kata`` unless mapped otherwise). A plan that creates pods
      reads that RuntimeClass first (one GET, read-only): a cluster without
      it fails the plan, and so the deploy, with Unsupported naming the
      class, the level and the fix, before any pod is made or replaced. Not
      allowed to read it (403): the pods are sent anyway and the API
      server's RuntimeClass admission refuses them if it is missing
      (Unsupported per replica). A kept pod under another class than the
      one now wanted (``runtime_classes`` changed) is replaced.
    * Waiting is one list and one watch on the workload's label selector. A
      pod that cannot start (ErrImagePull, ImagePullBackOff, InvalidImageName,
      CrashLoopBackOff, Unschedulable) fails the deploy at once, naming the
      pod and the reason from its status.
    * ``gc`` finds nothing, by design: vmkit makes nothing but pods, and a
      pod is a machine (see ``_orphans``).
    * ``reboot`` deletes the pod and creates it again from its own spec under
      the same name, so the Machine returned has a new id. ``stop`` and
      ``start`` raise Unsupported, and so do ``snapshot``, ``snapshots``,
      ``restore`` and ``delete_snapshot``, naming the VM providers that
      have them: a pod has no disk of its own to copy.
    * ``options["kubernetes"]``: ``runtime_classes``, ``node_selector``,
      ``service_account``, ``image_pull_secrets``, ``priority_class``.
    * ``user_data`` (cloud-init) is refused with Unsupported; ``os_image``,
      ``resources.disk``, ``spot`` and ``ssh_public_key`` are VM fields and
      are ignored.
    """

    name = "kubernetes"
    consistent_listing = True
    kind = "container"
    capabilities: ClassVar[frozenset[str]] = frozenset({"reboot"})
    errors = KubernetesErrors()

    def __init__(
        self,
        *,
        namespace: str | None = None,
        context: str | None = None,
        kubeconfig: Kubeconfig | None = None,
        host: str | None = None,
        token: str | None = None,
        verify_ssl: bool = True,
        ca_cert: str | None = None,
        grace_period: int = 30,
        runtime_classes: Mapping[str, str] | None = None,
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
        # Pods are created by name, each on its own: a plan's creates go out together.
        self.create_concurrency = CREATE_WORKERS
        if isinstance(grace_period, bool) or not isinstance(grace_period, int) or grace_period < 0:
            raise ConfigError(f"kubernetes: grace_period must be >= 0 seconds, got {grace_period}")
        self.grace_period = grace_period
        #: The RuntimeClass of "sandbox"/"vm" on this cluster, over the defaults.
        self.runtime_classes = tr.target_runtime_classes(runtime_classes)
        connection = open_connection(
            namespace=namespace,
            context=context,
            kubeconfig=kubeconfig,
            host=host,
            token=token,
            verify_ssl=verify_ssl,
            ca_cert=ca_cert,
            pool_size=CREATE_WORKERS,
        )
        self.namespace = connection.namespace
        self._location = connection.location
        self._core: Any = client.CoreV1Api(connection.api_client)
        self._node: Any = client.NodeV1Api(connection.api_client)

    @classmethod
    def credentials_status(cls, **config: Any) -> str | None:
        """None when credentials resolve for ``config``, else why not. No API
        call; a kubeconfig's exec plugin is not run."""
        return credentials_problem(
            context=config.get("context"),
            kubeconfig=config.get("kubeconfig"),
            host=config.get("host"),
            token=config.get("token"),
        )

    @property
    def location(self) -> str:
        """``<context>/<namespace>`` (or ``<host:port>/<namespace>``)."""
        return self._location

    @property
    def core_v1(self) -> Any:
        """The ``kubernetes.client.CoreV1Api``, for what vmkit does not model
        (calls made on it are not retried nor counted)."""
        return self._core

    # -------------------------------------------------------------- validation

    def _validate(self, workload: Workload) -> None:
        if workload.user_data is not None:
            raise Unsupported(
                "user_data is cloud-init for VMs; a pod runs only its container",
                provider=self.name,
                operation="validate",
            )
        tr.pod_manifest(workload, 0, self.namespace, self._options(workload))

    def _options(self, workload: Workload) -> tr.KubernetesOptions:
        return tr.parse_options(workload, self.runtime_classes)

    def _unsupported_reason(self, capability: str) -> str:
        """Unsupported operations name what to do instead."""
        if capability in ("snapshot", "restore"):
            return (
                f"kubernetes pods have no disk to {capability}; deploy the workload on a VM "
                "provider (aws, gcp, azure) to snapshot and restore it"
            )
        if capability in ("stop", "start"):
            return (
                f"a kubernetes pod cannot {capability}: delete it (the next deploy makes it "
                "again) or deploy with fewer replicas; VM providers (aws, gcp, azure) can stop "
                "and start machines"
            )
        return super()._unsupported_reason(capability)

    # ------------------------------------------------------------- API calls

    def list_pods(self, selector: str) -> tuple[builtins.list[dict[str, Any]], str]:
        """Every pod of the namespace matching ``selector`` (all pages of one
        consistent snapshot) and the list's resourceVersion."""
        while True:
            items: builtins.list[dict[str, Any]] = []
            token: str | None = None
            try:
                while True:
                    page_args: dict[str, Any] = {"label_selector": selector, "limit": PAGE_SIZE}
                    if token:
                        page_args["_continue"] = token
                    page = _json(
                        self._call(
                            "k8s:ListPods",
                            self._core.list_namespaced_pod,
                            self.namespace,
                            _preload_content=False,
                            _request_timeout=REQUEST_TIMEOUT,
                            **page_args,
                        )
                    )
                    items.extend(page.get("items") or [])
                    meta = page.get("metadata") or {}
                    token = meta.get("continue")
                    if not token:
                        return items, str(meta.get("resourceVersion") or "")
            except ProviderError as exc:
                # An expired continue token: "start a new list without the
                # continue parameter" (API Concepts, "Retrieving large results
                # sets in chunks").
                if token and api_status(exc) == 410:
                    continue
                raise

    def open_watch(
        self, selector: str, version: str, seconds: int, request_timeout: tuple[float, float]
    ) -> Any:
        """Open a watch of the selector's pods from ``version`` (an urllib3
        response streaming newline-delimited events; the caller closes it)."""
        return self._call(
            "k8s:WatchPods",
            self._core.list_namespaced_pod,
            self.namespace,
            label_selector=selector,
            watch=True,
            resource_version=version or None,
            allow_watch_bookmarks=True,
            timeout_seconds=seconds,
            _preload_content=False,
            _request_timeout=request_timeout,
        )

    def read_runtime_class(self, name: str) -> dict[str, Any]:
        """``GET /apis/node.k8s.io/v1/runtimeclasses/NAME`` (cluster-scoped);
        NotFound when the cluster has no such class."""
        found: dict[str, Any] = _json(
            self._call(
                rc.OPERATION,
                self._node.read_runtime_class,
                name,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
        )
        return found

    def _read_pod(self, name: str) -> dict[str, Any] | None:
        try:
            pod: dict[str, Any] = _json(
                self._call(
                    "k8s:ReadPod",
                    self._core.read_namespaced_pod,
                    name,
                    self.namespace,
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )
        except NotFound:
            return None
        return pod

    def _post_pod(self, body: Mapping[str, Any]) -> dict[str, Any]:
        pod: dict[str, Any] = _json(
            self._call(
                "k8s:CreatePod",
                self._core.create_namespaced_pod,
                self.namespace,
                copy.deepcopy(dict(body)),
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
        )
        return pod

    def _delete_pod(self, name: str, uid: str) -> None:
        """Delete exactly this pod (uid precondition); gone already is fine."""
        try:
            answer = self._call(
                "k8s:DeletePod",
                self._core.delete_namespaced_pod,
                name,
                self.namespace,
                grace_period_seconds=self.grace_period,
                body={"preconditions": {"uid": uid}},
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
            _json(answer)
        except NotFound:
            return
        except ProviderError as exc:
            # 409 Conflict on the precondition: the name now holds another
            # pod, so the one meant is already gone.
            if api_status(exc) != 409:
                raise

    # ----------------------------------------------------------------- listing

    def _list(self, workload: str | None) -> builtins.list[Machine]:
        pods, _ = self.list_pods(tr.workload_selector(workload))
        return [tr.to_machine(p, self._location) for p in pods]

    def _get(self, machine_id: str) -> Machine:
        try:
            uuid.UUID(machine_id)
        except ValueError:
            raise NotFound(
                f"no machine {machine_id}: a pod's id is its uid", provider=self.name
            ) from None
        for pod in self.list_pods(tr.workload_selector(None))[0]:
            if pod["metadata"].get("uid") == machine_id:
                return tr.to_machine(pod, self._location)
        raise NotFound(
            f"no machine {machine_id} managed by vmkit in namespace {self.namespace}",
            provider=self.name,
        )

    def _failure_reason(self, machine: Machine) -> str:
        return tr.failure_reason(machine.raw)

    # ---------------------------------------------------------------- planning

    def _plan(self, workload: Workload) -> Plan:
        """See Provider._plan; a kept pod under another RuntimeClass than the
        one wanted is replaced, and the wanted class is checked (one read)
        before any create or replace is planned."""
        wanted = tr.pod_runtime_class(
            tr.pod_manifest(workload, 0, self.namespace, self._options(workload))
        )
        actions = rc.replace_drifted(converge(workload, self._list(workload.name)), wanted)
        to_create = [a.replica for a in actions if a.kind in ("create", "replace")]
        if to_create and wanted is not None:
            rc.require_runtime_class(self, workload.isolation, wanted)
        requests = self._build_requests(workload, to_create) if to_create else []
        return Plan(self.name, workload, actions, tuple(requests))

    def _build_requests(
        self, workload: Workload, replicas: Sequence[int]
    ) -> builtins.list[CreateRequest]:
        options = self._options(workload)
        return [
            CreateRequest(
                "k8s:CreatePod",
                (replica,),
                tr.pod_manifest(workload, replica, self.namespace, options),
            )
            for replica in replicas
        ]

    # ------------------------------------------------------------ shared state

    def _ensure_shared(self, workload: Workload) -> None:
        """Nothing is shared between the pods of a workload."""

    def _delete_shared(self, workload: str) -> None:
        """Nothing is shared between the pods of a workload."""

    def _orphans(self, workload: str | None) -> builtins.list[Orphan]:
        """Always empty, by design: vmkit makes pods and nothing else on
        Kubernetes (no Service, Secret, ConfigMap or volume; a service
        account, pull secret or RuntimeClass is named by the user, never
        made), and a pod is the machine itself, which ``list`` shows and
        ``deploy``/``destroy`` handle whatever its phase. No call is made."""
        return []

    def _delete_orphans(self, orphans: Sequence[Orphan]) -> None:
        """Nothing to delete (see :meth:`_orphans`); refuses what it did not list."""
        if orphans:
            kinds = ", ".join(sorted({o.kind for o in orphans}))
            raise Unsupported(
                f"kubernetes makes no resource besides pods; cannot gc {kinds}",
                provider=self.name,
                operation="gc",
            )

    # ---------------------------------------------------------------- creating

    def _create(self, workload: Workload, request: CreateRequest) -> builtins.list[Machine]:
        return [self._create_pod(workload, request.body)]

    def _create_pod(self, workload: Workload, body: Mapping[str, Any]) -> Machine:
        """Create one pod; on 409 AlreadyExists adopt or replace it (see the class).

        A create refused by a full ResourceQuota adopts the pod when it
        exists after all: a retried create whose first answer was lost
        meets quota admission again, and its own pod now fills the quota.
        """
        name = str(body["metadata"]["name"])
        try:
            return tr.to_machine(self._post_pod(body), self._location)
        except QuotaExceeded:
            # Validating admission (ResourceQuota) runs before the storage
            # write that would answer AlreadyExists (k8s.io/apiserver
            # pkg/registry/generic/registry/store.go, Store.Create), so the
            # retry gets 403 "exceeded quota", not 409.
            mine = self._own_pod(workload, body)
            if mine is None:
                raise
            log.info("kubernetes: pod %s was made by an earlier attempt; adopting it", name)
            return mine
        except ProviderError as exc:
            if api_status(exc) != 409 or status_body(exc).get("reason") != "AlreadyExists":
                raise
            conflict = exc
        existing = self._read_pod(name)
        if existing is not None:
            labels = existing["metadata"].get("labels") or {}
            if labels.get(WORKLOAD_TAG) != workload.name:
                raise ProviderError(
                    f"pod {name} already exists in {self.namespace} and is not a replica of "
                    f"{workload.name} managed by vmkit; it is left alone",
                    provider=self.name,
                    operation="k8s:CreatePod",
                ) from conflict
            if _same_replica(existing, workload, body):
                return tr.to_machine(existing, self._location)
            uid = str(existing["metadata"]["uid"])
            log.info("kubernetes: replacing pod %s (another spec or terminating)", name)
            self._delete_pod(name, uid)
            self._wait_gone(workload.name, [uid], time.monotonic() + self.timeout)
        return tr.to_machine(self._post_pod(body), self._location)

    def _own_pod(self, workload: Workload, body: Mapping[str, Any]) -> Machine | None:
        """The pod of ``body``'s name when it is a live replica of ``workload``
        like ``body`` (made by an earlier attempt or a concurrent deploy), else None."""
        try:
            existing = self._read_pod(str(body["metadata"]["name"]))
        except ProviderError:
            return None
        if existing is None or not _same_replica(existing, workload, body):
            return None
        return tr.to_machine(existing, self._location)

    # ---------------------------------------------------------------- deleting

    def _delete(self, machines: Sequence[Machine]) -> None:
        if len(machines) <= 1:
            for machine in machines:
                self._delete_pod(machine.name, machine.id)
            return
        workers = min(CREATE_WORKERS, len(machines))
        with ThreadPoolExecutor(workers, thread_name_prefix="vmkit-k8s-delete") as pool:
            futures = [pool.submit(self._delete_pod, m.name, m.id) for m in machines]
        for future in futures:
            future.result()

    # --------------------------------------------------------------- lifecycle

    def _reboot(self, machine: Machine) -> Machine:
        """A pod cannot restart in place: it is deleted and created again from
        its own spec under the same name and labels, so the Machine returned
        has a new id (the new pod's uid)."""
        return self._recreate(machine)

    def _recreate(self, machine: Machine) -> Machine:
        body = tr.recreate_body(machine.raw)
        self._delete_pod(machine.name, machine.id)
        self._wait_gone(machine.workload, [machine.id], time.monotonic() + self.timeout)
        return tr.to_machine(self._post_pod(body), self._location)

    def _logs(self, machine: Machine) -> str:
        # Read raw: with _preload_content the client turns the text/plain body
        # into str(bytes) ("b'...'") in kubernetes 36.
        response = self._call(
            "k8s:ReadPodLog",
            self._core.read_namespaced_pod_log,
            machine.name,
            self.namespace,
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
        )
        try:
            return str(response.data.decode("utf-8", errors="replace"))
        finally:
            response.release_conn()

    # ----------------------------------------------------------------- waiting

    def _follow(
        self, workload: str, deadline: float, tracker: Tracker, progress: Progress | None
    ) -> None:
        """See Provider._follow: one list and one watch of the workload's pods
        instead of a listing per round; ``progress`` hears of state changes.

        The list is consistent (``consistent_listing``), so a pod waited on
        that is absent from it, or deleted later, has vanished.
        """
        cache: dict[str, tuple[str, Machine]] = {}
        reported: dict[str, MachineState] = {}

        def check(view: Mapping[str, dict[str, Any]]) -> bool | None:
            machines: builtins.list[Machine] = []
            for uid, pod in view.items():
                version = str(pod["metadata"].get("resourceVersion") or "")
                hit = cache.get(uid)
                if hit is None or hit[0] != version:
                    hit = (version, tr.to_machine(pod, self._location))
                    cache[uid] = hit
                machines.append(hit[1])
            done = tracker.observe(machines)
            current = tracker.outcome().machines
            states = {m.id: m.state for m in current}
            if progress is not None and states != reported:
                reported.clear()
                reported.update(states)
                progress(self._bound(current))
            if done or (tracker.fail_fast and tracker.failed):
                return True
            return None

        follow(self, workload, deadline, check)

    def _wait_gone(self, workload: str, ids: Sequence[str], deadline: float) -> None:
        """See Provider._wait_gone: one list and one watch until none of
        ``ids`` is in the workload's pods."""
        wanted = set(ids)
        if not wanted:
            return

        def check(view: Mapping[str, dict[str, Any]]) -> bool | None:
            return True if not wanted & set(view) else None

        done, view = follow(self, workload, deadline, check)
        if done is None:
            names = sorted(str(view[uid]["metadata"]["name"]) for uid in wanted & set(view))
            raise DeployTimeout(
                f"{workload}: still being deleted at the deadline: {', '.join(names)}",
                pending=names,
                provider=self.name,
            )


def _same_replica(pod: Mapping[str, Any], workload: Workload, body: Mapping[str, Any]) -> bool:
    """A pod of ``workload`` with its spec hash and the RuntimeClass of
    ``body`` (the create sent; any if it names none), not being deleted: adoptable."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    wanted = tr.pod_runtime_class(body)
    return (
        labels.get(WORKLOAD_TAG) == workload.name
        and labels.get(SPEC_TAG) == workload.spec_hash
        and wanted in (None, tr.pod_runtime_class(pod))
        and not meta.get("deletionTimestamp")
    )
