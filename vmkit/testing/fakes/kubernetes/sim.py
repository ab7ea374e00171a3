"""A simulated Kubernetes cluster for ``vmkit.connect("kubernetes", ...)``.

::

    from vmkit.testing.fakes.kubernetes.sim import simulated_kubernetes

    with simulated_kubernetes() as config:
        k8s = vmkit.connect("kubernetes", **config)
        k8s.deploy(workload)

The fake API server runs on 127.0.0.1 with a random bearer token; the
backend reaches it through its ordinary ``host`` and ``token`` options, as
it would a private API server. Nothing leaves the process.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vmkit.testing.fakes.kubernetes.server import KubernetesFake

__all__ = ["simulated_kubernetes"]


@contextmanager
def simulated_kubernetes(namespace: str = "default", **sim: Any) -> Iterator[dict[str, Any]]:
    """A fresh one-node cluster; yields the ``connect("kubernetes", ...)`` config.

    The node has 8 CPUs, 32Gi of memory and room for 110 pods unless ``sim``
    says otherwise (any :class:`SimConfig` field, e.g. ``node_cpu="64"``).
    Deletion grace periods pass a thousand times faster than on a cluster,
    and the config polls every 50 ms.
    """
    with KubernetesFake(token=secrets.token_urlsafe(24), **sim) as fake:
        yield {
            "host": fake.url,
            "token": fake.token,
            "namespace": namespace,
            "poll_interval": 0.05,
        }
