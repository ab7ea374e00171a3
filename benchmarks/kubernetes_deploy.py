"""Deploy 100 replicas on the Kubernetes fake with vmkit, and the same pods with
the raw client (same concurrency, one watch until all are Running), side by
side; print the API requests each took, the wall time and the ratio.

    python benchmarks/kubernetes_deploy.py [--replicas 100]

What to look for: vmkit sends one create per pod plus two lists (the plan's
and the one the watch starts from) and ONE watch, whatever the replica count
-- never a read per pod -- and costs little more wall time than the bare
minimum the raw client shows.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, watch

import vmkit
from vmkit.providers.kubernetes.provider import CREATE_WORKERS
from vmkit.providers.kubernetes.translate import parse_options, pod_manifest
from vmkit.testing.fakes.kubernetes import KubernetesFake, make_api_client

TOKEN = "benchmark-token"
# A node big enough for every replica: the figure is about the API, not scheduling;
# pods take 0.5 s to start, so both sides wait on a watch.
NODE = {"node_cpu": "512", "node_memory": "2Ti", "node_pods": 1000, "start_delay": 0.5}


def workload(replicas: int) -> vmkit.Workload:
    return vmkit.Workload(
        name="bench",
        image="nginx:1.27",
        ports=[80],
        resources={"cpu": 0.1, "memory": "128MiB"},
        replicas=replicas,
    )


def with_vmkit(replicas: int) -> tuple[float, Counter[str]]:
    with KubernetesFake(token=TOKEN, **NODE) as fake:
        k8s = vmkit.connect("kubernetes", host=fake.url, token=TOKEN, poll_interval=0.05)
        started = time.perf_counter()
        machines = k8s.deploy(workload(replicas))
        wall = time.perf_counter() - started
        assert len(machines) == replicas
        assert all(m.state == vmkit.MachineState.RUNNING for m in machines)
        return wall, Counter(fake.verbs)


def _ready(pod: Any) -> bool:
    conditions = pod.status.conditions or []
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in conditions
    )


def with_raw_client(replicas: int) -> tuple[float, Counter[str]]:
    spec = workload(replicas)
    bodies = [pod_manifest(spec, i, "default", parse_options(spec)) for i in range(replicas)]
    with KubernetesFake(token=TOKEN, **NODE) as fake:
        api_client = make_api_client(fake, retries=False)
        api_client.configuration.connection_pool_maxsize = CREATE_WORKERS
        api_client.rest_client = client.rest.RESTClientObject(api_client.configuration)
        core = client.CoreV1Api(api_client)
        started = time.perf_counter()
        with ThreadPoolExecutor(CREATE_WORKERS) as pool:
            list(pool.map(lambda body: core.create_namespaced_pod("default", body), bodies))
        running: set[str] = set()
        stream = watch.Watch()
        # Without a resourceVersion the watch first sends every existing pod.
        for event in stream.stream(
            core.list_namespaced_pod,
            "default",
            label_selector="vmkit-workload=bench",
            timeout_seconds=120,
        ):
            pod = event["object"]
            if _ready(pod):
                running.add(pod.metadata.name)
            if len(running) == replicas:
                stream.stop()
        wall = time.perf_counter() - started
        assert len(running) == replicas
        return wall, Counter(fake.verbs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=100)
    replicas = parser.parse_args().replicas

    vmkit_wall, vmkit_requests = with_vmkit(replicas)
    raw_wall, raw_requests = with_raw_client(replicas)

    verbs = sorted(set(vmkit_requests) | set(raw_requests))
    width = max(len(v) for v in [*verbs, "total API requests"])
    print(f"{replicas} pods on the Kubernetes fake, {CREATE_WORKERS} concurrent creates\n")
    print(f"{'request':<{width}}  {'vmkit':>7}  {'raw client':>10}  {'ratio':>6}")
    print(f"{'-' * width}  {'-' * 7}  {'-' * 10}  {'-' * 6}")
    for verb in verbs:
        print(f"{verb:<{width}}  {vmkit_requests[verb]:>7}  {raw_requests[verb]:>10}")
    print(f"{'-' * width}  {'-' * 7}  {'-' * 10}  {'-' * 6}")
    total_vmkit, total_raw = sum(vmkit_requests.values()), sum(raw_requests.values())
    print(
        f"{'total API requests':<{width}}  {total_vmkit:>7}  {total_raw:>10}  "
        f"{total_vmkit / total_raw:>6.2f}"
    )
    print(
        f"{'wall time (s)':<{width}}  {vmkit_wall:>7.2f}  {raw_wall:>10.2f}  "
        f"{vmkit_wall / raw_wall:>6.2f}"
    )


if __name__ == "__main__":
    main()
