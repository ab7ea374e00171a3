"""Namespaces of the fake API server: the object, its creation, and the
NamespaceLifecycle admission every namespaced create goes through."""

from __future__ import annotations

import uuid
from typing import Any

from vmkit.testing.fakes._http import HttpError
from vmkit.testing.fakes.kubernetes.shapes import (
    JSON,
    dns1123_label_errors,
    format_time,
    invalid_status_message,
)
from vmkit.testing.fakes.kubernetes.store import Store

__all__ = ["namespace_object", "new_namespace", "not_found", "require_namespace"]


def not_found(resource: str, name: str) -> HttpError:
    # apimachinery errors.NewNotFound: details.kind is the resource, e.g. "pods".
    return HttpError(
        404,
        f'{resource} "{name}" not found',
        reason="NotFound",
        details={"name": name, "kind": resource},
    )


def namespace_object(name: str, at: float) -> JSON:
    # Namespace v1: https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/namespace-v1/
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid4()),
            "creationTimestamp": format_time(at),
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def new_namespace(store: Store, body: Any, at: float) -> JSON:
    """The Namespace a ``POST /api/v1/namespaces`` with ``body`` makes (not
    stored yet); 400, 422 Invalid or 409 AlreadyExists as the API server."""
    if not isinstance(body, dict):
        raise HttpError(400, "the body of the request was in an unknown format")
    name = (body.get("metadata") or {}).get("name") or ""
    errors = dns1123_label_errors("metadata.name", name)
    if errors:
        raise HttpError(
            422,
            invalid_status_message("Namespace", name, errors),
            reason="Invalid",
            details={"name": name, "kind": "Namespace", "causes": [e.cause() for e in errors]},
        )
    if store.get("namespaces", "", name) is not None:
        raise HttpError(
            409,
            f'namespaces "{name}" already exists',
            reason="AlreadyExists",
            details={"name": name, "kind": "namespaces"},
        )
    ns = namespace_object(name, at)
    ns["metadata"]["labels"].update((body.get("metadata") or {}).get("labels") or {})
    return ns


def require_namespace(store: Store, namespace: str, resource: str, name: str) -> None:
    """NamespaceLifecycle admission: 404 for a namespace that does not
    exist, 403 (cause NamespaceTerminating) for one being deleted."""
    ns = store.get("namespaces", "", namespace)
    if ns is None:
        raise not_found("namespaces", namespace)
    if ns["status"].get("phase") == "Terminating":
        raise HttpError(
            403,
            f'{resource} "{name}" is forbidden: unable to create new content in namespace '
            f"{namespace} because it is being terminated",
            reason="Forbidden",
            details={
                "name": name,
                "kind": resource,
                "causes": [
                    {
                        "reason": "NamespaceTerminating",
                        "message": f"namespace {namespace} is being terminated",
                        "field": "metadata.namespace",
                    }
                ],
            },
        )
