"""Events the simulated scheduler and kubelet record, in the core/v1 shape.

Shape: https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/
and ``kubernetes/client/models/core_v1_event.py`` (metadata and
involvedObject are required). The kubelet writes core/v1 events through
client-go's recorder (``source``, ``firstTimestamp``/``lastTimestamp``,
``count``; a repeat of the same event bumps ``count``: EventCorrelator in
client-go/tools/record). The scheduler writes events.k8s.io/v1 events, which
read through core/v1 carry ``eventTime``, ``action`` and ``reportingComponent``
with an empty ``source`` and null timestamps.
"""

from __future__ import annotations

import uuid

from vmkit.testing.fakes.kubernetes.shapes import JSON, format_micro, format_time
from vmkit.testing.fakes.kubernetes.store import Store

__all__ = ["EventRecorder"]


class EventRecorder:
    """Writes Event objects into the store (callers hold the fake's lock)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._seen: dict[tuple[str, ...], tuple[str, str]] = {}
        self._last_name = 0

    def _name(self, pod_name: str, at: float) -> str:
        # client-go names events "<object>.<hex of the time in nanoseconds>".
        stamp = max(int(at * 1e9), self._last_name + 1)
        self._last_name = stamp
        return f"{pod_name}.{stamp:x}"

    @staticmethod
    def _involved(pod: JSON, container: str | None) -> JSON:
        meta = pod["metadata"]
        ref: JSON = {
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": "v1",
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        if container:
            ref["fieldPath"] = f"spec.containers{{{container}}}"
        return ref

    def kubelet(
        self,
        pod: JSON,
        reason: str,
        message: str,
        at: float,
        node: str,
        *,
        kind: str = "Normal",
        container: str | None = None,
    ) -> JSON:
        """Record (or count again) a kubelet event about ``pod``."""
        meta = pod["metadata"]
        key = (meta["uid"], container or "", kind, reason, message)
        if key in self._seen:
            namespace, name = self._seen[key]
            existing = self.store.get("events", namespace, name)
            if existing is not None:
                existing["count"] = existing.get("count", 1) + 1
                existing["lastTimestamp"] = format_time(at)
                return self.store.put("events", existing)
        name = self._name(meta["name"], at)
        event: JSON = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "uid": str(uuid.uuid4()),
                "creationTimestamp": format_time(at),
            },
            "involvedObject": self._involved(pod, container),
            "reason": reason,
            "message": message,
            "source": {"component": "kubelet", "host": node},
            "firstTimestamp": format_time(at),
            "lastTimestamp": format_time(at),
            "count": 1,
            "type": kind,
            "eventTime": None,
            "reportingComponent": "kubelet",
            "reportingInstance": node,
        }
        self._seen[key] = (meta["namespace"], name)
        return self.store.put("events", event)

    def scheduler(self, pod: JSON, reason: str, message: str, at: float, kind: str) -> JSON:
        """Record a scheduler event (Scheduled, FailedScheduling)."""
        meta = pod["metadata"]
        event: JSON = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": self._name(meta["name"], at),
                "namespace": meta["namespace"],
                "uid": str(uuid.uuid4()),
                "creationTimestamp": format_time(at),
            },
            "involvedObject": self._involved(pod, None),
            "reason": reason,
            "message": message,
            "source": {},
            "firstTimestamp": None,
            "lastTimestamp": None,
            "type": kind,
            "eventTime": format_micro(at),
            "action": "Binding" if reason == "Scheduled" else "Scheduling",
            "reportingComponent": "default-scheduler",
            "reportingInstance": "default-scheduler-vmkit-fake",
        }
        return self.store.put("events", event)
