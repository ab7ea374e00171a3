"""List and watch of a collection, with the API server's resourceVersion rules.

Semantics: https://kubernetes.io/docs/reference/using-api/api-concepts/
("Efficient detection of changes", "Resource versions", "Retrieving large
results sets in chunks"):

* list: ``resourceVersion`` unset or "0" or ``resourceVersionMatch=NotOlderThan``
  serves the current state; ``resourceVersionMatch=Exact`` serves the state at
  that revision, 410 Expired when it is out of the retained window; ``limit``
  and ``continue`` page through one consistent snapshot, and a continue token
  whose revision expired is a 410 too.
* watch: without ``resourceVersion`` (or "0") the current objects arrive as
  synthetic ADDED events first; from R, the retained changes after R are
  replayed, then new ones stream live. A too-old R is not an HTTP error: the
  stream is a 200 carrying one ERROR event whose object is a Status 410
  Expired (cacher.go newErrWatcher: "once we have passed authn/authz/admission
  ... errors must fail with a watch event of type ERROR").
* Watch events are ``{"type": ..., "object": ...}`` lines (WatchEvent,
  ``kubernetes/client/models/v1_watch_event.py``); an object that stops
  matching the selector arrives as DELETED, one that starts matching as ADDED.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vmkit.testing.fakes._http import HttpError, Request
from vmkit.testing.fakes.kubernetes.selectors import FieldSelector, LabelSelector, SelectorError
from vmkit.testing.fakes.kubernetes.shapes import JSON, status_object
from vmkit.testing.fakes.kubernetes.store import Change, Expired, Store, key_path

__all__ = ["Collection", "WatchOptions", "int_arg"]

_TRUE = ("true", "1")


def int_arg(request: Request, name: str, default: int | None = None) -> int | None:
    """An integer query parameter; 400 BadRequest when it is not one."""
    text = request.arg(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError as exc:
        raise HttpError(400, f'{name}: Invalid value: "{text}": must be an integer') from exc


@dataclass
class WatchOptions:
    """Server-side knobs of watches."""

    #: used when the request has no timeoutSeconds (kube-apiserver's
    #: --min-request-timeout default)
    default_timeout: float = 1800.0
    #: how often a watch that allows bookmarks gets one
    bookmark_interval: float = 60.0


class Collection:
    """One ``GET`` on a collection URL: its selectors, then list or watch.
    ``api_version`` is the group version the objects are served as
    (``"v1"`` for core, ``"node.k8s.io/v1"``...)."""

    def __init__(
        self,
        request: Request,
        resource: str,
        kind: str,
        namespace: str | None,
        *,
        api_version: str = "v1",
    ) -> None:
        self.request = request
        self.resource = resource
        self.kind = kind
        self.namespace = namespace
        self.api_version = api_version
        try:
            self.labels = LabelSelector(request.arg("labelSelector"))
            self.fields = FieldSelector(request.arg("fieldSelector"), resource)
        except SelectorError as exc:
            raise HttpError(400, str(exc)) from exc

    @property
    def is_watch(self) -> bool:
        return (self.request.arg("watch") or "").lower() in _TRUE

    def visible(self, obj: JSON) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def _typed(self, obj: JSON) -> JSON:
        typed = {"apiVersion": self.api_version, "kind": self.kind}
        typed.update({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})
        return typed

    # ---------------------------------------------------------------- list

    def list_body(self, store: Store) -> JSON:
        """The ``<Kind>List`` body. Items carry no kind/apiVersion, as in the
        API server's JSON lists."""
        arg = self.request.arg
        token = arg("continue")
        match = arg("resourceVersionMatch")
        version = arg("resourceVersion")
        start = ""
        if token:
            revision, start = _decode_continue(token)
            items = self._at(store, revision, _CONTINUE_EXPIRED)
        elif match == "Exact" and version:
            revision = _revision(version)
            items = self._at(
                store, revision, "The resourceVersion for the provided list is too old."
            )
        else:
            if version and version != "0" and _revision(version) > store.revision:
                # The watch cache waits for it, then gives up (cacher.go waitUntilFreshAndBlock).
                raise HttpError(
                    504,
                    f"Too large resource version: {version}, current: {store.revision}",
                    reason="Timeout",
                    details={
                        "causes": [
                            {
                                "reason": "ResourceVersionTooLarge",
                                "message": "Too large resource version",
                            }
                        ],
                        "retryAfterSeconds": 1,
                    },
                )
            revision = store.revision
            items = store.items(self.resource, self.namespace)
        items = [obj for obj in items if self.visible(obj)]
        if start:
            items = [obj for obj in items if _path(obj) > start]
        meta: JSON = {"resourceVersion": str(revision)}
        limit = int_arg(self.request, "limit", 0) or 0
        if limit > 0 and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            meta["continue"] = _encode_continue(revision, _path(items[-1]))
            meta["remainingItemCount"] = rest
        for obj in items:
            obj.pop("apiVersion", None)
            obj.pop("kind", None)
        return {
            "kind": f"{self.kind}List",
            "apiVersion": self.api_version,
            "metadata": meta,
            "items": items,
        }

    def _at(self, store: Store, revision: int, message: str) -> list[JSON]:
        try:
            return store.items_at(self.resource, revision, self.namespace)
        except Expired as exc:
            raise HttpError(410, message, reason="Expired") from exc

    # --------------------------------------------------------------- watch

    def watch(
        self,
        store: Store,
        cond: threading.Condition,
        options: WatchOptions,
        stopped: Callable[[], bool],
        opened: Callable[[int], None],
    ) -> Iterator[bytes]:
        """Prepare a watch under the caller's lock; returns the chunks to stream.
        ``opened(+1/-1)`` tracks how many watches are open."""
        arg = self.request.arg
        timeout = float(int_arg(self.request, "timeoutSeconds") or options.default_timeout)
        bookmarks = (arg("allowWatchBookmarks") or "").lower() in _TRUE
        version = arg("resourceVersion") or ""
        first: list[bytes] = []
        cursor = store.revision
        if version in ("", "0"):
            for obj in store.items(self.resource, self.namespace):
                if self.visible(obj):
                    first.append(_line("ADDED", self._typed(obj)))
        else:
            cursor = _revision(version)
            try:
                store.changes_after(self.resource, cursor)
            except Expired as exc:
                first.append(_line("ERROR", status_object(410, str(exc), "Expired")))
                cursor = -1
        return self._stream(
            store, cond, options, stopped, opened, first, cursor, timeout, bookmarks
        )

    def _stream(
        self,
        store: Store,
        cond: threading.Condition,
        options: WatchOptions,
        stopped: Callable[[], bool],
        opened: Callable[[int], None],
        first: list[bytes],
        cursor: int,
        timeout: float,
        bookmarks: bool,
    ) -> Iterator[bytes]:
        opened(1)
        try:
            # The headers are already out (the base server flushes them before
            # the first chunk), so an empty first chunk is simply not sent.
            yield b"".join(first)
            if cursor < 0:
                return
            deadline = time.monotonic() + timeout
            next_bookmark = time.monotonic() + options.bookmark_interval
            finished = False
            while not finished:
                out: list[bytes] = []
                with cond:
                    while not out and not finished:
                        if stopped():
                            return
                        try:
                            changes = store.changes_after(self.resource, cursor)
                        except Expired as exc:
                            out.append(_line("ERROR", status_object(410, str(exc), "Expired")))
                            finished = True
                            break
                        for change in changes:
                            cursor = change.rv
                            event = self._event(change)
                            if event:
                                out.append(event)
                        if out:
                            break
                        now = time.monotonic()
                        if now >= deadline or (bookmarks and now >= next_bookmark):
                            if bookmarks:
                                out.append(self._bookmark(store.revision))
                            next_bookmark = now + options.bookmark_interval
                            finished = now >= deadline
                            break
                        wake = min(deadline, next_bookmark) if bookmarks else deadline
                        cond.wait(max(0.001, min(wake - now, 0.5)))
                if out:
                    yield b"".join(out)
        finally:
            opened(-1)

    def _event(self, change: Change) -> bytes | None:
        now_visible = change.type != "DELETED" and self.visible(change.obj)
        was_visible = change.prev is not None and self.visible(change.prev)
        if change.type == "DELETED":
            kind = "DELETED" if was_visible else None
        elif now_visible:
            kind = "MODIFIED" if was_visible else "ADDED"
        else:
            kind = "DELETED" if was_visible else None
        return _line(kind, self._typed(copy.deepcopy(change.obj))) if kind else None

    def _bookmark(self, revision: int) -> bytes:
        # A BOOKMARK object carries only its kind and the resourceVersion.
        obj = {
            "kind": self.kind,
            "apiVersion": self.api_version,
            "metadata": {"resourceVersion": str(revision)},
        }
        return _line("BOOKMARK", obj)


_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter."
)


def _line(kind: str, obj: JSON) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _path(obj: JSON) -> str:
    meta = obj["metadata"]
    return key_path((meta.get("namespace", ""), meta["name"]))


def _revision(text: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise HttpError(
            400, f'Invalid value: "{text}": resourceVersion must be an integer'
        ) from exc


def _encode_continue(revision: int, last: str) -> str:
    # The API server's token: base64 JSON {"v":"meta.k8s.io/v1","rv":R,"start":"KEY\u0000"}.
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": last + "\x00"})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(raw["rv"]), str(raw["start"]).rstrip("\x00")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise HttpError(400, "continue key is not valid") from exc
