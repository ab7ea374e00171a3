"""What the deploy benchmarks share: time a deploy and a destroy, count the
API calls of each, and print them side by side as one table."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import vmkit


@dataclass(frozen=True)
class Lifecycle:
    """API calls by operation and wall time, for a deploy then a destroy."""

    machines: list[vmkit.Machine]
    deploy_calls: dict[str, int]
    destroy_calls: dict[str, int]
    deploy_wall: float
    destroy_wall: float


def deploy_and_destroy(provider: vmkit.Provider, workload: vmkit.Workload) -> Lifecycle:
    """Deploy ``workload`` (waiting until it runs), then destroy it, counting each."""
    provider.api_calls.clear()
    started = time.perf_counter()
    machines = provider.deploy(workload)
    deploy_wall = time.perf_counter() - started
    deploy_calls = dict(provider.api_calls)
    provider.api_calls.clear()
    started = time.perf_counter()
    provider.destroy(workload.name)
    destroy_wall = time.perf_counter() - started
    return Lifecycle(machines, deploy_calls, dict(provider.api_calls), deploy_wall, destroy_wall)


def print_table(
    deploy: Mapping[str, int],
    destroy: Mapping[str, int],
    *,
    total: str = "total API calls",
    walls: tuple[float, float] | None = None,
) -> None:
    """One row per operation, deploy and destroy side by side, then totals."""
    operations = sorted(set(deploy) | set(destroy))
    width = max(len(op) for op in [*operations, total, "wall time (s)"])
    rule = f"{'-' * width}  {'-' * 6}  {'-' * 7}"
    print(f"{'operation':<{width}}  {'deploy':>6}  {'destroy':>7}")
    print(rule)
    for op in operations:
        print(f"{op:<{width}}  {deploy.get(op, 0):>6}  {destroy.get(op, 0):>7}")
    print(rule)
    print(f"{total:<{width}}  {sum(deploy.values()):>6}  {sum(destroy.values()):>7}")
    if walls is not None:
        print(f"{'wall time (s)':<{width}}  {walls[0]:>6.2f}  {walls[1]:>7.2f}")
