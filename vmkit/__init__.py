"""vmkit: one Workload spec, deployed as VMs or as pods on any cloud.

``import vmkit`` is cheap: the public names below are imported on first use,
and no cloud SDK is imported until a backend is connected.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "Workload": "vmkit.spec",
    "Resources": "vmkit.spec",
    "Port": "vmkit.spec",
    "Machine": "vmkit.machine",
    "MachineState": "vmkit.machine",
    "Snapshot": "vmkit.machine",
    "Orphan": "vmkit.machine",
    "Provider": "vmkit.provider",
    "Plan": "vmkit.provider",
    "connect": "vmkit.registry",
    "available": "vmkit.registry",
    "register": "vmkit.registry",
    "fleet": "vmkit._fleet",
    "Fleet": "vmkit._fleet",
    "FleetEntry": "vmkit._fleet",
    "load_targets": "vmkit.targets",
    "VmkitError": "vmkit.errors",
    "SpecError": "vmkit.errors",
    "ConfigError": "vmkit.errors",
    "ProviderError": "vmkit.errors",
    "NotFound": "vmkit.errors",
    "AuthError": "vmkit.errors",
    "QuotaExceeded": "vmkit.errors",
    "Throttled": "vmkit.errors",
    "Unsupported": "vmkit.errors",
    "DeployTimeout": "vmkit.errors",
}

__all__ = [
    "AuthError",
    "ConfigError",
    "DeployTimeout",
    "Fleet",
    "FleetEntry",
    "Machine",
    "MachineState",
    "NotFound",
    "Orphan",
    "Plan",
    "Port",
    "Provider",
    "ProviderError",
    "QuotaExceeded",
    "Resources",
    "Snapshot",
    "SpecError",
    "Throttled",
    "Unsupported",
    "VmkitError",
    "Workload",
    "available",
    "connect",
    "fleet",
    "load_targets",
    "register",
]

if TYPE_CHECKING:
    from vmkit._fleet import Fleet, FleetEntry, fleet
    from vmkit.errors import (
        AuthError,
        ConfigError,
        DeployTimeout,
        NotFound,
        ProviderError,
        QuotaExceeded,
        SpecError,
        Throttled,
        Unsupported,
        VmkitError,
    )
    from vmkit.machine import Machine, MachineState, Orphan, Snapshot
    from vmkit.provider import Plan, Provider
    from vmkit.registry import available, connect, register
    from vmkit.spec import Port, Resources, Workload
    from vmkit.targets import load_targets


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vmkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
