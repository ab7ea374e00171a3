"""Compute Engine: 100 replicas on the Compute Engine fake with vmkit, against
the raw google-cloud-compute client doing the same work the straightforward way.

    python benchmarks/gcp_deploy.py [--replicas 100] [--rounds 7]

Both sides use the real client (REST transport) against the HTTP fake on
127.0.0.1, a fresh fake for each side of each round (operations take 0.2 s,
an instance 0.5 s to boot); the sides take turns going first. The raw side
sends vmkit's own request bodies (from ``plan()``), so both do the same work:

* vmkit: ``vmkit.connect("gcp", ...)``, ``deploy(workload)`` until every
  replica runs, then ``destroy(workload.name)``;
* raw: ``firewalls.insert`` and ``globalOperations.wait``, one
  ``instances.bulkInsert`` and ``zoneOperations.wait``, then
  ``instances.list`` every 0.25 s until all run; to destroy, one
  ``instances.list``, ``instances.delete`` for each (Compute Engine has no
  bulk delete) and a wait on each operation, then the firewall rule.

What to look for: one ``instances.bulkInsert`` whatever the replica count,
its operation awaited with ``zoneOperations.wait``, one ``instances.list`` per
poll round (never one per machine), and little more time than the raw side.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
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
    timed,
)
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

import vmkit
from vmkit.testing.fakes.gce.server import GceFake
from vmkit.testing.fakes.gce.sim import catalog_machine_types

PROJECT, ZONE = "vmkit-sim", "us-central1-a"
WORKLOAD = "bench"
POLL = 0.25
OPERATION_DELAY, BOOT_DELAY = 0.2, 0.5  # seconds, in the fake


def workload(replicas: int) -> vmkit.Workload:
    return vmkit.Workload(name=WORKLOAD, image="nginx:1.27", ports=[80], replicas=replicas)


def fake() -> GceFake:
    return GceFake(
        project=PROJECT,
        machine_types=catalog_machine_types(),
        operation_delay=OPERATION_DELAY,
        transition_delay=BOOT_DELAY,
    )


def config(url: str) -> dict[str, Any]:
    credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return {"project": PROJECT, "zone": ZONE, "endpoint": url, "credentials": credentials}


# ------------------------------------------------------------------- vmkit


def vmkit_create(url: str, replicas: int, bodies: dict[str, Any]) -> Any:
    gcp = vmkit.connect("gcp", **config(url), poll_interval=POLL)
    machines = gcp.deploy(workload(replicas))
    assert len(machines) == replicas
    assert all(m.state == vmkit.MachineState.RUNNING for m in machines)
    return gcp


def vmkit_destroy(gcp: Any, replicas: int) -> None:
    assert len(gcp.destroy(WORKLOAD)) == replicas


# --------------------------------------------------------------------- raw


class Raw:
    """The raw clients, built as google-cloud-compute documents (REST transport,
    ``client_options={"api_endpoint": ...}``)."""

    def __init__(self, url: str) -> None:
        def build(cls: Any) -> Any:
            return cls(
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": url},
                transport="rest",
            )

        self.instances = build(compute_v1.InstancesClient)
        self.firewalls = build(compute_v1.FirewallsClient)
        self.zone_operations = build(compute_v1.ZoneOperationsClient)
        self.global_operations = build(compute_v1.GlobalOperationsClient)

    def listed(self) -> list[Any]:
        # The pager fetches the next pages itself (ListPager, nextPageToken).
        request = compute_v1.ListInstancesRequest(
            project=PROJECT, zone=ZONE, filter=f'labels.vmkit-workload = "{WORKLOAD}"'
        )
        return list(self.instances.list(request=request))


def raw_create(url: str, replicas: int, bodies: dict[str, Any]) -> Raw:
    raw = Raw(url)
    # insert() returns an ExtendedOperation; GlobalOperations.wait / ZoneOperations.wait
    # answer when the operation is DONE (compute v1 reference, globalOperations.wait).
    # The bodies are REST JSON: proto-plus messages read them with from_json.
    firewall = compute_v1.Firewall.from_json(json.dumps(bodies["firewall"]))
    op = raw.firewalls.insert(project=PROJECT, firewall_resource=firewall)
    raw.global_operations.wait(project=PROJECT, operation=op.name)
    op = raw.instances.bulk_insert(
        project=PROJECT,
        zone=ZONE,
        bulk_insert_instance_resource_resource=compute_v1.BulkInsertInstanceResource.from_json(
            json.dumps(bodies["bulk"])
        ),
    )
    done = raw.zone_operations.wait(project=PROJECT, zone=ZONE, operation=op.name)
    assert not done.error.errors, done.error
    while True:
        listed = raw.listed()
        if len(listed) == replicas and all(i.status == "RUNNING" for i in listed):
            return raw
        time.sleep(POLL)


def raw_destroy(raw: Raw, replicas: int) -> None:
    listed = raw.listed()
    assert len(listed) == replicas
    ops = [raw.instances.delete(project=PROJECT, zone=ZONE, instance=i.name) for i in listed]
    for op in ops:
        raw.zone_operations.wait(project=PROJECT, zone=ZONE, operation=op.name)
    op = raw.firewalls.delete(project=PROJECT, firewall=f"vmkit-{WORKLOAD}")
    raw.global_operations.wait(project=PROJECT, operation=op.name)


def bodies_of(replicas: int) -> dict[str, Any]:
    """vmkit's bulkInsert and firewall bodies for ``replicas`` (read on a throwaway fake)."""
    from vmkit.providers.gcp import translate as tr

    with fake() as server:
        gcp = vmkit.connect("gcp", **config(server.url))
        request = gcp.plan(workload(replicas)).requests[0]
    firewall = tr.firewall_body(workload(replicas), network="default", source_ranges=["0.0.0.0/0"])
    return {"bulk": dict(request.body["bulkInsertInstanceResource"]), "firewall": firewall}


SIDES: tuple[tuple[str, str, str, Callable[..., Any], Callable[[Any, int], None]], ...] = (
    ("vmkit", "connect('gcp').deploy(workload)", "destroy(workload.name)",
     vmkit_create, vmkit_destroy),
    ("raw", "firewalls.insert, instances.bulk_insert, operations.wait, list until RUNNING",
     "list, instances.delete x N, operations.wait x N, firewalls.delete", raw_create, raw_destroy),
)  # fmt: skip


def main() -> None:
    parser = options(__doc__.splitlines()[0], rounds=7)
    parser.add_argument("--replicas", type=int, default=100)
    args = parser.parse_args()
    deepen_listen_backlog()
    rounds, replicas = rounds_of(args), args.replicas
    bodies = bodies_of(replicas)
    warm = bodies_of(2)

    create = {key: Spread() for key, *_ in SIDES}
    destroy = {key: Spread() for key, *_ in SIDES}
    requests: dict[str, list[tuple[Counter[str], Counter[str]]]] = {key: [] for key, *_ in SIDES}

    def measure(key: str, up: Callable[..., Any], down: Callable[[Any, int], None], n: int) -> None:
        with fake() as server:
            wall, handle = timed(lambda: up(server.url, n, warm if n != replicas else bodies))
            made = Counter(server.requests)
            down_wall, _ = timed(lambda: down(handle, n))
            if n == replicas:
                create[key].add(wall)
                destroy[key].add(down_wall)
                requests[key].append((made, Counter(server.requests) - made))

    for key, _, _, up, down in SIDES:  # warm-up, not counted
        measure(key, up, down, 2)
    for round_ in range(rounds):
        for key, _, _, up, down in rotated(SIDES, round_):
            measure(key, up, down, replicas)

    heading(
        f"Compute Engine, N={replicas}",
        f"the Compute Engine fake on 127.0.0.1 (operations {OPERATION_DELAY} s, boot "
        f"{BOOT_DELAY} s), google-cloud-compute {version('google-cloud-compute')}; "
        f"{rounds} rounds, a fresh fake for each side of each round; seconds; requests as "
        "the fake served them.",
    )
    print("sides:")
    for key, up_shown, down_shown, *_ in SIDES:
        print(f"  {key:<5}  create: {up_shown}")
        print(f"  {'':<5}  destroy: {down_shown}")
    print()

    def cell(key: str, phase: int, name: str | None) -> str:
        values = [c[phase][name] if name else sum(c[phase].values()) for c in requests[key]]
        low, high = min(values), max(values)
        return str(low) if low == high else f"{low}-{high}"

    table(
        ["side", "create", "min-max", "destroy", "min-max", "requests c/d"],
        [
            [key, *create[key].cells(), *destroy[key].cells(),
             f"{cell(key, 0, None)} / {cell(key, 1, None)}"]
            for key, *_ in SIDES
        ],
    )  # fmt: skip
    on_create = ratio(create["vmkit"], create["raw"])
    print()
    table(
        ["ratio (round by round)", "median", "min-max"],
        [
            ["vmkit / raw, create", *on_create.cells()],
            ["vmkit / raw, destroy", *ratio(destroy["vmkit"], destroy["raw"]).cells()],
        ],
    )
    names = sorted({n for runs in requests.values() for pair in runs for c in pair for n in c})
    print()
    table(
        ["requests served", "vmkit create", "vmkit destroy", "raw create", "raw destroy"],
        [[n, cell("vmkit", 0, n), cell("vmkit", 1, n), cell("raw", 0, n), cell("raw", 1, n)]
         for n in names],
    )  # fmt: skip

    targets = Targets("gcp")
    bulk = max(
        pair[0][name] for pair in requests["vmkit"] for name in pair[0] if "bulkInsert" in name
    )
    targets.check("Compute Engine: one bulkInsert per batch", f"{bulk} bulkInsert", bulk == 1)
    targets.check(
        f"Compute Engine N={replicas}: vmkit create <= 1.2x the raw floor",
        f"{on_create.median:.2f}x",
        on_create.median <= 1.2,
    )
    targets.report(args.json)


if __name__ == "__main__":
    main()
