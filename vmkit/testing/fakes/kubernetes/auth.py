"""Bearer-token authentication, and what RBAC answers a caller it refuses.

Authentication follows k8s.io/apiserver/pkg/authentication/request/bearertoken
/bearertoken.go: the header is split on spaces and the scheme compared
lower-cased, so ``Authorization: <token>`` (no scheme) carries no bearer
token at all, and a wrong token is a 401 ``Unauthorized``. A request without
a bearer token is ``system:anonymous`` when anonymous auth is on, and the
RBAC authorizer refuses it with 403. The authenticated user (:data:`USER`)
is allowed everything but the rules the fake was told to refuse
(``KubernetesFake.forbid``). Both 403s have the message of
k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go
(ForbiddenStatusError) wrapped by apierrors.NewForbidden:
``<resource>.<group> "<name>" is forbidden: User "<user>" cannot <verb>
resource "<resource>" in API group "<group>" <scope>``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from vmkit.testing.fakes._http import HttpError, Request

__all__ = ["USER", "Access", "access_of", "authenticate", "authorize"]

#: The user a request with the fake's bearer token is authenticated as.
USER = "vmkit-fake"
_ANONYMOUS = "system:anonymous"


@dataclass(frozen=True)
class Access:
    """What a request asks for, as the RBAC authorizer sees it."""

    verb: str
    group: str
    #: the resource, with ``/subresource`` when there is one ("pods/log")
    resource: str
    namespace: str
    name: str

    @property
    def rule(self) -> tuple[str, str, str]:
        """``(verb, group, resource)``, what an RBAC rule names."""
        return (self.verb, self.group, self.resource)


def access_of(request: Request) -> Access | None:
    """The resource access of a request under ``/api/v1`` or
    ``/apis/<group>/<version>``; None for a non-resource path (discovery,
    ``/version``)."""
    parts = request.path.strip("/").split("/")
    if parts[:2] == ["api", "v1"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    name = rest[1] if len(rest) > 1 else ""
    watching = (request.arg("watch") or "").lower() in ("true", "1")
    verb = {
        ("GET", True): "get",
        ("GET", False): "watch" if watching else "list",
        ("POST", False): "create",
        ("PUT", True): "update",
        ("PATCH", True): "patch",
        ("DELETE", True): "delete",
        ("DELETE", False): "deletecollection",
    }.get((request.method, bool(name)), request.method.lower())
    return Access(verb, group, resource, namespace, name)


def authenticate(request: Request, token: str | None, anonymous: bool) -> str:
    """The user the request is made by; HttpError 401, or 403 for an
    anonymous request when anonymous auth is on."""
    if token is None:
        return USER
    parts = (request.headers.get("authorization") or "").strip().split(" ")
    if len(parts) >= 2 and parts[0].lower() == "bearer" and parts[1]:
        if parts[1] == token:
            return USER
        raise HttpError(401, "Unauthorized", reason="Unauthorized")
    if not anonymous:
        raise HttpError(401, "Unauthorized", reason="Unauthorized")
    raise _forbidden(request, _ANONYMOUS)


def authorize(request: Request, user: str, denied: Collection[tuple[str, str, str]]) -> None:
    """Refuse (403) a request whose ``(verb, group, resource)`` is in ``denied``."""
    access = access_of(request)
    if access is not None and access.rule in denied:
        raise _forbidden(request, user)


def _forbidden(request: Request, user: str) -> HttpError:
    access = access_of(request)
    if access is None:
        verb = request.method.lower()
        return HttpError(
            403,
            f'forbidden: User "{user}" cannot {verb} path "{request.path}"',
            reason="Forbidden",
            details={},
        )
    base = access.resource.split("/")[0]
    qualified = f"{base}.{access.group}" if access.group else base
    scope = f'in the namespace "{access.namespace}"' if access.namespace else "at the cluster scope"
    subject = f'{qualified} "{access.name}"' if access.name else qualified
    details: dict[str, str] = {"kind": base}
    if access.name:
        details["name"] = access.name
    if access.group:
        details["group"] = access.group
    return HttpError(
        403,
        f'{subject} is forbidden: User "{user}" cannot {access.verb} resource '
        f'"{access.resource}" in API group "{access.group}" {scope}',
        reason="Forbidden",
        details=details,
    )
