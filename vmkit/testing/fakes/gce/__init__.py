"""An HTTP fake of the Compute Engine compute v1 REST API.

>>> from vmkit.testing.fakes.gce import GceFake, make_clients
>>> with GceFake() as fake:                      # doctest: +SKIP
...     clients = make_clients(fake)
...     clients.instances.list(project="vmkit-test", zone="us-central1-a")

The real ``google-cloud-compute`` client reaches it over plain HTTP on
127.0.0.1 (``client_options={"api_endpoint": fake.url}``, REST transport).
It keeps instances, disks, snapshots, firewalls and operations the way
Compute Engine does, moves them through their statuses as time passes,
enforces requestId idempotency, label fingerprints, CPU quota and zone
capacity, and injects faults from a :class:`vmkit.testing.faults.FaultPlan`.
"""

from __future__ import annotations

from vmkit.testing.fakes.gce.catalog import (
    DEFAULT_MACHINE_TYPES,
    PUBLIC_IMAGES,
    ImageSpec,
    MachineTypeSpec,
)
from vmkit.testing.fakes.gce.clients import GceClients, make_clients
from vmkit.testing.fakes.gce.server import DEFAULT_ZONES, GceFake

__all__ = [
    "DEFAULT_MACHINE_TYPES",
    "DEFAULT_ZONES",
    "PUBLIC_IMAGES",
    "GceClients",
    "GceFake",
    "ImageSpec",
    "MachineTypeSpec",
    "make_clients",
]
