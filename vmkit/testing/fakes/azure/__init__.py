"""An HTTP fake of Azure Resource Manager for the real azure-mgmt-compute, -network and
-resource clients: resource groups, VMs, disks, snapshots, NSGs, public IPs, virtual
networks, subnets and NICs, with ARM's long-running operations and in-use rules.

    from vmkit.testing.fakes.azure import AzureFake, make_clients

    with AzureFake() as fake:
        clients = make_clients(fake, "00000000-0000-0000-0000-000000000000")
        clients.resources.resource_groups.create_or_update("rg", {"location": "eastus"})
"""

from vmkit.testing.fakes.azure.clients import (
    ARM_SCOPE,
    AzureClients,
    PlainHttpBearerPolicy,
    StaticTokenCredential,
    client_options,
    make_clients,
)
from vmkit.testing.fakes.azure.compute import DEFAULT_VM_SIZES
from vmkit.testing.fakes.azure.errors import ArmError
from vmkit.testing.fakes.azure.server import AzureFake
from vmkit.testing.fakes.azure.vm_lifecycle import FailureRule

__all__ = [
    "ARM_SCOPE",
    "DEFAULT_VM_SIZES",
    "ArmError",
    "AzureClients",
    "AzureFake",
    "FailureRule",
    "PlainHttpBearerPolicy",
    "StaticTokenCredential",
    "client_options",
    "make_clients",
]
