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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from vmkit.testing.fakes.kubernetes.server import KubernetesFake

__all__ = ["SIM_RUNTIME_CLASSES", "simulated_kubernetes"]

#: The RuntimeClasses of the simulated cluster: ``name -> (handler, overhead)``,
#: as a cluster with gVisor and Kata Containers installed has them. Handlers:
#: gVisor's containerd shim is ``runsc`` (https://gvisor.dev/docs/user_guide/containerd/quick_start/);
#: the overhead of ``kata`` is the one kata-deploy's RuntimeClasses declare
#: (kata-containers/kata-containers, tools/packaging/kata-deploy/runtimeclasses).
SIM_RUNTIME_CLASSES: Mapping[str, tuple[str, Mapping[str, str] | None]] = {
    "gvisor": ("runsc", None),
    "kata": ("kata", {"memory": "160Mi", "cpu": "250m"}),
}


@contextmanager
def simulated_kubernetes(
    namespace: str = "default",
    *,
    runtime_classes: Mapping[str, tuple[str, Mapping[str, str] | None]] | None = None,
    **sim: Any,
) -> Iterator[dict[str, Any]]:
    """A fresh one-node cluster; yields the ``connect("kubernetes", ...)`` config.

    The node has 8 CPUs, 32Gi of memory and room for 110 pods unless ``sim``
    says otherwise (any :class:`SimConfig` field, e.g. ``node_cpu="64"``).
    Deletion grace periods pass a thousand times faster than on a cluster,
    and the config polls every 50 ms. The cluster has the RuntimeClasses of
    ``runtime_classes`` (default :data:`SIM_RUNTIME_CLASSES`: ``gvisor`` and
    ``kata``), so ``isolation="sandbox"`` and ``"vm"`` deploy; ``{}`` gives a
    cluster with none.
    """
    classes = SIM_RUNTIME_CLASSES if runtime_classes is None else runtime_classes
    with KubernetesFake(token=secrets.token_urlsafe(24), **sim) as fake:
        for name, (handler, overhead) in classes.items():
            fake.add_runtime_class(name, handler, overhead=dict(overhead) if overhead else None)
        yield {
            "host": fake.url,
            "token": fake.token,
            "namespace": namespace,
            "poll_interval": 0.05,
        }
