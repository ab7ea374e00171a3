"""The firewall rule a workload owns on Compute Engine: ``vmkit-<workload>``."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from google.cloud import compute_v1

from vmkit.errors import NotFound, ProviderError
from vmkit.providers.gcp import translate as tr
from vmkit.providers.gcp.errors import error_reasons
from vmkit.spec import Workload

if TYPE_CHECKING:
    from vmkit.providers.gcp.provider import GcpProvider

__all__ = ["Firewalls"]

log = logging.getLogger(__name__)

#: Polls for a rule that a racing caller's insert is still making.
SETTLE_POLLS = 20


class Firewalls:
    """Create, converge and delete the workload's rule through the provider's
    retried, counted calls."""

    def __init__(self, provider: GcpProvider) -> None:
        self._p = provider

    def _get(self, name: str) -> dict[str, Any] | None:
        try:
            rule = self._p._sdk(
                "compute:firewalls.get",
                self._p.clients.firewalls.get,
                project=self._p.project,
                firewall=name,
            )
        except NotFound:
            return None
        return self._p.to_json(rule)

    def ensure(self, workload: Workload) -> None:
        """Make ``vmkit-<workload>`` allow exactly the declared ingress (or not
        exist when nothing is declared). Idempotent; waits for the change."""
        options = tr.parse_options(workload)
        wanted = tr.firewall_body(
            workload, network=self._p.network, source_ranges=options.source_ranges
        )
        name = tr.firewall_name(workload.name)
        existing = self._get(name)
        if wanted is None:
            if existing is not None:
                self.delete(workload.name)
            return
        resource = compute_v1.Firewall.from_json(json.dumps(wanted))
        if existing is None:
            try:
                op = self._p._sdk(
                    "compute:firewalls.insert",
                    self._p.clients.firewalls.insert_unary,
                    request_type=compute_v1.InsertFirewallRequest,
                    project=self._p.project,
                    firewall_resource=resource,
                    request_id=str(uuid.uuid4()),
                )
            except ProviderError as exc:
                if "alreadyExists" not in error_reasons(exc):
                    raise
                # A deploy racing this one inserted it first (409 alreadyExists).
                existing = self._settled(name)
                if existing is None or not tr.firewall_differs(existing, wanted):
                    return
                op = self._update(name, resource)
        elif tr.firewall_differs(existing, wanted):
            op = self._update(name, resource)
        else:
            return
        self._p.wait_operation(op, "compute:firewalls", name)

    def _update(self, name: str, resource: Any) -> Any:
        # update (PUT) replaces the whole rule, so fields added by hand go too.
        return self._p._sdk(
            "compute:firewalls.update",
            self._p.clients.firewalls.update_unary,
            request_type=compute_v1.UpdateFirewallRequest,
            project=self._p.project,
            firewall=name,
            firewall_resource=resource,
            request_id=str(uuid.uuid4()),
        )

    def _settled(self, name: str) -> dict[str, Any] | None:
        """The rule another caller is inserting, once its insert is done (a
        rule shows only then); None if it does not show within a few polls."""
        for _ in range(SETTLE_POLLS):
            existing = self._get(name)
            if existing is not None:
                return existing
            time.sleep(min(self._p.poll_interval, 1.0))
        return None

    def delete_unused(self, workload: str) -> None:
        """Delete the workload's rule unless an instance of the workload, in
        any zone of the project, may still use it. Raises the listing's error
        (the rule is kept then)."""
        if workload in self._p._live_workloads(workload):
            log.info("gcp: keeping the firewall rule of %s: other zones still use it", workload)
            return
        self.delete(workload)

    def delete(self, workload: str, *, wait: bool = True) -> None:
        """Delete the workload's rule; a missing rule is not an error."""
        name = tr.firewall_name(workload)
        try:
            op = self._p._sdk(
                "compute:firewalls.delete",
                self._p.clients.firewalls.delete_unary,
                request_type=compute_v1.DeleteFirewallRequest,
                project=self._p.project,
                firewall=name,
                request_id=str(uuid.uuid4()),
            )
        except NotFound:
            return
        if wait:
            try:
                self._p.wait_operation(op, "compute:firewalls.delete", name)
            except NotFound:
                return
