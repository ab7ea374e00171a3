"""The Azure Resource Manager fake: compute, disks, network and resource groups on one
HTTP server on 127.0.0.1, for the real azure-mgmt-* clients."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from vmkit.testing.fakes.azure.compute import DEFAULT_VM_SIZES, ComputeApi
from vmkit.testing.fakes.azure.locks import LockApi
from vmkit.testing.fakes.azure.network import NetworkApi
from vmkit.testing.faults import FaultPlan

__all__ = ["AzureFake"]


class AzureFake(ComputeApi, NetworkApi, LockApi):
    """A stateful fake of ARM (Microsoft.Resources, Microsoft.Compute, Microsoft.Network).

    Long-running operations stay InProgress for ``lro_delay`` seconds, evaluated lazily
    when the fake is next asked. ``vm_sizes`` are the sizes offered (name -> (vCPUs,
    MiB)); ``images`` when given restricts the platform images to those URNs
    (``publisher:offer:sku`` or with ``:version``); ``image_disk_gb`` is the OS disk size
    of every image. See :class:`~vmkit.testing.fakes.azure.core.ArmCore` for the rest.

    Disks follow Compute's rules (``disks.py``): a disk is copied from a snapshot with
    ``createOption`` Copy and takes its size; a VM may attach an existing, unused disk as
    its OS disk (``createOption`` Attach, no ``osProfile``, cloud-init in ``userData``);
    a VM's OS disk changes (PUT or PATCH) only while it is deallocated; a disk attached
    to a VM cannot be deleted.

    Knobs for reliability tests, each an Azure behaviour: a regional vCPU quota
    (:meth:`set_cores_quota`), provisioning that takes long (:meth:`hold_provisioning`),
    management locks (:meth:`add_lock`), provisioning failures (:meth:`fail_vm_create`),
    and the faults of :class:`~vmkit.testing.faults.FaultPlan`.

    Connect the real clients with :func:`~vmkit.testing.fakes.azure.make_clients`.
    """

    def __init__(
        self,
        *,
        faults: FaultPlan | None = None,
        port: int = 0,
        lro_delay: float = 0.05,
        page_size: int = 100,
        token: str | None = None,
        lro_retry_after: int | None = None,
        vm_sizes: Mapping[str, tuple[int, int]] = DEFAULT_VM_SIZES,
        images: Collection[str] | None = None,
        image_disk_gb: int = 30,
    ) -> None:
        super().__init__(
            faults=faults,
            port=port,
            lro_delay=lro_delay,
            page_size=page_size,
            token=token,
            lro_retry_after=lro_retry_after,
        )
        self._register_network()
        self._register_disks()
        self._register_locks()
        self._register_compute(vm_sizes, images, image_disk_gb)

    def start(self) -> AzureFake:
        """Start serving; returns self."""
        super().start()
        return self

    def __enter__(self) -> AzureFake:
        return self.start()
