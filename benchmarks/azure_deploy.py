"""Azure: 50 replicas on the Azure fake with vmkit, against the raw azure-mgmt
clients doing the same work the straightforward way.

    python benchmarks/azure_deploy.py [--replicas 50] [--rounds 7] [--lro-delay 0.05]

Both sides use the real management clients against the HTTP fake on
127.0.0.1, a fresh fake for each side of each round (a long-running
operation takes ``--lro-delay`` seconds); the sides take turns going first.
The raw side sends vmkit's own bodies (from ``plan()`` and vmkit's network
bodies), so both do the same work:

* vmkit: ``vmkit.connect("azure", ...)``, ``deploy(workload)``, then
  ``destroy(workload.name)``;
* raw: the resource group, then the virtual network and the NSG, then every
  public IP, every NIC and every VM, each kind started at once with
  ``begin_create_or_update`` and awaited with ``.result()`` (Azure has no
  batch create); to destroy, the VMs listed and deleted the same way (their
  NICs, IPs and disks go with them: the bodies say ``deleteOption: Delete``),
  then the NSG and the network.

What to look for: one public IP, NIC and VM PUT per replica on both sides,
vmkit's creates running ``concurrency`` at a time, and a constant number of
listings per poll round.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from _report import (
    Spread,
    deepen_listen_backlog,
    heading,
    options,
    ratio,
    rotated,
    rounds_of,
    table,
    timed,
)

import vmkit
from vmkit.providers.azure import translate as tr
from vmkit.testing.fakes.azure import AzureFake
from vmkit.testing.fakes.azure.clients import AzureClients, make_clients
from vmkit.testing.fakes.azure.sim import SIM_SUBSCRIPTION, simulated_azure

WORKLOAD = "bench"
LOCATION = "eastus"
POLLING = 0.01  # azure-core's polling_interval, seconds, on both sides


def workload(replicas: int) -> vmkit.Workload:
    return vmkit.Workload(name=WORKLOAD, image="nginx:1.27", ports=[80], replicas=replicas)


# ------------------------------------------------------------------- vmkit


def vmkit_create(server: AzureFake, replicas: int, plan: list[Any]) -> Any:
    with simulated_azure(LOCATION, fake=server) as config:
        azure = vmkit.connect("azure", **config)
    machines = azure.deploy(workload(replicas))
    assert len(machines) == replicas
    return azure


def vmkit_destroy(azure: Any, replicas: int) -> None:
    assert len(azure.destroy(WORKLOAD)) == replicas


# --------------------------------------------------------------------- raw


def raw_create(server: AzureFake, replicas: int, plan: list[Any]) -> AzureClients:
    clients = make_clients(server, SIM_SUBSCRIPTION, polling_interval=POLLING)
    rg = plan[0]["resourceGroup"]
    clients.resources.resource_groups.create_or_update(rg, {"location": LOCATION})
    network = clients.network
    shared = [
        network.virtual_networks.begin_create_or_update(rg, tr.VNET_NAME, tr.vnet_body(LOCATION)),
        network.network_security_groups.begin_create_or_update(
            rg, tr.nsg_name(WORKLOAD), tr.nsg_body(workload(replicas), LOCATION)
        ),
    ]
    for poller in shared:
        poller.result()
    # Each kind at once: begin_* sends the PUT and returns an LROPoller; .result() waits.
    steps: list[tuple[str, Callable[..., Any]]] = [
        ("publicIPAddress", network.public_ip_addresses.begin_create_or_update),
        ("networkInterface", network.network_interfaces.begin_create_or_update),
        ("virtualMachine", clients.compute.virtual_machines.begin_create_or_update),
    ]
    for key, begin in steps:
        pollers = [begin(rg, body[key]["name"], body[key]["parameters"]) for body in plan]
        for poller in pollers:
            poller.result()
    return clients


def raw_destroy(clients: AzureClients, replicas: int) -> None:
    rg, vms = "vmkit-sim", clients.compute.virtual_machines
    mine = [vm.name for vm in vms.list(rg) if (vm.tags or {}).get("vmkit-workload") == WORKLOAD]
    assert len(mine) == replicas
    for poller in [vms.begin_delete(rg, name) for name in mine]:
        poller.result()
    clients.network.network_security_groups.begin_delete(rg, tr.nsg_name(WORKLOAD)).result()
    clients.network.virtual_networks.begin_delete(rg, tr.VNET_NAME).result()


def plan_of(replicas: int, lro_delay: float) -> list[Any]:
    """vmkit's per-replica create bodies (read on a throwaway fake)."""
    with AzureFake(lro_delay=lro_delay, token="sim-token") as server:
        with simulated_azure(LOCATION, fake=server) as config:
            azure = vmkit.connect("azure", **config)
        return [dict(r.body) for r in azure.plan(workload(replicas)).requests]


SIDES: tuple[tuple[str, str, str, Callable[..., Any], Callable[[Any, int], None]], ...] = (
    ("vmkit", "connect('azure').deploy(workload)", "destroy(workload.name)",
     vmkit_create, vmkit_destroy),
    ("raw", "group; vnet + NSG; IPs, NICs, VMs: begin_* x N then .result() x N each",
     "list VMs, begin_delete x N, .result() x N; NSG; vnet", raw_create, raw_destroy),
)  # fmt: skip


def main() -> None:
    parser = options(__doc__.splitlines()[0], rounds=7)
    parser.add_argument("--replicas", type=int, default=50)
    parser.add_argument("--lro-delay", type=float, default=0.05)
    args = parser.parse_args()
    deepen_listen_backlog()
    rounds, replicas, delay = rounds_of(args), args.replicas, args.lro_delay
    plans = {replicas: plan_of(replicas, delay), 2: plan_of(2, delay)}

    create = {key: Spread() for key, *_ in SIDES}
    destroy = {key: Spread() for key, *_ in SIDES}
    requests: dict[str, list[tuple[Counter[str], Counter[str]]]] = {key: [] for key, *_ in SIDES}
    concurrency = 0

    def measure(key: str, up: Callable[..., Any], down: Callable[[Any, int], None], n: int) -> None:
        nonlocal concurrency
        with AzureFake(lro_delay=delay, token="sim-token") as server:
            wall, handle = timed(lambda: up(server, n, plans[n]))
            made = Counter(server.requests)
            down_wall, _ = timed(lambda: down(handle, n))
            if key == "vmkit":
                concurrency = handle.concurrency
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
        f"Azure, N={replicas}",
        f"the Azure fake on 127.0.0.1 (long-running operations take {delay} s), "
        f"azure-mgmt-compute {version('azure-mgmt-compute')}, azure-mgmt-network "
        f"{version('azure-mgmt-network')}; vmkit's concurrency {concurrency}; {rounds} rounds, "
        "a fresh fake for each side of each round; seconds; requests as the fake served "
        "them (operation polls included).",
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
    print()
    table(
        ["ratio (round by round)", "median", "min-max"],
        [
            ["vmkit / raw, create", *ratio(create["vmkit"], create["raw"]).cells()],
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


if __name__ == "__main__":
    main()
