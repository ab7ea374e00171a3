"""What every ARM resource provider shares: authentication, api-version, error shape,
request ids, long-running operations, paging, and the resource groups themselves.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from vmkit.testing.fakes._http import FakeServer, HttpError, Request, Response
from vmkit.testing.fakes.azure import errors
from vmkit.testing.fakes.azure.errors import ArmError
from vmkit.testing.fakes.azure.state import (
    Group,
    Operation,
    Resource,
    Store,
    iso,
    norm_location,
)
from vmkit.testing.faults import FaultPlan

__all__ = ["ArmCore", "Json"]

Json = dict[str, Any]
Renderer = Callable[[Resource], Json]

SUB = r"/subscriptions/(?P<sub>[^/]+)"
RG = SUB + r"/resourceGroups/(?P<rg>[^/]+)"
NAME = r"(?P<name>[^/]+)"
#: paths served without ARM authentication: the SAS-signed blob URLs of boot diagnostics
PUBLIC_PREFIX = "/blob/"
NETWORK = "Microsoft.Network"


class ArmCore(FakeServer):
    """The ARM front door and the Microsoft.Resources provider.

    ``lro_delay`` is how long every long-running operation stays InProgress;
    ``page_size`` bounds list pages (the rest follows through ``nextLink``);
    ``token`` when set is the only bearer token accepted; ``lro_retry_after`` is
    sent as ``Retry-After`` on LRO responses (azure-core treats 0 as absent and
    falls back to the client's ``polling_interval``).
    """

    def __init__(
        self,
        *,
        faults: FaultPlan | None = None,
        port: int = 0,
        lro_delay: float = 0.05,
        page_size: int = 100,
        token: str | None = None,
        lro_retry_after: int | None = None,
    ) -> None:
        super().__init__(faults=faults, port=port)
        self.store = Store()
        self.lro_delay = lro_delay
        self.page_size = page_size
        self.token = token
        self.lro_retry_after = lro_retry_after
        self._renderers: dict[str, Renderer] = {}
        self._register_core()

    # ------------------------------------------------------------- plumbing

    def arm_route(
        self, method: str, pattern: str, name: str, handler: Callable[..., Response]
    ) -> None:
        """Route with ARM's case-insensitive path matching."""
        self.route(method, f"(?i:{pattern})", name, handler)

    def renderer(self, provider_type: str, render: Renderer) -> None:
        """Declare how resources of ``provider_type`` are rendered."""
        self._renderers[provider_type.lower()] = render

    def render(self, resource: Resource) -> Json:
        return self._renderers[resource.provider_type.lower()](resource)

    def authorize(self, request: Request) -> None:
        """Bearer token and api-version on every ARM call, as the ARM front door checks."""
        if request.path.startswith(PUBLIC_PREFIX):
            return
        header = request.headers.get("authorization")
        if not header:
            raise errors.missing_authorization()
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.malformed_authorization()
        if self.token is not None and token.strip() != self.token:
            raise errors.invalid_token()
        if not request.arg("api-version"):
            raise errors.missing_api_version()

    def error_response(self, error: HttpError) -> Response:
        """Every error in ARM's shape ``{"error": {"code", "message", ...}}``."""
        if not isinstance(error, ArmError):
            message = None if error.message == "injected fault" else error.message
            error = errors.generic(error.status, message)
        headers = dict(error.headers)
        headers["x-ms-request-id"] = str(uuid.uuid4())
        return Response(error.status, {"error": error.body()}, headers=headers)

    def dispatch(self, request: Request) -> tuple[str, Response]:
        """Advance time-based state, handle, then add ARM's tracing headers."""
        with self.lock:
            self.store.advance(time.time())
            name, response = super().dispatch(request)
        response.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        response.headers.setdefault("x-ms-correlation-request-id", str(uuid.uuid4()))
        if request.method == "HEAD":
            # A HEAD answer carries no body; one would desynchronise the kept-alive connection.
            response.body = None
        return name, response

    # ------------------------------------------------------- request helpers

    @staticmethod
    def body_of(request: Request) -> Json:
        body = request.json()
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise ArmError(400, "InvalidRequestContent", "The request content was invalid.")
        return body

    def group_for_read(self, subscription: str, name: str) -> Group:
        group = self.store.group(subscription, name)
        if group is None:
            raise errors.group_not_found(name)
        return group

    def group_for_write(self, subscription: str, name: str) -> Group:
        group = self.group_for_read(subscription, name)
        if group.deleting:
            raise errors.group_being_deleted(group.name)
        return group

    def lookup(self, request: Request, provider_type: str, name: str | None = None) -> Resource:
        """The resource a request names; ResourceGroupNotFound before ResourceNotFound."""
        sub, rg = request.params["sub"], request.params["rg"]
        name = name if name is not None else request.params["name"]
        self.group_for_read(sub, rg)
        res = self.store.find(sub, rg, provider_type, name)
        if res is None:
            raise errors.resource_not_found(provider_type, name, rg)
        return res

    def new_resource(
        self,
        request: Request,
        group: Group,
        provider_type: str,
        body: Json,
        name: str | None = None,
    ) -> Resource:
        """A tracked resource from a PUT body; its location is required."""
        location = body.get("location")
        if not isinstance(location, str) or not location:
            raise errors.location_required()
        return Resource(
            subscription=request.params["sub"],
            group=group.name,
            provider_type=provider_type,
            name=name if name is not None else request.params["name"],
            location=norm_location(location),
            tags=dict(body.get("tags") or {}),
        )

    @staticmethod
    def check_same_location(res: Resource, body: Json) -> None:
        requested = body.get("location")
        if isinstance(requested, str) and norm_location(requested) != res.location:
            raise errors.resource_location_conflict(res.name, res.group, res.location, requested)

    def base_json(self, res: Resource) -> Json:
        """``id, name, type, location, tags`` (omitted when empty, as ARM does), top-level
        extras and a copy of ``properties``."""
        out: Json = {"id": res.id, "name": res.name, "type": res.provider_type}
        out["location"] = res.location
        if res.tags:
            out["tags"] = dict(res.tags)
        out.update(copy.deepcopy(res.top))
        out["properties"] = copy.deepcopy(res.properties)
        return out

    def page(self, request: Request, items: list[Json]) -> Response:
        """One page of a list and, when more remain, a ``nextLink`` that carries the
        api-version: the SDKs request it verbatim."""
        try:
            skip = max(0, int(request.arg("$skiptoken") or 0))
        except ValueError as exc:
            raise ArmError(400, "InvalidSkipToken", "The skip token is invalid.") from exc
        body: Json = {"value": items[skip : skip + self.page_size]}
        if skip + self.page_size < len(items):
            query = {k: v[-1] for k, v in request.query.items() if k.lower() != "$skiptoken"}
            query["$skiptoken"] = str(skip + self.page_size)
            body["nextLink"] = f"{self.url}{request.path}?{urlencode(query)}"
        return Response(200, body)

    def referenced(self, target_id: str, provider_type: str, referrer: Resource) -> Resource:
        """A referenced resource in the referrer's region, else 400 InvalidResourceReference."""
        found = self.store.get(target_id)
        if (
            found is None
            or found.provider_type.lower() != provider_type.lower()
            or found.location != referrer.location
        ):
            raise errors.reference_not_found(target_id, referrer.id)
        return found

    # ----------------------------------------------------- child operations

    def begin_child(
        self, namespace: str, parent: Resource, items: list[Json], child: Json
    ) -> Operation:
        """A child resource (subnet, rule) is Updating until its operation ends."""
        child["properties"]["provisioningState"] = "Updating"

        def finish() -> ArmError | None:
            if any(c is child for c in items):
                child["properties"]["provisioningState"] = "Succeeded"
            return None

        return self.store.start(
            namespace, parent.location, parent.subscription, self.lro_delay, finish
        )

    def delete_child(
        self, request: Request, namespace: str, parent: Resource, items: list[Json], child: Json
    ) -> Response:
        """Deleting -> removed from ``items``; answers 202 with the monitors."""
        child["properties"]["provisioningState"] = "Deleting"

        def finish() -> ArmError | None:
            items[:] = [c for c in items if c is not child]
            return None

        op = self.store.start(
            namespace, parent.location, parent.subscription, self.lro_delay, finish
        )
        return self.accepted(op, request)

    @staticmethod
    def child(items: list[Json], name: str) -> Json | None:
        """The child named ``name`` (case-insensitive)."""
        return next((c for c in items if c["name"].lower() == name.lower()), None)

    # ------------------------------------------------- long-running operations

    def begin(
        self,
        res: Resource,
        namespace: str,
        transient: str,
        on_success: Callable[[], ArmError | None] | None = None,
    ) -> Operation:
        """Put ``res`` in ``transient`` provisioning state until the operation ends; then
        Succeeded, unless ``on_success`` returns an error."""
        res.properties["provisioningState"] = transient

        def finish() -> ArmError | None:
            if self.store.get(res.id) is not res or res.state.get("op") != op.id:
                return None
            error = on_success() if on_success is not None else None
            if error is None:
                res.properties["provisioningState"] = "Succeeded"
            return error

        op = self.store.start(namespace, res.location, res.subscription, self.lro_delay, finish)
        res.state["op"] = op.id
        return op

    def begin_delete(
        self, res: Resource, namespace: str, on_deleted: Callable[[], None] | None = None
    ) -> Operation:
        """Deleting -> gone. A second DELETE while deleting joins the same operation."""
        pending = res.state.get("delete_op")
        if pending is not None and pending in self.store.operations:
            return self.store.operations[pending]
        res.properties["provisioningState"] = "Deleting"

        def finish() -> ArmError | None:
            if self.store.get(res.id) is res:
                self.store.remove(res)
                if on_deleted is not None:
                    on_deleted()
            return None

        op = self.store.start(namespace, res.location, res.subscription, self.lro_delay, finish)
        res.state["op"] = res.state["delete_op"] = op.id
        return op

    def check_idle(self, res: Resource, request: Request) -> None:
        """429 AnotherOperationInProgress while an operation on ``res`` still runs: the
        Network RP runs one operation at a time on a resource and what references it
        (see :func:`errors.another_operation_in_progress`)."""
        running = self.store.operations.get(str(res.state.get("op") or ""))
        if running is not None and running.status == "InProgress":
            monitor = self.lro_headers(running, request, location=False)["Azure-AsyncOperation"]
            raise errors.another_operation_in_progress(monitor)

    def lro_headers(self, op: Operation, request: Request, *, location: bool) -> dict[str, str]:
        """``Azure-AsyncOperation`` (and ``Location``) for an accepted operation
        (learn.microsoft.com/azure/azure-resource-manager/management/async-operations)."""
        query = urlencode({"api-version": request.arg("api-version") or ""})
        base = (
            f"{self.url}/subscriptions/{op.subscription}/providers/{op.namespace}"
            f"/locations/{op.location}"
        )
        headers = {"Azure-AsyncOperation": f"{base}/operations/{op.id}?{query}"}
        if location:
            headers["Location"] = f"{base}/operationResults/{op.id}?{query}"
        if self.lro_retry_after is not None:
            headers["Retry-After"] = str(self.lro_retry_after)
        return headers

    def accepted(self, op: Operation, request: Request, body: Json | None = None) -> Response:
        """202 for DELETE and POST actions: both monitor headers, usually no body."""
        return Response(202, body, headers=self.lro_headers(op, request, location=True))

    # ------------------------------------------------- tracked-resource verbs

    def put_tracked(
        self,
        request: Request,
        provider_type: str,
        apply: Callable[[Resource, Json, bool], None],
        *,
        namespace: str,
        transient: str = "Updating",
        statuses: tuple[int, int] = (201, 200),
        location_header: bool = False,
    ) -> Response:
        """Create-or-update by name (idempotent, case-insensitive). ``apply(res, body,
        created)`` validates everything first and only then writes ``res``."""
        sub, rg, name = request.params["sub"], request.params["rg"], request.params["name"]
        group = self.group_for_write(sub, rg)
        body = self.body_of(request)
        res = self.store.find(sub, rg, provider_type, name)
        created = res is None
        if res is None:
            res = self.new_resource(request, group, provider_type, body)
        else:
            if namespace == NETWORK:
                self.check_idle(res, request)
            self.check_same_location(res, body)
        apply(res, body, created)
        res.tags = dict(body.get("tags") or {})
        if created:
            self.store.add(res)
        op = self.begin(res, namespace, transient)
        headers = self.lro_headers(op, request, location=location_header)
        return Response(statuses[0] if created else statuses[1], self.render(res), headers=headers)

    def get_tracked(self, request: Request, provider_type: str) -> Response:
        return Response(200, self.render(self.lookup(request, provider_type)))

    def list_tracked(self, request: Request, provider_type: str) -> Response:
        sub, rg = request.params["sub"], request.params["rg"]
        self.group_for_read(sub, rg)
        return self.page(
            request, [self.render(r) for r in self.store.of_type(provider_type, sub, rg)]
        )

    def delete_tracked(
        self,
        request: Request,
        provider_type: str,
        namespace: str,
        check: Callable[[Resource], None] | None = None,
        on_deleted: Callable[[Resource], None] | None = None,
    ) -> Response:
        """DELETE: 204 when already gone (ARM deletes are idempotent), else 202 + monitor."""
        sub, rg, name = request.params["sub"], request.params["rg"], request.params["name"]
        self.group_for_read(sub, rg)
        res = self.store.find(sub, rg, provider_type, name)
        if res is None:
            return Response(204, None)
        if namespace == NETWORK and res.state.get("op") != res.state.get("delete_op"):
            self.check_idle(res, request)
        if check is not None:
            check(res)
        done = (lambda: on_deleted(res)) if on_deleted is not None else None
        return self.accepted(self.begin_delete(res, namespace, done), request)

    def tracked_routes(
        self,
        collection: str,
        provider_type: str,
        name: str,
        put: Callable[[Request], Response],
        delete: Callable[[Request], Response],
    ) -> None:
        """PUT/GET/DELETE on ``collection/{name}`` and the paged list on ``collection``."""
        item = f"{collection}/{NAME}"
        self.arm_route("PUT", item, name, put)
        self.arm_route("GET", item, name, lambda r: self.get_tracked(r, provider_type))
        self.arm_route("DELETE", item, name, delete)
        self.arm_route(
            "GET", collection, f"{name}.list", lambda r: self.list_tracked(r, provider_type)
        )

    def _operation_status(self, request: Request) -> Response:
        op = self.store.operations.get(request.params["op"].lower())
        if op is None:
            raise errors.generic(404, f"The operation '{request.params['op']}' was not found.")
        headers = {}
        if op.status == "InProgress" and self.lro_retry_after is not None:
            headers["Retry-After"] = str(self.lro_retry_after)
        return Response(200, op.body(), headers=headers)

    def _operation_result(self, request: Request) -> Response:
        """The ``Location`` monitor: 202 while running, the error when failed, else 200."""
        op = self.store.operations.get(request.params["op"].lower())
        if op is None:
            raise errors.generic(404, f"The operation '{request.params['op']}' was not found.")
        if op.status == "InProgress":
            headers = {"Location": f"{self.url}{request.path}?{urlencode(_flat(request))}"}
            if self.lro_retry_after is not None:
                headers["Retry-After"] = str(self.lro_retry_after)
            return Response(202, None, headers=headers)
        if op.error is not None:
            raise op.error
        return Response(200, None)

    # --------------------------------------------------------- resource groups

    def _register_core(self) -> None:
        ops = SUB + r"/providers/(?P<ns>[^/]+)/locations/(?P<loc>[^/]+)"
        self.arm_route(
            "GET", ops + r"/operations/(?P<op>[^/]+)", "operation", self._operation_status
        )
        self.arm_route(
            "GET",
            ops + r"/operationResults/(?P<op>[^/]+)",
            "operationResult",
            self._operation_result,
        )
        self.arm_route(
            "GET",
            SUB + r"/operationresults/(?P<op>[^/]+)",
            "operationResult",
            self._operation_result,
        )
        group = SUB + r"/resourcegroups/(?P<rg>[^/]+)"
        self.arm_route("PUT", group, "resourceGroups", self._group_put)
        self.arm_route("GET", group, "resourceGroups", self._group_get)
        self.arm_route("HEAD", group, "resourceGroups", self._group_head)
        self.arm_route("DELETE", group, "resourceGroups", self._group_delete)
        self.arm_route("GET", SUB + r"/resourcegroups", "resourceGroups.list", self._group_list)

    @staticmethod
    def _group_json(group: Group) -> Json:
        # ResourceGroup model: azure-mgmt-resource resources/models/_models.py
        out: Json = {
            "id": group.id,
            "name": group.name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": group.location,
            "properties": {"provisioningState": "Deleting" if group.deleting else "Succeeded"},
        }
        if group.tags:
            out["tags"] = dict(group.tags)
        return out

    def _group_put(self, request: Request) -> Response:
        sub, name = request.params["sub"], request.params["rg"]
        body = self.body_of(request)
        location = body.get("location")
        if not isinstance(location, str) or not location:
            raise errors.location_required()
        group = self.store.group(sub, name)
        if group is not None:
            if group.deleting:
                raise errors.group_being_deleted(group.name)
            if norm_location(location) != group.location:
                raise errors.group_location_conflict(group.name, group.location, location)
            group.tags = dict(body.get("tags") or {})
            return Response(200, self._group_json(group))
        group = Group(sub, name, norm_location(location), dict(body.get("tags") or {}))
        self.store.add_group(group)
        return Response(201, self._group_json(group))

    def _group_get(self, request: Request) -> Response:
        return Response(
            200, self._group_json(self.group_for_read(request.params["sub"], request.params["rg"]))
        )

    def _group_head(self, request: Request) -> Response:
        # check_existence: 204 when present, 404 when not
        # (azure-mgmt-resource ResourceGroupsOperations.check_existence).
        found = self.store.group(request.params["sub"], request.params["rg"]) is not None
        return Response(204 if found else 404, None)

    def _group_delete(self, request: Request) -> Response:
        group = self.group_for_read(request.params["sub"], request.params["rg"])
        group.deleting = True

        def finish() -> ArmError | None:
            for res in list(self.store.resources.values()):
                if (
                    res.subscription.lower() == group.subscription.lower()
                    and res.group.lower() == group.name.lower()
                ):
                    self.store.remove(res)
            self.store.remove_group(group)
            return None

        op = self.store.start(
            "Microsoft.Resources", group.location, group.subscription, self.lro_delay, finish
        )
        # The Resources provider answers 202 with a Location monitor only (no Azure-AsyncOperation).
        query = urlencode({"api-version": request.arg("api-version") or ""})
        monitor = f"{self.url}/subscriptions/{group.subscription}/operationresults/{op.id}"
        headers = {"Location": f"{monitor}?{query}"}
        if self.lro_retry_after is not None:
            headers["Retry-After"] = str(self.lro_retry_after)
        return Response(202, None, headers=headers)

    def _group_list(self, request: Request) -> Response:
        sub = request.params["sub"].lower()
        groups = [g for g in self.store.groups.values() if g.subscription.lower() == sub]
        return self.page(request, [self._group_json(g) for g in groups])

    # ------------------------------------------------------------ inspection

    def resources(self, provider_type: str, subscription: str | None = None) -> list[Json]:
        """Every resource of a type (e.g. ``"Microsoft.Compute/virtualMachines"``), in one
        subscription or all, as GET renders it, oldest first, once due operations ran."""
        with self.lock:
            self.store.advance(time.time())
            return [self.render(r) for r in self.store.of_type(provider_type, subscription)]

    def backdate(self, resource_id: str, seconds: float) -> None:
        """Make a resource look ``seconds`` older (its ``timeCreated``, and for a
        disk when it was last attached or detached), as one left behind a while ago
        would be; ARM has no API to change it."""
        with self.lock:
            resource = self.store.get(resource_id)
            if resource is None:
                raise KeyError(resource_id)
            resource.created -= seconds
            if "timeCreated" in resource.properties:
                resource.properties["timeCreated"] = iso(resource.created)
            owned = resource.properties.get("LastOwnershipUpdateTime")
            if isinstance(owned, str):
                moment = datetime.fromisoformat(owned.replace("Z", "+00:00")).timestamp()
                resource.properties["LastOwnershipUpdateTime"] = iso(moment - seconds)

    def resource_count(self, provider_type: str, subscription: str | None = None) -> int:
        """How many resources of a type exist now (in one subscription, or all)."""
        return len(self.resources(provider_type, subscription))

    def resource_groups(self, subscription: str | None = None) -> list[str]:
        """The names of the resource groups that exist now (in one subscription, or all)."""
        with self.lock:
            self.store.advance(time.time())
            return sorted(
                g.name
                for g in self.store.groups.values()
                if subscription is None or g.subscription.lower() == subscription.lower()
            )


def _flat(request: Request) -> dict[str, str]:
    return {k: v[-1] for k, v in request.query.items()}
