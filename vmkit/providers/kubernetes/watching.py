"""Waiting on a workload's pods with one list and one watch, never a poll loop.

The list-then-watch pattern of "API Concepts", "Efficient detection of
changes" (https://kubernetes.io/docs/reference/using-api/api-concepts/): list
the workload's pods by label selector, then watch the same selector from the
list's ``resourceVersion``. The pods are kept in a local view that each event
updates; waiting is a check run over that view after each change.

* A watch the server ends (its ``timeoutSeconds``) or a stream that breaks is
  resumed from the last ``resourceVersion`` seen (bookmarks included).
* A resourceVersion the server no longer keeps is answered, on a watch, by an
  HTTP 200 stream with one ``ERROR`` event whose object is a ``Status`` with
  code 410 (or by an HTTP 410 on some servers): the view is then rebuilt by a
  fresh list and the watch starts again from it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import urllib3.exceptions

from vmkit.errors import ProviderError
from vmkit.providers.kubernetes import translate as tr
from vmkit.providers.kubernetes.errors import PROVIDER, api_status

if TYPE_CHECKING:
    from vmkit.providers.kubernetes.provider import KubernetesProvider

__all__ = ["WATCH_SECONDS", "PodView", "follow"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Longest single watch request; a longer wait resumes with a new one.
WATCH_SECONDS = 300
#: Seconds to connect, and extra seconds a read may take past the watch's end.
CONNECT_TIMEOUT = 10.0
READ_MARGIN = 30.0

#: The pods of one workload by uid, as last seen (API JSON).
PodView = dict[str, dict[str, Any]]


class _Expired(Exception):
    """The watch's resourceVersion is too old (410): relist."""


class _Broken(Exception):
    """The stream broke mid-way: resume from the last resourceVersion."""


def _lines(response: Any) -> Iterator[bytes]:
    """The newline-delimited events of a watch response, as they arrive."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk if isinstance(chunk, bytes) else str(chunk).encode()
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


def _relist(provider: KubernetesProvider, selector: str) -> tuple[PodView, str]:
    pods, version = provider.list_pods(selector)
    return {str(p["metadata"]["uid"]): p for p in pods}, version


def _events(
    provider: KubernetesProvider, selector: str, version: str, seconds: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """One watch request: ``(type, object)`` pairs until the server ends it.

    Raises _Expired on a 410 (as an ERROR event or as the HTTP status) and
    _Broken when the stream breaks after it opened.
    """
    try:
        response = provider.open_watch(
            selector, version, seconds, (CONNECT_TIMEOUT, seconds + READ_MARGIN)
        )
    except ProviderError as exc:
        if api_status(exc) == 410:
            raise _Expired from exc
        raise
    try:
        for line in _lines(response):
            event = json.loads(line)
            kind, obj = str(event.get("type")), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _Expired
                raise ProviderError(
                    f"k8s:WatchPods: {obj.get('message')} ({obj.get('reason')} {obj.get('code')})",
                    provider=PROVIDER,
                    operation="k8s:WatchPods",
                )
            yield kind, obj
    except (urllib3.exceptions.HTTPError, ConnectionError, ValueError) as exc:
        raise _Broken(type(exc).__name__) from exc
    finally:
        response.close()
        response.release_conn()


def follow(
    provider: KubernetesProvider,
    workload: str,
    deadline: float,
    check: Callable[[Mapping[str, dict[str, Any]]], T | None],
) -> tuple[T | None, PodView]:
    """Keep a view of ``workload``'s pods until ``check(view)`` returns a value.

    ``check`` runs on the first list and after every change; it may raise to
    stop. Returns ``(value, view)``, or ``(None, view)`` at ``deadline``.
    """
    selector = tr.workload_selector(workload)
    view, version = _relist(provider, selector)
    done = check(view)
    breaks = 0
    while done is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, view
        seconds = max(1, math.ceil(min(remaining, WATCH_SECONDS)))
        try:
            for kind, obj in _events(provider, selector, version, seconds):
                meta = obj.get("metadata") or {}
                version = str(meta.get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                uid = str(meta.get("uid") or "")
                if kind == "DELETED":
                    view.pop(uid, None)
                else:
                    view[uid] = obj
                done = check(view)
                if done is not None or time.monotonic() >= deadline:
                    break
        except _Expired:
            log.debug("kubernetes: watch of %s expired at %s, relisting", workload, version)
            view, version = _relist(provider, selector)
            done = check(view)
        except _Broken as exc:
            breaks += 1
            pause = provider.retry_policy.backoff(breaks)
            log.debug("kubernetes: watch of %s broke (%s), resuming in %.2fs", workload, exc, pause)
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
    return done, view
