"""The reliability checks' harness for Compute Engine: the GCE fake, its knobs, its census.

Every knob is a Compute Engine behaviour the fake plays (see
:class:`~vmkit.testing.fakes.gce.GceFake`): the regional CPUS quota for
``limit`` (bulkInsert creates what fits and fails the rest), instances whose
boot does not finish for ``hold``, ``deletionProtection`` (set with
instances.setDeletionProtection) for ``protect``. The census reads the
fake's state, never vmkit.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import vmkit
from vmkit.catalog import resolve_instance_type
from vmkit.plan import WORKLOAD_TAG
from vmkit.provider import Provider
from vmkit.spec import Resources
from vmkit.testing.fakes.gce import GceClients, GceFake, make_clients
from vmkit.testing.fakes.gce.sim import catalog_machine_types
from vmkit.testing.faults import FaultPlan
from vmkit.testing.reliability import Census, Harness

__all__ = ["GcpHarness"]

PROJECT = "vmkit-reliability"
ZONE = "us-central1-a"
IMAGE_FAMILY = "projects/debian-cloud/global/images/family/debian-12"


class GcpHarness(Harness):
    """The Compute Engine fake on 127.0.0.1, reached as a private endpoint."""

    name = "gcp"
    create_method = "POST"
    # One bulkInsert makes every missing replica (and its boot disk).
    create_path = r"/zones/[^/]+/instances/bulkInsert$"
    throttle_status = 429

    def __init__(self) -> None:
        self._fake: GceFake | None = None
        self._config: dict[str, Any] = {}

    @property
    def fake(self) -> GceFake:
        if self._fake is None:
            raise RuntimeError("the harness is not started")
        return self._fake

    @contextmanager
    def start(self, faults: FaultPlan) -> Iterator[None]:
        from google.auth.credentials import AnonymousCredentials

        fake = GceFake(
            project=PROJECT,
            faults=faults,
            operation_delay=0.02,
            transition_delay=0.04,
            machine_types=catalog_machine_types(),
        )
        with fake:
            self._fake = fake
            self._config = {
                "project": PROJECT,
                "zone": ZONE,
                "endpoint": fake.url,
                "credentials": AnonymousCredentials(),  # type: ignore[no-untyped-call]
                "poll_interval": 0.02,
            }
            try:
                yield
            finally:
                self._fake, self._config = None, {}

    def connect(self, **options: Any) -> Provider:
        # Ten tries over up to a minute ride out a 10 s storm of 429s with full jitter.
        settings = {**self._config, "retry_attempts": 10, "retry_timeout": 60.0, **options}
        return vmkit.connect("gcp", **settings)

    # ----------------------------------------------------------------- census

    def census(self, workload: str) -> Census:
        fake = self.fake
        replica = re.compile(rf"^{re.escape(workload)}-(\d+)$")
        boot = re.compile(rf"^{re.escape(workload)}-\d+")
        with fake.lock:
            state = fake.state
            now = state.now()
            instances = [
                i
                for i in state.instances_in(PROJECT, ZONE)
                if i.labels.get(WORKLOAD_TAG) == workload
            ]
            firewalls = [
                f
                for (project, name), f in state.firewalls.items()
                if project == PROJECT and name == f"vmkit-{workload}" and not f.timeline.gone(now)
            ]
            disks = [
                d
                for d in state.disks_in(PROJECT, ZONE)
                if d.labels.get(WORKLOAD_TAG) == workload or boot.match(d.name)
            ]
            loose = sum(not state.disk_users(d) for d in disks)
        replicas = []
        for inst in instances:
            match = replica.match(inst.name)
            replicas.append(int(match.group(1)) if match else None)
        resources = {"firewall": len(firewalls), "disk": len(disks)}
        return Census(
            replicas=tuple(sorted(replicas, key=lambda r: (r is None, r or 0))),
            resources={kind: n for kind, n in sorted(resources.items()) if n},
            orphans=loose + (0 if instances else len(firewalls)),
        )

    # ------------------------------------------------------------------ knobs

    def limit(self, machines: int) -> None:
        """A regional CPUS quota with room for ``machines`` instances of the checks' type."""
        fake = self.fake
        offered = set(fake.state.machine_types)
        chosen = resolve_instance_type("gcp", Resources(), arch="x86_64", available=offered)
        fake.set_quota(cpus=machines * fake.state.machine_types[chosen.name].guest_cpus)

    def allow(self) -> None:
        self.fake.set_quota(cpus=None)

    def hold(self) -> None:
        self.fake.hold_provisioning()

    def release(self) -> None:
        self.fake.release_provisioning()

    def protect(self, workload: str, replica: int) -> None:
        """instances.setDeletionProtection on the replica's instance."""
        self._protection(f"{workload}-{replica}", True)

    def unprotect(self, workload: str, replica: int) -> None:
        self._protection(f"{workload}-{replica}", False)

    def _protection(self, instance: str, protected: bool) -> None:
        from google.cloud import compute_v1

        clients = make_clients(self.fake)
        request = compute_v1.SetDeletionProtectionInstanceRequest(
            project=PROJECT,
            zone=ZONE,
            resource=instance,
            deletion_protection=protected,
            request_id=str(uuid.uuid4()),
        )
        op = clients.instances.set_deletion_protection_unary(request=request)
        clients.zone_operations.wait(project=PROJECT, zone=ZONE, operation=op.name)

    def leak(self, workload: str) -> int:
        """What a process killed mid-deploy or mid-restore leaves, made through the
        real SDK clients: the workload's firewall rule as vmkit makes it, the disk a
        restore made from a snapshot but never attached, and the old boot disk a
        restore detached but never deleted."""
        from google.cloud import compute_v1

        clients = make_clients(self.fake)
        rule = f"vmkit-{workload}"
        firewall = compute_v1.Firewall(
            name=rule,
            description=f"vmkit workload {workload}: declared ports only",
            network="global/networks/default",
            direction="INGRESS",
            priority=1000,
            allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["80"])],
            source_ranges=["0.0.0.0/0"],
            target_tags=[rule],
        )
        op = clients.firewalls.insert_unary(project=PROJECT, firewall_resource=firewall)
        clients.global_operations.wait(project=PROJECT, operation=op.name)
        labels = {WORKLOAD_TAG: workload}
        self._disk(clients, compute_v1.Disk(name=f"{workload}-0-1f2e3d4c", labels=labels))
        self._disk(
            clients,
            compute_v1.Disk(name=f"{workload}-1", labels=labels, source_image=IMAGE_FAMILY),
        )
        return 3

    def _disk(self, clients: GceClients, disk: Any) -> None:
        op = clients.disks.insert_unary(project=PROJECT, zone=ZONE, disk_resource=disk)
        clients.zone_operations.wait(project=PROJECT, zone=ZONE, operation=op.name)
