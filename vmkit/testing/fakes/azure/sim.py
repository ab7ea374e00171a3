"""A simulated Azure subscription: the Azure fake on 127.0.0.1, reached by the backend's
documented ``endpoint`` and ``credential`` options, as a user reaches a private endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vmkit.testing.fakes.azure.clients import StaticTokenCredential
from vmkit.testing.fakes.azure.server import AzureFake

__all__ = ["SIM_SUBSCRIPTION", "simulated_azure"]

SIM_SUBSCRIPTION = "00000000-0000-0000-0000-0000000000a2"


@contextmanager
def simulated_azure(
    location: str = "eastus", *, fake: AzureFake | None = None, resource_group: str = "vmkit-sim"
) -> Iterator[dict[str, Any]]:
    """An empty subscription served by an :class:`AzureFake` (a fresh one unless
    ``fake`` is given, which is then left running). Yields the ``connect("azure", ...)``
    config, with short poll intervals. The resource group is created by the first
    deploy, as on Azure."""
    own = fake is None
    server = fake if fake is not None else AzureFake(lro_delay=0.02, token="sim-token")
    if own:
        server.start()
    try:
        yield {
            "subscription_id": SIM_SUBSCRIPTION,
            "resource_group": resource_group,
            "location": location,
            "endpoint": server.url,
            "credential": StaticTokenCredential(server.token or "sim-token"),
            "polling_interval": 0.01,
            "poll_interval": 0.02,
            "retry_timeout": 20.0,
        }
    finally:
        if own:
            server.stop()
