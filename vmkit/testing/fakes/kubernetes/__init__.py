"""A fake Kubernetes API server the official ``kubernetes`` client talks to.

>>> from vmkit.testing.fakes.kubernetes import KubernetesFake, make_api_client
>>> with KubernetesFake(token="t0ken") as fake:            # doctest: +SKIP
...     api = kubernetes.client.CoreV1Api(make_api_client(fake))
...     api.create_namespaced_pod("default", pod)

The fake keeps state the way the API server does (one global
resourceVersion, a bounded watch history, Status errors) and simulates a
scheduler and kubelet on one node: pods go Pending -> Running, or fail to
pull / crash-loop / stay Unschedulable / keep pulling (``hold_starts``) when
told to. A pod with finalizers outlives its DELETE until they are removed
(``set_finalizers``), and a ResourceQuota's ``pods`` limit is enforced at
admission. Fault injection comes from :class:`vmkit.testing.faults.FaultPlan`
(``fake.faults``).
"""

from __future__ import annotations

from typing import Any

from vmkit.testing.fakes.kubernetes.kubelet import SimConfig
from vmkit.testing.fakes.kubernetes.server import KubernetesFake

__all__ = ["KubernetesFake", "SimConfig", "make_api_client"]


def make_api_client(fake: KubernetesFake, *, token: str | None = None, retries: Any = None) -> Any:
    """A real ``kubernetes.client.ApiClient`` for a started fake: host = the
    fake's URL, the fake's bearer token (or ``token``), and optionally a
    urllib3 ``Retry`` as ``Configuration.retries``.

    The token goes under the key ``BearerToken`` with prefix ``Bearer``:
    kubernetes 36's ``Configuration.auth_settings()`` reads that key and only
    falls back to ``authorization`` without applying its prefix (see
    kubernetes/client/configuration.py, issue kubernetes-client/python#2595),
    which sends a bare token the API server refuses.
    """
    from kubernetes import client

    config = client.Configuration(host=fake.url)
    secret = token if token is not None else fake.token
    if secret:
        config.api_key = {"BearerToken": secret}
        config.api_key_prefix = {"BearerToken": "Bearer"}
    if retries is not None:
        config.retries = retries
    return client.ApiClient(config)
