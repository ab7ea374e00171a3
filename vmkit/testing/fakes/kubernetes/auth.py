"""Bearer-token authentication, and what RBAC answers an anonymous caller.

Authentication follows k8s.io/apiserver/pkg/authentication/request/bearertoken
/bearertoken.go: the header is split on spaces and the scheme compared
lower-cased, so ``Authorization: <token>`` (no scheme) carries no bearer
token at all, and a wrong token is a 401 ``Unauthorized``. A request without
a bearer token is ``system:anonymous`` when anonymous auth is on, and the
RBAC authorizer refuses it with 403 (message format of
k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go Forbidden).
"""

from __future__ import annotations

from vmkit.testing.fakes._http import HttpError, Request

__all__ = ["authenticate"]


def authenticate(request: Request, token: str | None, anonymous: bool) -> None:
    """Return when the request may go on; raise HttpError 401 or 403."""
    if token is None:
        return
    parts = (request.headers.get("authorization") or "").strip().split(" ")
    if len(parts) >= 2 and parts[0].lower() == "bearer" and parts[1]:
        if parts[1] == token:
            return
        raise HttpError(401, "Unauthorized", reason="Unauthorized")
    if not anonymous:
        raise HttpError(401, "Unauthorized", reason="Unauthorized")
    raise _forbidden(request)


def _forbidden(request: Request) -> HttpError:
    user = 'User "system:anonymous"'
    parts = request.path.strip("/").split("/")
    if parts[:2] != ["api", "v1"] or len(parts) < 3:
        verb = request.method.lower()
        return HttpError(
            403,
            f'forbidden: {user} cannot {verb} path "{request.path}"',
            reason="Forbidden",
            details={},
        )
    rest, namespace = parts[2:], ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    name = rest[1] if len(rest) > 1 else ""
    watching = (request.arg("watch") or "").lower() in ("true", "1")
    verb = {
        ("GET", True): "get",
        ("GET", False): "watch" if watching else "list",
        ("POST", False): "create",
        ("DELETE", True): "delete",
        ("DELETE", False): "deletecollection",
    }.get((request.method, bool(name)), request.method.lower())
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    subject = f'{resource.split("/")[0]} "{name}"' if name else resource
    return HttpError(
        403,
        f'{subject} is forbidden: {user} cannot {verb} resource "{resource}" in API group "" '
        f"{scope}",
        reason="Forbidden",
        details={"name": name, "kind": resource.split("/")[0]} if name else {"kind": resource},
    )
