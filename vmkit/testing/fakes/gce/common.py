"""Request plumbing shared by the Compute Engine fake's handlers."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from vmkit.testing.fakes._http import HttpError, Request, Response
from vmkit.testing.fakes.gce.errors import invalid, not_found
from vmkit.testing.fakes.gce.filters import FilterError, compile_filter, paginate
from vmkit.testing.fakes.gce.render import render_operation
from vmkit.testing.fakes.gce.shapes import LINK_BASE, NAME_RE, NAME_REGEX
from vmkit.testing.fakes.gce.state import GceState, Operation

__all__ = [
    "aggregated_response",
    "body_of",
    "check_labels",
    "check_name",
    "list_response",
    "op_response",
    "replay",
    "request_id",
    "zone_of",
]

T = TypeVar("T")

_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def zone_of(state: GceState, request: Request) -> tuple[str, str]:
    """The (project, zone) of a zonal path; 404 for a zone the fake does not serve."""
    project, zone = request.params["project"], request.params["zone"]
    if zone not in state.zones:
        raise not_found(f"projects/{project}/zones/{zone}")
    return project, zone


def body_of(request: Request) -> dict[str, Any]:
    data = request.json()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise invalid("resource", "", "The request body must be a JSON object.")
    return data


def request_id(request: Request) -> str | None:
    """The ``requestId`` query parameter, which "must be a valid UUID with the
    exception that zero UUID is not supported" (instances.insert reference)."""
    value = request.arg("requestId")
    if not value:
        return None
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise invalid("requestId", value, "Must be a valid UUID.") from None
    if parsed.int == 0:
        raise invalid("requestId", value, "The zero UUID is not supported.")
    return value


def op_response(op: Operation, state: GceState) -> Response:
    return Response(200, render_operation(op, state.now()))


def replay(state: GceState, request: Request) -> tuple[str | None, Response | None]:
    """The request's requestId, and the answer to give if that id was seen before.

    A repeated requestId returns the original operation and does nothing else,
    even when the resource has changed or gone since ("the server will know to
    ignore the request if it has already been completed", requestId in every
    mutating method's reference). Checked before the resource is looked up.
    """
    rid = request_id(request)
    earlier = state.replayed(request.params["project"], rid)
    return rid, op_response(earlier, state) if earlier is not None else None


def _selection(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` that pass the request's ``filter``, in its ``orderBy`` order."""
    try:
        matches = compile_filter(request.arg("filter"))
    except FilterError as exc:
        raise invalid(
            "filter", request.arg("filter"), f"Invalid list filter expression: {exc}"
        ) from None
    order = (request.arg("orderBy") or "").strip()
    selected = [item for item in items if matches(item)]
    if order in ("", "name"):
        selected.sort(key=lambda item: str(item.get("name", "")))
    elif order == "creationTimestamp desc":
        selected.sort(key=lambda item: str(item.get("creationTimestamp", "")), reverse=True)
    else:
        raise invalid("orderBy", order, "Only 'name' and 'creationTimestamp desc' are supported.")
    return selected


def _page(request: Request, items: Sequence[T], path: str) -> tuple[list[T], str | None]:
    """The page of ``items`` that ``maxResults`` (0..500, default 500) and
    ``pageToken`` select, and the next page's token."""
    raw_max = request.arg("maxResults") or "500"
    try:
        max_results = int(raw_max)
    except ValueError:
        raise invalid("maxResults", raw_max, "Must be an integer.") from None
    if max_results < 0 or max_results > 500:
        raise invalid("maxResults", raw_max, "Must be between 0 and 500, inclusive.")
    query = f"{path}|{request.arg('filter') or ''}|{(request.arg('orderBy') or '').strip()}"
    try:
        return paginate(items, max_results or 500, request.arg("pageToken"), query)
    except FilterError:
        raise invalid("pageToken", request.arg("pageToken"), "Invalid page token.") from None


def list_response(request: Request, kind: str, path: str, items: list[dict[str, Any]]) -> Response:
    """A ``compute#...List`` page: ``filter``, ``orderBy`` (name, or
    "creationTimestamp desc"), ``maxResults`` 0..500 (default 500) and
    ``pageToken``, as the list methods document."""
    page, token = _page(request, _selection(request, items), path)
    body: dict[str, Any] = {"kind": kind, "id": path, "selfLink": f"{LINK_BASE}/{path}"}
    if page:
        body["items"] = page
    if token:
        body["nextPageToken"] = token
    return Response(200, body)


def aggregated_response(
    request: Request,
    kind: str,
    path: str,
    key: str,
    scopes: dict[str, list[dict[str, Any]]],
    unreachable: Sequence[str] = (),
) -> Response:
    """A ``compute#...AggregatedList`` page (instances.aggregatedList reference,
    https://cloud.google.com/compute/docs/reference/rest/v1/instances/aggregatedList).

    ``items`` maps every scope (``"zones/us-central1-a"``) to ``{key: [...]}``,
    or, when none of its resources is on this page, to a ``warning``
    ``NO_RESULTS_ON_PAGE`` naming the scope ("an informational warning which
    replaces the list of instances when the list is empty",
    InstancesScopedList in google/cloud/compute_v1/types/compute.py).
    ``filter``, ``orderBy``, ``maxResults`` and ``pageToken`` work as in
    :func:`list_response`, paging through the resources of every scope in
    scope order. Scopes in ``unreachable`` cannot be read: the call fails with
    503 unless ``returnPartialSuccess`` is true, which lists them in
    ``unreachables`` instead (the reference only says to set
    returnPartialSuccess "to prevent failure"; the 503 is the fake's choice).
    """
    partial = (request.arg("returnPartialSuccess") or "false").lower()
    if partial not in ("true", "false"):
        raise invalid("returnPartialSuccess", partial, "Must be a boolean.")
    if unreachable and partial != "true":
        raise HttpError(
            503, f"Scopes {', '.join(unreachable)} are unavailable.", reason="backendError"
        )
    flat = [
        (scope, item)
        for scope in sorted(s for s in scopes if s not in unreachable)
        for item in _selection(request, scopes[scope])
    ]
    page, token = _page(request, flat, path)
    items: dict[str, Any] = {}
    for scope in sorted(s for s in scopes if s not in unreachable):
        found = [item for s, item in page if s == scope]
        if found:
            items[scope] = {key: found}
        else:
            items[scope] = {
                "warning": {
                    "code": "NO_RESULTS_ON_PAGE",
                    "message": f"There are no results for scope '{scope}' on this page.",
                    "data": [{"key": "scope", "value": scope}],
                }
            }
    body: dict[str, Any] = {
        "kind": kind,
        "id": path,
        "items": items,
        "selfLink": f"{LINK_BASE}/{path}",
    }
    if token:
        body["nextPageToken"] = token
    if unreachable:
        body["unreachables"] = sorted(unreachable)
    return Response(200, body)


def check_name(field_name: str, name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise invalid(
            field_name, name if name is not None else "", f"Must be a match of regex '{NAME_REGEX}'"
        )
    return name


def check_labels(field_name: str, labels: object) -> dict[str, str]:
    """Label rules of https://cloud.google.com/compute/docs/labeling-resources:
    at most 64, keys start with a lowercase letter, lowercase/digits/-/_ only,
    keys and values up to 63 characters."""
    if labels is None:
        return {}
    if not isinstance(labels, dict) or len(labels) > 64:
        raise invalid(field_name, labels, "At most 64 labels are allowed.")
    for key, value in labels.items():
        if not _LABEL_KEY.match(str(key)):
            raise invalid(
                f"{field_name}.key",
                key,
                "Label keys must start with a lowercase letter "
                "and contain only lowercase letters, digits, '-' and '_'.",
            )
        if not _LABEL_VALUE.match(str(value)):
            raise invalid(
                f"{field_name}.value",
                value,
                "Label values may contain only lowercase "
                "letters, digits, '-' and '_', up to 63 characters.",
            )
    return {str(k): str(v) for k, v in labels.items()}
