"""An HTTP fake of the Kubernetes API server (core/v1) for the real client.

Serves namespaces, pods (create, get, list, watch, delete with a grace
period and finalizers, deletecollection, log), resource quotas (a ``pods``
count enforced at admission), RuntimeClasses (node.k8s.io/v1, enforced at
admission), events and the node over plain HTTP on 127.0.0.1, with a
simulated scheduler and kubelet on one node. Errors are ``Status`` objects;
see :mod:`.shapes` for the sources of each shape.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from vmkit.testing.fakes._http import FakeServer, HttpError, Request, Response
from vmkit.testing.fakes.kubernetes.auth import authenticate, authorize
from vmkit.testing.fakes.kubernetes.kubelet import Cluster, SimConfig
from vmkit.testing.fakes.kubernetes.logs import read_log
from vmkit.testing.fakes.kubernetes.namespaces import (
    namespace_object,
    new_namespace,
    not_found,
    require_namespace,
)
from vmkit.testing.fakes.kubernetes.pods import QuantityError, default_pod, validate_pod
from vmkit.testing.fakes.kubernetes.podstatus import node_object
from vmkit.testing.fakes.kubernetes.quota import Quotas
from vmkit.testing.fakes.kubernetes.runtimeclasses import API_VERSION as NODE_V1
from vmkit.testing.fakes.kubernetes.runtimeclasses import RuntimeClasses
from vmkit.testing.fakes.kubernetes.shapes import (
    JSON,
    format_time,
    invalid_status_message,
    status_object,
)
from vmkit.testing.fakes.kubernetes.store import Store
from vmkit.testing.fakes.kubernetes.watch import Collection, WatchOptions, int_arg
from vmkit.testing.faults import FaultPlan

__all__ = ["KubernetesFake", "not_found"]

log = logging.getLogger(__name__)

_NS = r"/api/v1/namespaces/(?P<ns>[^/]+)"
_NAME = r"(?P<name>[^/]+)"
_PROTECTED = ("default", "kube-system", "kube-public")
_BUILTIN = ("default", "kube-system", "kube-public", "kube-node-lease")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apiserver names.SimpleNameGenerator


class KubernetesFake(FakeServer):
    """A stateful fake kube-apiserver with one simulated node.

    ``token``: when set, every request needs ``Authorization: Bearer <token>``
    (the scheme is case-insensitive, as in the API server's bearer token
    authenticator); otherwise it gets a 401 Unauthorized Status, or with
    ``anonymous=True`` a 403 as RBAC answers ``system:anonymous``.
    ``history``: how many changes per resource are kept for watch
    resumption (older resourceVersions get 410 Expired). ``watch_timeout``:
    the length of a watch that sends no timeoutSeconds. Every other keyword
    is a :class:`SimConfig` field (``start_delay=``, ``node_gpu=``, ...).
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        anonymous: bool = False,
        faults: FaultPlan | None = None,
        port: int = 0,
        history: int = 1000,
        watch_timeout: float = 1800.0,
        bookmark_interval: float = 60.0,
        **sim: Any,
    ) -> None:
        super().__init__(faults=faults, port=port)
        self.token = token
        self.anonymous = anonymous
        self.cond = threading.Condition(self.lock)
        self.store = Store(self.cond, window=history)
        self.cluster = Cluster(self.store, SimConfig(**sim))
        self.watch_options = WatchOptions(watch_timeout, bookmark_interval)
        #: requests served by Kubernetes verb and resource, e.g. "watch pods"
        self.verbs: Counter[str] = Counter()
        self.quotas = Quotas(self.store, self._count_verb)
        self.runtime_classes = RuntimeClasses(self.store, self._count_verb)
        #: (verb, API group, resource) the authenticated user may not do
        self.denied: set[tuple[str, str, str]] = set()
        #: watches currently streaming
        self.open_watches = 0
        self._stopping = False
        self._timer: threading.Thread | None = None
        at = time.time()
        with self.lock:
            for name in _BUILTIN:
                self.store.put("namespaces", namespace_object(name, at))
            self.store.put("nodes", node_object(self.cluster.config, at))
        self._routes_v1()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> KubernetesFake:
        """Serve, and run the timer that applies due transitions (so watchers
        are woken); both stop with :meth:`stop`."""
        self._stopping = False
        super().start()
        self._timer = threading.Thread(target=self._tick, name="KubernetesFake-timer", daemon=True)
        self._timer.start()
        return self

    def stop(self) -> None:
        """End open watches and log streams, stop the timer and the server."""
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
        if self._timer is not None:
            self._timer.join(timeout=5)
            self._timer = None
        super().stop()

    def __enter__(self) -> KubernetesFake:
        return self.start()

    def _stopped(self) -> bool:
        return self._stopping

    def _tick(self) -> None:
        with self.cond:
            while not self._stopping:
                self._advance()
                due = self.cluster.next_due()
                wait = 0.5 if due is None else due - time.time()
                self.cond.wait(min(max(wait, 0.001), 0.5))

    def _advance(self) -> None:
        now = time.time()
        self.cluster.advance(now)
        self.quotas.refresh(now)
        for ns in self.store.items("namespaces"):
            name = ns["metadata"]["name"]
            if ns["status"].get("phase") == "Terminating" and not self.store.items("pods", name):
                for event in self.store.items("events", name):
                    self.store.remove("events", name, event["metadata"]["name"])
                self.store.remove("namespaces", "", name)

    # ------------------------------------------------------- inspection API

    def pods(self, namespace: str | None = None) -> list[JSON]:
        """Every pod (of ``namespace``), as stored right now."""
        with self.lock:
            self._advance()
            return self.store.items("pods", namespace)

    def pod(self, namespace: str, name: str) -> JSON | None:
        with self.lock:
            self._advance()
            return self.store.get("pods", namespace, name)

    def events(self, namespace: str | None = None, involved: str | None = None) -> list[JSON]:
        """Events (of ``namespace``; about the object named ``involved``)."""
        with self.lock:
            self._advance()
            return [
                e
                for e in self.store.items("events", namespace)
                if involved is None or e["involvedObject"]["name"] == involved
            ]

    def namespaces(self) -> list[str]:
        with self.lock:
            self._advance()
            return [ns["metadata"]["name"] for ns in self.store.items("namespaces")]

    @property
    def revision(self) -> int:
        """The cluster's current resourceVersion (etcd revision)."""
        return self.store.revision

    def verb_count(self, verb: str, resource: str = "pods") -> int:
        """Requests served for a verb (get, list, watch, create, delete,
        deletecollection) on a resource ("pods", "pods/log", "events"...)."""
        return self.verbs[f"{verb} {resource}"]

    def watch_count(self, resource: str = "pods") -> int:
        """How many watch requests on ``resource`` were served."""
        return self.verb_count("watch", resource)

    def fail_image(self, pattern: str) -> None:
        """Pods started from now on whose image matches the glob ``pattern``
        (as written, or fully qualified) fail to pull: ErrImagePull, then
        ImagePullBackOff, and stay Pending."""
        with self.lock:
            self.cluster.fail_patterns.append(pattern)

    def crash_image(self, pattern: str) -> None:
        """Containers started from now on from a matching image exit with
        code 1 after starting: CrashLoopBackOff with a growing restartCount
        (phase Failed under restartPolicy Never)."""
        with self.lock:
            self.cluster.crash_patterns.append(pattern)

    def hold_starts(self) -> None:
        """Pods created from now on stay Pending, their image still pulling
        (container waiting in ContainerCreating), until :meth:`release_starts`:
        a large image or a slow registry."""
        with self.lock:
            self.cluster.holding = True

    def release_starts(self) -> None:
        """Let held pods, and new ones, start."""
        with self.cond:
            self.cluster.release(time.time())
            self.cond.notify_all()

    def set_finalizers(self, namespace: str, name: str, finalizers: list[str]) -> JSON | None:
        """Replace a pod's ``metadata.finalizers``, as the controller owning a
        finalizer does; see :meth:`Cluster.set_finalizers`. A pod with
        finalizers stays after a DELETE, marked with ``deletionTimestamp``,
        until the last one is removed. Returns the pod, None once it is gone."""
        with self.cond:
            self._advance()
            return self.cluster.set_finalizers(namespace, name, finalizers)

    def append_log(self, namespace: str, pod: str, text: str, container: str | None = None) -> None:
        """Write ``text`` to the log of a started container (the first one
        when ``container`` is None); KeyError if the pod is not on the node."""
        with self.cond:
            self.cluster.append_log(namespace, pod, text, container, time.time())

    def add_runtime_class(
        self,
        name: str,
        handler: str,
        *,
        overhead: dict[str, str] | None = None,
        scheduling: dict[str, Any] | None = None,
    ) -> JSON:
        """Create (or replace) a RuntimeClass, as installing gVisor or Kata
        does; ``overhead`` is its ``podFixed`` (e.g. ``{"memory": "160Mi"}``).
        Pods naming a class that does not exist are refused at admission."""
        with self.cond:
            return self.runtime_classes.add(name, handler, overhead=overhead, scheduling=scheduling)

    def forbid(self, verb: str, resource: str, group: str = "") -> None:
        """Take a permission away from the authenticated user, as an RBAC role
        without that rule: e.g. ``forbid("get", "runtimeclasses",
        "node.k8s.io")``. Such requests get the authorizer's 403 Forbidden."""
        with self.lock:
            self.denied.add((verb, group, resource))

    def compact(self, resource: str | None = None) -> None:
        """Forget the change history (all resources when None): watches and
        exact lists from an older resourceVersion get 410 Expired."""
        with self.lock:
            self.store.compact(resource)

    def kubeconfig(self, namespace: str = "default") -> JSON:
        """A kubeconfig for ``kubernetes.config.new_client_from_config_dict``."""
        user: JSON = {"token": self.token} if self.token else {}
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "vmkit-fake", "cluster": {"server": self.url}}],
            "users": [{"name": "vmkit-fake", "user": user}],
            "contexts": [
                {
                    "name": "vmkit-fake",
                    "context": {
                        "cluster": "vmkit-fake",
                        "user": "vmkit-fake",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "vmkit-fake",
        }

    # ------------------------------------------------------------- errors

    def error_response(self, error: HttpError) -> Response:
        """Every error as a ``Status`` object (kind Status, status Failure)."""
        code, message, reason = error.status, error.message, error.reason
        details = error.extra.get("details")
        headers: dict[str, str] = {}
        if reason is None:
            if code == 404:
                message, details = "the server could not find the requested resource", {}
            elif code == 405:
                message, details = (
                    "the server does not allow this method on the requested resource",
                    {},
                )
            elif code == 429:
                # API Priority and Fairness: a Retry-After header and its mirror in details.
                message = "Too many requests, please try again later."
                details = {"retryAfterSeconds": 1}
                headers["Retry-After"] = "1"
            elif code == 500:
                details = {"causes": [{"message": message}]}
                message = f"Internal error occurred: {message}"
            elif code == 503:
                message = "the server is currently unable to handle the request"
        return Response(code, status_object(code, message, reason, details), headers)

    def authorize(self, request: Request) -> None:
        authorize(request, authenticate(request, self.token, self.anonymous), self.denied)

    # ------------------------------------------------------------- routes

    def _locked(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def serve(request: Request) -> Response:
            with self.lock:
                try:
                    self._advance()
                    return handler(request)
                except HttpError:
                    raise
                except Exception as exc:
                    # The API server turns a handler panic into a 500 Status too.
                    log.exception(
                        "the Kubernetes fake failed on %s %s", request.method, request.path
                    )
                    raise HttpError(500, f"{type(exc).__name__}: {exc}") from exc

        return serve

    def _routes_v1(self) -> None:
        table: list[tuple[str, str, str, Callable[[Request], Response]]] = [
            ("GET", r"/version", "version", self._version),
            ("GET", r"/api", "api", self._api_versions),
            (
                "GET",
                r"/api/v1/namespaces",
                "namespaces",
                self._collection("namespaces", "Namespace"),
            ),
            ("POST", r"/api/v1/namespaces", "namespaces", self._create_namespace),
            ("GET", rf"/api/v1/namespaces/{_NAME}", "namespace", self._get("namespaces")),
            ("DELETE", rf"/api/v1/namespaces/{_NAME}", "namespace", self._delete_namespace),
            ("GET", r"/api/v1/nodes", "nodes", self._collection("nodes", "Node")),
            ("GET", rf"/api/v1/nodes/{_NAME}", "node", self._get("nodes")),
            ("GET", r"/api/v1/pods", "pods", self._collection("pods", "Pod")),
            ("GET", rf"{_NS}/pods", "pods", self._collection("pods", "Pod")),
            ("POST", rf"{_NS}/pods", "pods", self._create_pod),
            ("DELETE", rf"{_NS}/pods", "pods", self._delete_pods),
            ("GET", rf"{_NS}/pods/{_NAME}", "pod", self._get("pods")),
            ("DELETE", rf"{_NS}/pods/{_NAME}", "pod", self._delete_pod),
            ("GET", rf"{_NS}/pods/{_NAME}/log", "pods/log", self._pod_log),
            (
                "GET",
                r"/api/v1/resourcequotas",
                "resourcequotas",
                self._collection("resourcequotas", "ResourceQuota"),
            ),
            (
                "GET",
                rf"{_NS}/resourcequotas",
                "resourcequotas",
                self._collection("resourcequotas", "ResourceQuota"),
            ),
            *self.quotas.routes(_NS, _NAME),
            *self.runtime_classes.routes(
                _NAME, self._collection("runtimeclasses", "RuntimeClass", NODE_V1)
            ),
            ("GET", r"/api/v1/events", "events", self._collection("events", "Event")),
            ("GET", rf"{_NS}/events", "events", self._collection("events", "Event")),
            ("GET", rf"{_NS}/events/{_NAME}", "event", self._get("events")),
        ]
        for method, pattern, name, handler in table:
            self.route(method, pattern, name, self._locked(handler))

    def _version(self, request: Request) -> Response:
        # VersionInfo: every field is required by kubernetes/client/models/version_info.py.
        return Response(
            200,
            {
                "major": "1",
                "minor": "33",
                "gitVersion": "v1.33.0",
                "gitCommit": "60a317eadfcb839692a68eab88b2096f4d708f4f",
                "gitTreeState": "clean",
                "buildDate": "2025-04-23T13:07:04Z",
                "goVersion": "go1.24.2",
                "compiler": "gc",
                "platform": "linux/amd64",
            },
        )

    def _api_versions(self, request: Request) -> Response:
        return Response(
            200,
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": self.url}
                ],
            },
        )

    def _collection(
        self, resource: str, kind: str, api_version: str = "v1"
    ) -> Callable[[Request], Response]:
        def serve(request: Request) -> Response:
            query = Collection(
                request, resource, kind, request.params.get("ns"), api_version=api_version
            )
            if not query.is_watch:
                self.verbs[f"list {resource}"] += 1
                return Response(200, query.list_body(self.store))
            self.verbs[f"watch {resource}"] += 1
            stream = query.watch(
                self.store, self.cond, self.watch_options, self._stopped, self._opened
            )
            return Response(200, stream=stream)

        return serve

    def _count_verb(self, key: str) -> None:
        self.verbs[key] += 1

    def _opened(self, delta: int) -> None:
        with self.lock:
            self.open_watches += delta

    def _get(self, resource: str) -> Callable[[Request], Response]:
        def serve(request: Request) -> Response:
            self.verbs[f"get {resource}"] += 1
            name = request.params["name"]
            obj = self.store.get(resource, request.params.get("ns", ""), name)
            if obj is None:
                raise not_found(resource, name)
            return Response(200, obj)

        return serve

    # ---------------------------------------------------------------- pods

    def _create_pod(self, request: Request) -> Response:
        self.verbs["create pods"] += 1
        namespace = request.params["ns"]
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise HttpError(400, "the body of the request was in an unknown format")
        if body.get("kind") not in (None, "Pod"):
            raise HttpError(400, f"the kind of the body ({body['kind']}) is not Pod")
        meta = body.setdefault("metadata", {})
        if meta.get("namespace") not in (None, "", namespace):
            raise HttpError(
                400,
                "the namespace of the provided object does not match the namespace sent "
                "on the request",
            )
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(_NAME_CHARS[b % len(_NAME_CHARS)] for b in uuid.uuid4().bytes[:5])
            meta["name"] = meta["generateName"] + suffix
        # Mutating admission (RuntimeClass) runs in the create handler before
        # the registry's validation (k8s.io/apiserver/pkg/endpoints/handlers/create.go).
        self.runtime_classes.admit_pod(body)
        require_namespace(self.store, namespace, "pods", meta.get("name", ""))
        try:
            errors = validate_pod(body)
        except QuantityError as exc:
            raise HttpError(400, f'Pod in version "v1" cannot be handled as a Pod: {exc}') from exc
        name = meta.get("name", "")
        if errors:
            raise HttpError(
                422,
                invalid_status_message("Pod", name, errors),
                reason="Invalid",
                details={"name": name, "kind": "Pod", "causes": [e.cause() for e in errors]},
            )
        now = time.time()
        # Validating admission (ResourceQuota among it) runs inside the
        # registry's Create before the storage write that answers AlreadyExists
        # (k8s.io/apiserver/pkg/registry/generic/registry/store.go Create:
        # createValidation, then e.Storage.Create), so a retried create meets
        # a full quota before it meets its own pod.
        self.quotas.admit_pod(namespace, name, now)
        if self.store.get("pods", namespace, name) is not None:
            raise HttpError(
                409,
                f'pods "{name}" already exists',
                reason="AlreadyExists",
                details={"name": name, "kind": "pods"},
            )
        pod = default_pod(body)
        meta = pod["metadata"]
        for server_owned in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(server_owned, None)
        meta.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=format_time(now))
        if request.arg("dryRun") == "All":
            return Response(201, pod)
        return Response(201, self.cluster.admit(pod, now))

    def _grace(self, request: Request) -> int | None:
        value = int_arg(request, "gracePeriodSeconds")
        body = request.json() if request.body else None
        if value is None and isinstance(body, dict) and body.get("gracePeriodSeconds") is not None:
            value = int(body["gracePeriodSeconds"])
        return value

    def _delete_pod(self, request: Request) -> Response:
        self.verbs["delete pods"] += 1
        namespace, name = request.params["ns"], request.params["name"]
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            raise not_found("pods", name)
        body = request.json() if request.body else None
        preconditions = (body.get("preconditions") if isinstance(body, dict) else None) or {}
        for field, have in (
            ("uid", pod["metadata"]["uid"]),
            ("resourceVersion", pod["metadata"]["resourceVersion"]),
        ):
            want = preconditions.get(field)
            if want is not None and want != have:
                label = "UID" if field == "uid" else "ResourceVersion"
                raise HttpError(
                    409,
                    f"Precondition failed: {label} in precondition: {want}, {label} in object "
                    f"meta: {have}",
                    reason="Conflict",
                    details={"name": name, "kind": "pods"},
                )
        if request.arg("dryRun") == "All":
            return Response(200, pod)
        result = self.cluster.delete(namespace, name, self._grace(request), time.time())
        return Response(200, result)

    def _delete_pods(self, request: Request) -> Response:
        self.verbs["deletecollection pods"] += 1
        namespace = request.params["ns"]
        query = Collection(request, "pods", "Pod", namespace)
        grace = self._grace(request)
        deleted = []
        for pod in self.store.items("pods", namespace):
            if query.visible(pod):
                result = self.cluster.delete(namespace, pod["metadata"]["name"], grace, time.time())
                if result is not None:
                    result.pop("apiVersion", None)
                    result.pop("kind", None)
                    deleted.append(result)
        # The API server answers a deletecollection with the list of what it deleted.
        return Response(
            200,
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.store.revision)},
                "items": deleted,
            },
        )

    def _pod_log(self, request: Request) -> Response:
        self.verbs["get pods/log"] += 1
        namespace, name = request.params["ns"], request.params["name"]
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            raise not_found("pods", name)
        return read_log(request, pod, self.cluster, self.cond, self._stopped)

    # ----------------------------------------------------------- namespaces

    def _create_namespace(self, request: Request) -> Response:
        self.verbs["create namespaces"] += 1
        ns = new_namespace(self.store, request.json(), time.time())
        return Response(201, self.store.put("namespaces", ns))

    def _delete_namespace(self, request: Request) -> Response:
        self.verbs["delete namespaces"] += 1
        name = request.params["name"]
        ns = self.store.get("namespaces", "", name)
        if ns is None:
            raise not_found("namespaces", name)
        if name in _PROTECTED:
            raise HttpError(
                403,
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                reason="Forbidden",
                details={"name": name, "kind": "namespaces"},
            )
        if ns["status"].get("phase") != "Terminating":
            now = time.time()
            ns["metadata"]["deletionTimestamp"] = format_time(now)
            ns["status"]["phase"] = "Terminating"
            ns = self.store.put("namespaces", ns)
            # The namespace controller deletes the content, then the namespace.
            for pod in self.store.items("pods", name):
                self.cluster.delete(name, pod["metadata"]["name"], None, now)
            self._advance()
        return Response(200, ns)
