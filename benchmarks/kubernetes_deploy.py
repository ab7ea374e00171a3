"""Pods: 100 replicas on the Kubernetes fake with vmkit, against the raw client
creating the same pods concurrently and awaiting them with one watch.

    python benchmarks/kubernetes_deploy.py [--replicas 100] [--rounds 7]

Both sides send the same pod manifests (vmkit's ``pod_manifest``) with the
same number of concurrent creates, each on a fresh fake; the sides take turns
going first. The raw client's watch starts without a resourceVersion, so it
first lists every pod, then follows them until all are Ready.

What to look for: vmkit sends one create per pod plus two lists (the plan's
and the one the watch starts from) and ONE watch, whatever the replica count
-- never a read per pod -- and costs little more wall time than the bare
minimum the raw client shows.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from typing import Any

from _report import (
    Spread,
    Targets,
    deepen_listen_backlog,
    heading,
    options,
    ratio,
    rotated,
    rounds_of,
    table,
)
from kubernetes import client, watch

import vmkit
from vmkit.providers.kubernetes.provider import CREATE_WORKERS
from vmkit.providers.kubernetes.translate import parse_options, pod_manifest
from vmkit.testing.fakes.kubernetes import KubernetesFake, make_api_client

TOKEN = "benchmark-token"
# A node big enough for every replica: the figure is about the API, not scheduling;
# pods take 0.5 s to start, so both sides wait on a watch.
NODE: dict[str, Any] = {
    "node_cpu": "512",
    "node_memory": "2Ti",
    "node_pods": 1000,
    "start_delay": 0.5,
}


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


SIDES = (
    ("vmkit", "connect('kubernetes').deploy(workload)", with_vmkit),
    (
        "raw client",
        f"create_namespaced_pod x N ({CREATE_WORKERS} threads), one watch",
        with_raw_client,
    ),
)


def main() -> None:
    parser = options(__doc__.splitlines()[0], rounds=7)
    parser.add_argument("--replicas", type=int, default=100)
    args = parser.parse_args()
    deepen_listen_backlog()
    rounds, replicas = rounds_of(args), args.replicas

    walls = {key: Spread() for key, _, _ in SIDES}
    requests: dict[str, list[Counter[str]]] = {key: [] for key, _, _ in SIDES}
    for _, _, side in SIDES:  # warm-up, not counted: imports, SDK models
        side(2)
    for round_ in range(rounds):
        for key, _, side in rotated(SIDES, round_):
            wall, counted = side(replicas)
            walls[key].add(wall)
            requests[key].append(counted)

    heading(
        f"Pods, N={replicas}",
        f"the Kubernetes fake on 127.0.0.1 (pods start after {NODE['start_delay']} s), "
        f"kubernetes {version('kubernetes')}; {rounds} rounds, a fresh fake for each "
        "side of each round; seconds.",
    )
    print("sides:")
    for key, shown, _ in SIDES:
        print(f"  {key:<10}  {shown}")
    print()
    table(
        ["side", "deploy", "min-max", "requests"],
        [[key, *walls[key].cells(), _cell(requests[key], None)] for key, _, _ in SIDES],
    )
    versus = ratio(walls["vmkit"], walls["raw client"])
    print()
    table(
        ["ratio (round by round)", "median", "min-max"], [["vmkit / raw client", *versus.cells()]]
    )
    verbs = sorted({v for runs in requests.values() for c in runs for v in c})
    print()
    table(
        ["requests by verb", *(key for key, _, _ in SIDES)],
        [[verb, *(_cell(requests[key], verb) for key, _, _ in SIDES)] for verb in verbs],
    )

    targets = Targets("kubernetes")
    targets.check(
        f"Pods N={replicas}: vmkit <= 1.2x the raw-client floor",
        f"{versus.median:.2f}x",
        versus.median <= 1.2,
    )
    ours = requests["vmkit"]
    watches = max(c["watch pods"] for c in ours)
    reads = max(c["get pods"] for c in ours)
    lists = max(c["list pods"] for c in ours)
    targets.check(
        "Pods: one watch, no per-pod polling",
        f"{watches} watch, {reads} pod reads, {lists} lists",
        watches == 1 and reads == 0 and lists <= 2,
    )
    targets.report(args.json)


def _cell(counts: list[Counter[str]], verb: str | None) -> str:
    values = [c[verb] if verb else sum(c.values()) for c in counts]
    return str(min(values)) if min(values) == max(values) else f"{min(values)}-{max(values)}"


if __name__ == "__main__":
    main()
