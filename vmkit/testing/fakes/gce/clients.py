"""Real google-cloud-compute clients wired to a running :class:`GceFake`.

This is how a user points the SDK at a private endpoint: the same
``client_options={"api_endpoint": url}`` and explicit credentials, with the
REST transport (the only one that speaks the JSON API).

The extended operations that ``insert()`` and friends return poll with a
ZoneOperationsClient the SDK builds itself from the credentials alone
(services/instances/transports/base.py, ``_zone_operations_client``), so
that poller talks to compute.googleapis.com whatever ``api_endpoint`` says.
Never call ``.result()`` against a private endpoint: poll with the
``zone_operations`` / ``global_operations`` clients built here (``wait`` or
``get``), which share the endpoint and credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmkit.testing.fakes.gce.server import GceFake

__all__ = ["GceClients", "make_clients"]


@dataclass(frozen=True)
class GceClients:
    """One client per service the fake serves, all on the same endpoint."""

    instances: Any
    zone_operations: Any
    global_operations: Any
    firewalls: Any
    images: Any
    disks: Any
    snapshots: Any
    machine_types: Any


def make_clients(fake: GceFake, credentials: Any = None) -> GceClients:
    """Build the compute_v1 REST clients for ``fake`` (which must be started).

    ``credentials`` defaults to AnonymousCredentials (no Authorization header);
    for a fake built with ``token=...`` pass
    ``google.oauth2.credentials.Credentials(token)``.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import compute_v1

    creds = credentials if credentials is not None else AnonymousCredentials()  # type: ignore[no-untyped-call]
    options = fake.client_options()

    def build(cls: Any) -> Any:
        return cls(credentials=creds, client_options=options, transport="rest")

    return GceClients(
        instances=build(compute_v1.InstancesClient),
        zone_operations=build(compute_v1.ZoneOperationsClient),
        global_operations=build(compute_v1.GlobalOperationsClient),
        firewalls=build(compute_v1.FirewallsClient),
        images=build(compute_v1.ImagesClient),
        disks=build(compute_v1.DisksClient),
        snapshots=build(compute_v1.SnapshotsClient),
        machine_types=build(compute_v1.MachineTypesClient),
    )
