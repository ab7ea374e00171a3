"""The simulated scheduler and kubelet of the fake's single node.

A pod's life is a set of timers (schedule, accept, start, pull back-off,
crash, restart, remove). :meth:`Cluster.advance` applies every timer that is
due, in time order, each as one status write (a MODIFIED watch event) stamped
with the time it was due, so what a client sees does not depend on when it
looks. The fake calls ``advance`` before serving each request and from a
light timer thread, so watchers are woken when a transition falls due.

Status shapes: see :mod:`.podstatus`. Event texts are those the kubelet and scheduler
record (pkg/kubelet/events/event.go, pkg/kubelet/images/image_manager.go,
pkg/scheduler/schedule_one.go).
"""

from __future__ import annotations

import fnmatch
import secrets
from dataclasses import dataclass, field
from decimal import Decimal

from vmkit.testing.fakes.kubernetes.events import EventRecorder
from vmkit.testing.fakes.kubernetes.pods import GPU, PodRequests, normalize_image, pod_requests
from vmkit.testing.fakes.kubernetes.podstatus import (
    current_status,
    image_id,
    pull_error,
    put_status,
    set_condition,
    waiting_status,
)
from vmkit.testing.fakes.kubernetes.shapes import JSON, format_time, parse_quantity
from vmkit.testing.fakes.kubernetes.store import Store

__all__ = ["Cluster", "SimConfig"]


@dataclass
class SimConfig:
    """Timings (seconds) and the node's size."""

    #: from creation to the scheduler's decision
    schedule_delay: float = 0.01
    #: from scheduling to Running; the kubelet accepts the pod half-way
    start_delay: float = 0.05
    #: seconds actually waited per second of a deletion grace period
    grace_scale: float = 0.001
    #: first back-off of an image pull or a crashed container; doubles, capped at 8x
    backoff: float = 0.05
    node_name: str = "vmkit-fake-node"
    node_ip: str = "10.0.0.10"
    node_cpu: str = "8"
    node_memory: str = "32Gi"
    node_gpu: int = 0
    node_pods: int = 110


@dataclass
class _Container:
    name: str
    image: str
    behavior: str = "run"  # run | pull-fail | crash
    restarts: int = 0
    #: log lines of each instance of the container, oldest instance first
    instances: list[list[tuple[float, str]]] = field(default_factory=list)
    container_id: str = ""
    started_at: float = 0.0


@dataclass
class _PodSim:
    uid: str
    namespace: str
    name: str
    containers: dict[str, _Container]
    timers: dict[str, float] = field(default_factory=dict)
    unschedulable: bool = False
    crashes: int = 0
    pull_started: float = 0.0
    #: created while starts were held: waits at the image pull for a release
    held: bool = False


class Cluster:
    """The node, its scheduler and kubelet. Callers hold the fake's lock."""

    def __init__(self, store: Store, config: SimConfig) -> None:
        self.store = store
        self.config = config
        self.events = EventRecorder(store)
        self.sims: dict[str, _PodSim] = {}
        self.fail_patterns: list[str] = []
        self.crash_patterns: list[str] = []
        #: pods created while True stay pulling their image until released
        self.holding = False
        self._pulled: set[str] = set()
        self._ips = 0
        self.allocatable = {
            "cpu": parse_quantity(config.node_cpu),
            "memory": parse_quantity(config.node_memory),
            GPU: Decimal(config.node_gpu),
            "pods": Decimal(config.node_pods),
        }

    # ------------------------------------------------------------- pods

    def admit(self, pod: JSON, at: float) -> JSON:
        """Store a validated, defaulted pod (ADDED) and start its life."""
        stored = self.store.put("pods", pod)
        meta = stored["metadata"]
        containers = {
            c["name"]: _Container(c["name"], c["image"]) for c in stored["spec"]["containers"]
        }
        sim = _PodSim(meta["uid"], meta["namespace"], meta["name"], containers)
        sim.held = self.holding
        sim.timers["schedule"] = at + self.config.schedule_delay
        self.sims[sim.uid] = sim
        return stored

    def delete(self, namespace: str, name: str, grace: int | None, at: float) -> JSON | None:
        """Delete a pod as the API server does: at once when ``grace`` is 0,
        the pod is not bound to a node, or it has finished; otherwise mark it
        Terminating (deletionTimestamp) and remove it when the grace period,
        scaled by ``grace_scale``, has passed. A pod with finalizers is only
        marked, and stays until they are removed (:meth:`set_finalizers`).
        Returns the pod (None if absent)."""
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            return None
        meta, spec = pod["metadata"], pod["spec"]
        if grace is None:
            grace = int(spec.get("terminationGracePeriodSeconds", 30))
        phase = pod["status"].get("phase")
        sim = self.sims.get(meta["uid"])
        if grace <= 0 or not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            if meta.get("finalizers"):
                return self._finalize_later(pod, at)
            return self._remove(namespace, name, meta["uid"])
        current = meta.get("deletionGracePeriodSeconds")
        if current is not None and current <= grace:
            return pod
        # pkg/registry/rest/delete.go: deletionTimestamp = now + grace; the
        # grace period can only be shortened by a later delete.
        meta["deletionTimestamp"] = format_time(at + grace)
        meta["deletionGracePeriodSeconds"] = grace
        if current is None:
            for cstatus in pod["status"].get("containerStatuses") or []:
                if "running" in cstatus.get("state", {}):
                    self.events.kubelet(
                        pod,
                        "Killing",
                        f"Stopping container {cstatus['name']}",
                        at,
                        self.config.node_name,
                        container=cstatus["name"],
                    )
        stored = self.store.put("pods", pod)
        if sim is not None:
            sim.timers = {"remove": at + grace * self.config.grace_scale}
        return stored

    def _finalize_later(self, pod: JSON, at: float) -> JSON:
        """A deletion that is due while finalizers remain: the object stays,
        marked with ``deletionTimestamp`` and a grace period of 0, until the
        last finalizer goes ("Finalizers",
        https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/).
        The kubelet is done with it: its status changes no more."""
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") == 0:
            return pod  # already due: a later delete changes nothing
        meta["deletionTimestamp"] = format_time(at)
        meta["deletionGracePeriodSeconds"] = 0
        sim = self.sims.get(meta["uid"])
        if sim is not None:
            sim.timers.clear()
        return self.store.put("pods", pod)

    def set_finalizers(self, namespace: str, name: str, finalizers: list[str]) -> JSON | None:
        """Replace a pod's ``metadata.finalizers`` (what the controller owning a
        finalizer does). Removing the last one from a pod whose deletion is
        due deletes it, as the registry's ShouldDeleteDuringUpdate says
        (k8s.io/apiserver/pkg/registry/generic/registry/store.go); adding one
        to a pod being deleted is refused, as ObjectMeta update validation
        does ("no new finalizers can be added if the object is being
        deleted"). Returns the pod, None when it is gone."""
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            return None
        meta = pod["metadata"]
        current = list(meta.get("finalizers") or [])
        if meta.get("deletionTimestamp") and set(finalizers) - set(current):
            raise ValueError("no new finalizers can be added if the object is being deleted")
        if finalizers:
            meta["finalizers"] = list(finalizers)
        else:
            meta.pop("finalizers", None)
        if (
            not finalizers
            and meta.get("deletionTimestamp")
            and not meta.get("deletionGracePeriodSeconds")
        ):
            self._remove(namespace, name, meta["uid"])
            return None
        return self.store.put("pods", pod)

    def _remove(self, namespace: str, name: str, uid: str) -> JSON | None:
        final = self.store.remove("pods", namespace, name)
        self.sims.pop(uid, None)
        # Capacity was freed: the scheduler retries the pods it could not place.
        for sim in self.sims.values():
            if sim.unschedulable:
                sim.timers["schedule"] = 0.0
        return final

    def sim_for(self, namespace: str, name: str) -> _PodSim | None:
        for sim in self.sims.values():
            if sim.namespace == namespace and sim.name == name:
                return sim
        return None

    def next_due(self) -> float | None:
        """When the earliest pending transition falls due (None: nothing pending)."""
        dues = [due for sim in self.sims.values() for due in sim.timers.values()]
        return min(dues) if dues else None

    def advance(self, now: float) -> None:
        """Apply every transition due at or before ``now``, oldest first."""
        while True:
            best: tuple[float, str, str] | None = None
            for uid, sim in self.sims.items():
                for step, due in sim.timers.items():
                    if due <= now and (best is None or due < best[0]):
                        best = (due, uid, step)
            if best is None:
                return
            due, uid, step = best
            sim = self.sims[uid]
            del sim.timers[step]
            pod = self.store.get("pods", sim.namespace, sim.name)
            if pod is None or pod["metadata"]["uid"] != uid:
                self.sims.pop(uid, None)
                continue
            # A due time of 0 means "as soon as possible" (a retry after capacity was freed).
            getattr(self, f"_step_{step}")(sim, pod, due if due > 0 else now)

    # ------------------------------------------------------------ steps

    def _step_remove(self, sim: _PodSim, pod: JSON, at: float) -> None:
        # The kubelet's final delete (grace period 0) once the containers stopped.
        if pod["metadata"].get("finalizers"):
            self._finalize_later(pod, at)
            return
        self._remove(sim.namespace, sim.name, sim.uid)

    def _step_schedule(self, sim: _PodSim, pod: JSON, at: float) -> None:
        short = self._insufficient(pod_requests(pod), exclude=sim.uid)
        if short:
            if sim.unschedulable:
                return
            sim.unschedulable = True
            # schedule_one.go FitError: "0/1 nodes are available: 1 Insufficient cpu."
            reasons = ", ".join(f"1 Insufficient {name}" for name in short)
            message = (
                f"0/1 nodes are available: {reasons}. preemption: 0/1 nodes are available: "
                "1 No preemption victims found for incoming pod."
            )
            set_condition(pod, "PodScheduled", "False", at, "Unschedulable", message)
            stored = self.store.put("pods", pod)
            self.events.scheduler(stored, "FailedScheduling", message, at, "Warning")
            return
        sim.unschedulable = False
        node = self.config.node_name
        pod["spec"]["nodeName"] = node
        set_condition(pod, "PodScheduled", "True", at)
        stored = self.store.put("pods", pod)
        meta = stored["metadata"]
        self.events.scheduler(
            stored,
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}",
            at,
            "Normal",
        )
        sim.timers["accept"] = at + self.config.start_delay / 2

    def _insufficient(self, want: PodRequests, exclude: str) -> list[str]:
        used = PodRequests()
        count = 0
        for other in self.store.items("pods"):
            if other["spec"].get("nodeName") and other["metadata"]["uid"] != exclude:
                used = used + pod_requests(other)
                count += 1
        short = []
        if used.cpu + want.cpu > self.allocatable["cpu"]:
            short.append("cpu")
        if used.memory + want.memory > self.allocatable["memory"]:
            short.append("memory")
        if want.gpu and used.gpu + want.gpu > self.allocatable[GPU]:
            short.append(GPU)
        if count + 1 > self.allocatable["pods"]:
            short.append("pods")
        return short

    def _step_accept(self, sim: _PodSim, pod: JSON, at: float) -> None:
        status = pod["status"]
        status["hostIP"] = self.config.node_ip
        status["hostIPs"] = [{"ip": self.config.node_ip}]
        status["startTime"] = format_time(at)
        set_condition(pod, "PodReadyToStartContainers", "False", at)
        set_condition(pod, "Initialized", "True", at)
        status["containerStatuses"] = [
            waiting_status(c.name, c.image, c.restarts, "ContainerCreating", None)
            for c in sim.containers.values()
        ]
        self._readiness(pod, sim, at)
        stored = self.store.put("pods", pod)
        sim.pull_started = at
        for c in sim.containers.values():
            if not self._present(stored, c):
                self.events.kubelet(
                    stored,
                    "Pulling",
                    f'Pulling image "{c.image}"',
                    at,
                    self.config.node_name,
                    container=c.name,
                )
        sim.timers["start"] = at + self.config.start_delay / 2

    def _present(self, pod: JSON, c: _Container) -> bool:
        spec = next(x for x in pod["spec"]["containers"] if x["name"] == c.name)
        return spec.get("imagePullPolicy") != "Always" and normalize_image(c.image) in self._pulled

    def release(self, at: float) -> None:
        """End :attr:`holding`; held pods finish pulling their image now."""
        self.holding = False
        for sim in self.sims.values():
            if not sim.held:
                continue
            sim.held = False
            pod = self.store.get("pods", sim.namespace, sim.name)
            # Only a pod stopped at the pull: accepted by the kubelet, no timer
            # left, not being deleted. The others meet the start step later.
            if (
                pod is not None
                and pod["status"].get("startTime")
                and not sim.timers
                and not pod["metadata"].get("deletionTimestamp")
            ):
                sim.timers["start"] = at

    def _step_start(self, sim: _PodSim, pod: JSON, at: float) -> None:
        if sim.held:
            # A pull that takes long (a large image, a slow registry): the pod
            # stays Pending, its container waiting in ContainerCreating. The
            # release puts the start timer back.
            sim.timers.pop("start", None)
            return
        status = pod["status"]
        self._ips += 1
        ip = f"10.244.{self._ips // 250}.{self._ips % 250 + 2}"
        status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
        set_condition(pod, "PodReadyToStartContainers", "True", at)
        for c in sim.containers.values():
            c.behavior = self._behavior(c.image)
        pending: list[tuple[str, str, str]] = []
        for c in sim.containers.values():
            if c.behavior == "pull-fail":
                message = pull_error(c.image)
                put_status(
                    pod, waiting_status(c.name, c.image, c.restarts, "ErrImagePull", message)
                )
                pending.append((c.name, "Failed", f'Failed to pull image "{c.image}": {message}'))
                pending.append((c.name, "Failed", "Error: ErrImagePull"))
                continue
            if self._present(pod, c):
                pending.append(
                    (c.name, "Pulled", f'Container image "{c.image}" already present on machine')
                )
            else:
                took = max(1, int((at - sim.pull_started) * 1000))
                pending.append(
                    (
                        c.name,
                        "Pulled",
                        f'Successfully pulled image "{c.image}" in {took}ms '
                        f"({took}ms including waiting)",
                    )
                )
                self._pulled.add(normalize_image(c.image))
            pending.extend(self._run(pod, c, at))
        status["phase"] = (
            "Pending"
            if any(c.behavior == "pull-fail" for c in sim.containers.values())
            else "Running"
        )
        self._readiness(pod, sim, at)
        stored = self.store.put("pods", pod)
        for cname, reason, message in pending:
            kind = "Warning" if reason == "Failed" else "Normal"
            self.events.kubelet(
                stored, reason, message, at, self.config.node_name, kind=kind, container=cname
            )
        if any(c.behavior == "pull-fail" for c in sim.containers.values()):
            sim.timers["pull_backoff"] = at + self.config.backoff
        if any(c.behavior == "crash" for c in sim.containers.values()):
            sim.timers["crash"] = at + self.config.backoff

    def _behavior(self, image: str) -> str:
        names = (image, normalize_image(image))
        if any(fnmatch.fnmatchcase(n, p) for p in self.fail_patterns for n in names):
            return "pull-fail"
        if any(fnmatch.fnmatchcase(n, p) for p in self.crash_patterns for n in names):
            return "crash"
        return "run"

    def _run(self, pod: JSON, c: _Container, at: float) -> list[tuple[str, str, str]]:
        """Start a new instance of ``c``: running status and the first log line."""
        c.container_id = "containerd://" + secrets.token_hex(32)
        c.started_at = at
        spec = next(x for x in pod["spec"]["containers"] if x["name"] == c.name)
        argv = [*(spec.get("command") or []), *(spec.get("args") or [])]
        started = f"started {c.image}" + (f": {' '.join(argv)}" if argv else "")
        c.instances.append([(at, started)])
        status = {
            "name": c.name,
            "image": normalize_image(c.image),
            "imageID": image_id(c.image),
            "containerID": c.container_id,
            "ready": True,
            "started": True,
            "restartCount": c.restarts,
            "state": {"running": {"startedAt": format_time(at)}},
            "lastState": current_status(pod, c.name).get("lastState", {}),
        }
        put_status(pod, status)
        return [
            (c.name, "Created", f"Created container: {c.name}"),
            (c.name, "Started", f"Started container {c.name}"),
        ]

    def _step_pull_backoff(self, sim: _PodSim, pod: JSON, at: float) -> None:
        for c in sim.containers.values():
            if c.behavior == "pull-fail":
                message = f'Back-off pulling image "{c.image}": ErrImagePull: {pull_error(c.image)}'
                put_status(
                    pod, waiting_status(c.name, c.image, c.restarts, "ImagePullBackOff", message)
                )
        stored = self.store.put("pods", pod)
        for c in sim.containers.values():
            if c.behavior == "pull-fail":
                node = self.config.node_name
                self.events.kubelet(
                    stored,
                    "BackOff",
                    f'Back-off pulling image "{c.image}"',
                    at,
                    node,
                    container=c.name,
                )
                self.events.kubelet(
                    stored,
                    "Failed",
                    "Error: ImagePullBackOff",
                    at,
                    node,
                    kind="Warning",
                    container=c.name,
                )

    def _step_crash(self, sim: _PodSim, pod: JSON, at: float) -> None:
        never = pod["spec"].get("restartPolicy") == "Never"
        first = sim.crashes == 0
        sim.crashes += 1
        delay = self.config.backoff * min(2 ** (sim.crashes - 1), 8)
        meta = pod["metadata"]
        pod_ref = f"{meta['name']}_{meta['namespace']}({meta['uid']})"
        pending: list[tuple[str, str, str]] = []
        for c in sim.containers.values():
            if c.behavior != "crash":
                continue
            terminated = {
                "exitCode": 1,
                "reason": "Error",
                "startedAt": format_time(c.started_at),
                "finishedAt": format_time(at),
                "containerID": c.container_id,
            }
            if never:
                status = {**current_status(pod, c.name), "ready": False, "started": False}
                status["state"] = {"terminated": terminated}
                put_status(pod, status)
            elif first:
                # The kubelet restarts a container at once the first time it exits.
                c.restarts += 1
                put_status(
                    pod, {**current_status(pod, c.name), "lastState": {"terminated": terminated}}
                )
                pending.extend(self._run(pod, c, at))
            else:
                status = {**current_status(pod, c.name), "ready": False, "started": False}
                status["state"] = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {int(10 * 2 ** min(sim.crashes - 2, 5))}s "
                        f"restarting failed container={c.name} pod={pod_ref}",
                    }
                }
                status["lastState"] = {"terminated": terminated}
                put_status(pod, status)
                pending.append(
                    (
                        c.name,
                        "BackOff",
                        f"Back-off restarting failed container {c.name} in pod {pod_ref}",
                    )
                )
        if never and all(c.behavior == "crash" for c in sim.containers.values()):
            pod["status"]["phase"] = "Failed"
        self._readiness(pod, sim, at)
        stored = self.store.put("pods", pod)
        for cname, reason, message in pending:
            kind = "Warning" if reason == "BackOff" else "Normal"
            self.events.kubelet(
                stored, reason, message, at, self.config.node_name, kind=kind, container=cname
            )
        if never:
            return
        sim.timers["crash" if first else "restart"] = at + delay

    def _step_restart(self, sim: _PodSim, pod: JSON, at: float) -> None:
        pending: list[tuple[str, str, str]] = []
        for c in sim.containers.values():
            if c.behavior == "crash":
                c.restarts += 1
                pending.append(
                    (c.name, "Pulled", f'Container image "{c.image}" already present on machine')
                )
                pending.extend(self._run(pod, c, at))
        self._readiness(pod, sim, at)
        stored = self.store.put("pods", pod)
        for cname, reason, message in pending:
            self.events.kubelet(stored, reason, message, at, self.config.node_name, container=cname)
        sim.timers["crash"] = at + self.config.backoff

    def _readiness(self, pod: JSON, sim: _PodSim, at: float) -> None:
        statuses = pod["status"].get("containerStatuses") or []
        unready = [s["name"] for s in statuses if not s.get("ready")]
        if pod["status"].get("phase") == "Failed":
            set_condition(pod, "ContainersReady", "False", at, "PodFailed", "")
            set_condition(pod, "Ready", "False", at, "PodFailed", "")
        elif unready:
            message = f"containers with unready status: [{' '.join(unready)}]"
            set_condition(pod, "ContainersReady", "False", at, "ContainersNotReady", message)
            set_condition(pod, "Ready", "False", at, "ContainersNotReady", message)
        else:
            set_condition(pod, "ContainersReady", "True", at)
            set_condition(pod, "Ready", "True", at)

    # ------------------------------------------------------------- logs

    def append_log(
        self, namespace: str, name: str, text: str, container: str | None, at: float
    ) -> None:
        """Append lines to the current instance of a container's log."""
        sim = self.sim_for(namespace, name)
        if sim is None:
            raise KeyError(f"pod {namespace}/{name} is not running on the fake node")
        c = sim.containers[container] if container else next(iter(sim.containers.values()))
        if not c.instances:
            c.instances.append([])
        c.instances[-1].extend((at, line) for line in text.splitlines())
        self.store.cond.notify_all()
