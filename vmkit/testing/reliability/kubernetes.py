"""The reliability checks' harness for Kubernetes: the API server fake, its knobs, its census.

Every knob is API server or kubelet behaviour the fake plays (see
:class:`~vmkit.testing.fakes.kubernetes.KubernetesFake`): a ResourceQuota with
a ``pods`` hard limit for ``limit`` (created and deleted through the REST API
with the official client, as ``kubectl`` would), image pulls that take long
for ``hold``, a finalizer on the pod for ``protect``. The census reads the
fake's stored pods, never vmkit.

Nothing can be leaked on Kubernetes: vmkit makes pods and nothing else (no
Service, Secret, ConfigMap or volume; the user names any service account,
pull secret or RuntimeClass, vmkit never creates one), and a pod is the
machine itself, which ``list``, ``deploy`` and ``destroy`` see. So
:meth:`KubernetesHarness.leak` leaves nothing and returns 0.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import vmkit
from vmkit.plan import REPLICA_TAG, WORKLOAD_TAG
from vmkit.provider import Provider
from vmkit.testing.fakes.kubernetes import KubernetesFake, make_api_client
from vmkit.testing.faults import FaultPlan
from vmkit.testing.reliability import Census, Harness

__all__ = ["KubernetesHarness"]

NAMESPACE = "default"
QUOTA = "vmkit-reliability"
FINALIZER = "reliability.vmkit.dev/protect"
#: Room for the 50 replicas of check 1 (1 vCPU and 2 GiB each) and then some.
NODE_CPU, NODE_MEMORY, NODE_PODS = "128", "512Gi", 250

Json = dict[str, Any]


class KubernetesHarness(Harness):
    """The fake API server on 127.0.0.1, reached with ``host`` and ``token``."""

    name = "kubernetes"
    create_method = "POST"
    # A pod is the whole machine: its create is the only request to lose.
    create_path = r"^/api/v1/namespaces/[^/]+/pods$"
    # API Priority and Fairness sheds load with 429 and Retry-After.
    throttle_status = 429

    def __init__(self) -> None:
        self._fake: KubernetesFake | None = None
        self._config: dict[str, Any] = {}

    @property
    def fake(self) -> KubernetesFake:
        if self._fake is None:
            raise RuntimeError("the harness is not started")
        return self._fake

    @contextmanager
    def start(self, faults: FaultPlan) -> Iterator[None]:
        # As vmkit.testing.fakes.kubernetes.sim.simulated_kubernetes, keeping the fake.
        with KubernetesFake(
            token=secrets.token_urlsafe(24),
            faults=faults,
            node_cpu=NODE_CPU,
            node_memory=NODE_MEMORY,
            node_pods=NODE_PODS,
        ) as fake:
            self._fake = fake
            self._config = {
                "host": fake.url,
                "token": fake.token,
                "namespace": NAMESPACE,
                "poll_interval": 0.05,
            }
            try:
                yield
            finally:
                self._fake, self._config = None, {}

    def connect(self, **options: Any) -> Provider:
        # Twelve tries (the fake's 429s ask for a second each) outlast a 10 s storm.
        settings = {**self._config, "retry_attempts": 12, "retry_timeout": 60.0, **options}
        return vmkit.connect("kubernetes", **settings)

    # ----------------------------------------------------------------- census

    def census(self, workload: str) -> Census:
        """The workload's pods as stored (terminating ones included: they
        still exist). vmkit makes nothing else, so there is no other
        resource and no orphan to count."""
        pods = [p for p in self.fake.pods(NAMESPACE) if _labels(p).get(WORKLOAD_TAG) == workload]
        return Census(replicas=tuple(_replica(p) for p in pods))

    # ------------------------------------------------------------------ knobs

    def limit(self, machines: int) -> None:
        """A ResourceQuota of ``machines`` pods in the namespace."""
        body = {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": QUOTA},
            "spec": {"hard": {"pods": str(machines)}},
        }
        api = self._api()
        existing = {q.metadata.name for q in api.list_namespaced_resource_quota(NAMESPACE).items}
        if QUOTA in existing:
            api.replace_namespaced_resource_quota(QUOTA, NAMESPACE, body)
        else:
            api.create_namespaced_resource_quota(NAMESPACE, body)

    def allow(self) -> None:
        api = self._api()
        if QUOTA in {q.metadata.name for q in api.list_namespaced_resource_quota(NAMESPACE).items}:
            api.delete_namespaced_resource_quota(QUOTA, NAMESPACE)

    def hold(self) -> None:
        self.fake.hold_starts()

    def release(self) -> None:
        self.fake.release_starts()

    def protect(self, workload: str, replica: int) -> None:
        """A finalizer on the replica's pod: a DELETE marks it Terminating and
        the API server keeps it until the finalizer is removed."""
        pod = self._pod(workload, replica)
        finalizers = list(pod["metadata"].get("finalizers") or [])
        self.fake.set_finalizers(NAMESPACE, pod["metadata"]["name"], [*finalizers, FINALIZER])

    def unprotect(self, workload: str, replica: int) -> None:
        pod = self._pod(workload, replica)
        finalizers = [f for f in pod["metadata"].get("finalizers") or [] if f != FINALIZER]
        self.fake.set_finalizers(NAMESPACE, pod["metadata"]["name"], finalizers)

    def leak(self, workload: str) -> int:
        """Nothing: a process that crashes mid-deploy leaves pods, which are
        the workload's machines (see the module docstring)."""
        return 0

    # ---------------------------------------------------------------- helpers

    def _api(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(make_api_client(self.fake))

    def _pod(self, workload: str, replica: int) -> Json:
        for pod in self.fake.pods(NAMESPACE):
            if _labels(pod).get(WORKLOAD_TAG) == workload and _replica(pod) == replica:
                return pod
        raise KeyError(f"no pod of {workload} replica {replica}")


def _labels(pod: Json) -> dict[str, str]:
    return dict((pod.get("metadata") or {}).get("labels") or {})


def _replica(pod: Json) -> int | None:
    value = _labels(pod).get(REPLICA_TAG, "")
    return int(value) if value.isdigit() else None
