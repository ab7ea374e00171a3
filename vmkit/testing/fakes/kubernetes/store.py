"""The fake's etcd: objects, one global revision, and a bounded change history.

Every write takes the next value of one cluster-wide counter (etcd's
revision) as the object's ``metadata.resourceVersion``. Each resource keeps
its last ``window`` changes, like the API server's watch cache
(staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go): a watch or
an exact list from a revision older than that window is refused as 410
Expired, "too old resource version: R (OLDEST)".
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from dataclasses import dataclass, field

from vmkit.testing.fakes.kubernetes.shapes import JSON

__all__ = ["Change", "Expired", "Store", "key_path"]

Key = tuple[str, str]  # (namespace or "", name)


def key_path(key: Key) -> str:
    """The key as etcd orders it: "namespace/name" (or "name")."""
    return f"{key[0]}/{key[1]}" if key[0] else key[1]


class Expired(Exception):
    """The requested resourceVersion is older than the retained history."""


@dataclass(frozen=True)
class Change:
    """One committed write. ``prev`` lets a watch with a selector tell an
    object entering the selection (ADDED) from one leaving it (DELETED)."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: Key
    obj: JSON
    prev: JSON | None


@dataclass
class _History:
    changes: deque[Change]
    #: revision of the newest change dropped from the window (0: nothing dropped)
    compacted: int = 0


@dataclass
class Store:
    """Objects by resource, guarded by the fake's lock (callers hold it)."""

    cond: threading.Condition
    window: int = 1000
    revision: int = 1000
    objects: dict[str, dict[Key, JSON]] = field(default_factory=dict)
    _history: dict[str, _History] = field(default_factory=dict)

    def _log(self, resource: str) -> _History:
        return self._history.setdefault(resource, _History(deque()))

    def next_revision(self) -> int:
        self.revision += 1
        return self.revision

    # ------------------------------------------------------------- reads

    def get(self, resource: str, namespace: str, name: str) -> JSON | None:
        """A deep copy of the object, or None."""
        obj = self.objects.get(resource, {}).get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def items(self, resource: str, namespace: str | None = None) -> list[JSON]:
        """Deep copies, in key order (namespace, name) as etcd lists them."""
        table = self.objects.get(resource, {})
        return [
            copy.deepcopy(table[key])
            for key in sorted(table, key=key_path)
            if namespace is None or key[0] == namespace
        ]

    def items_at(self, resource: str, revision: int, namespace: str | None = None) -> list[JSON]:
        """The objects as they were at ``revision``; Expired when the history
        no longer reaches back that far."""
        log = self._log(resource)
        if revision < log.compacted:
            raise Expired(self.expired_message(resource, revision))
        table = {key: obj for key, obj in self.objects.get(resource, {}).items()}
        for change in reversed(log.changes):
            if change.rv <= revision:
                break
            if change.prev is None:
                table.pop(change.key, None)
            else:
                table[change.key] = change.prev
        return [
            copy.deepcopy(table[key])
            for key in sorted(table, key=key_path)
            if namespace is None or key[0] == namespace
        ]

    def changes_after(self, resource: str, revision: int) -> list[Change]:
        """The retained changes newer than ``revision``; Expired when some of
        them were already dropped."""
        log = self._log(resource)
        if revision < log.compacted:
            raise Expired(self.expired_message(resource, revision))
        return [change for change in log.changes if change.rv > revision]

    def expired_message(self, resource: str, revision: int) -> str:
        # watch_cache.go: fmt.Sprintf("too old resource version: %d (%d)", rv, oldest-1)
        return f"too old resource version: {revision} ({self._log(resource).compacted})"

    # ------------------------------------------------------------ writes

    def put(self, resource: str, obj: JSON) -> JSON:
        """Create or replace ``obj`` at a new revision; returns a copy of what
        is stored and wakes every watcher."""
        meta = obj.setdefault("metadata", {})
        key = (meta.get("namespace", ""), meta["name"])
        table = self.objects.setdefault(resource, {})
        prev = table.get(key)
        revision = self.next_revision()
        meta["resourceVersion"] = str(revision)
        stored = copy.deepcopy(obj)
        table[key] = stored
        self._record(resource, Change(revision, "MODIFIED" if prev else "ADDED", key, stored, prev))
        return copy.deepcopy(stored)

    def remove(self, resource: str, namespace: str, name: str) -> JSON | None:
        """Delete the object at a new revision (the DELETED event carries that
        revision, as the API server's does); returns its final copy."""
        table = self.objects.get(resource, {})
        prev = table.pop((namespace, name), None)
        if prev is None:
            return None
        final = copy.deepcopy(prev)
        final["metadata"]["resourceVersion"] = str(self.next_revision())
        self._record(resource, Change(self.revision, "DELETED", (namespace, name), final, prev))
        return copy.deepcopy(final)

    def _record(self, resource: str, change: Change) -> None:
        log = self._log(resource)
        log.changes.append(change)
        while len(log.changes) > self.window:
            log.compacted = log.changes.popleft().rv
        self.cond.notify_all()

    def compact(self, resource: str | None = None) -> None:
        """Drop the retained history (all resources when None), as an etcd
        compaction does: older watches and exact lists get 410 afterwards."""
        for name in [resource] if resource else list(self._history):
            log = self._log(name)
            log.changes.clear()
            log.compacted = self.revision
