"""Garbage collection: what :meth:`vmkit.Provider.gc` does with a backend's
``_orphans`` and ``_delete_orphans``."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from vmkit.errors import ProviderError
from vmkit.machine import Orphan

if TYPE_CHECKING:
    from vmkit.provider import Provider

__all__ = ["collect"]

log = logging.getLogger("vmkit.provider")


def collect(
    provider: Provider,
    workload: str | None,
    *,
    dry_run: bool,
    only: Iterable[Orphan] | None,
) -> list[Orphan]:
    """Find the orphans (of ``workload``), delete them unless ``dry_run``
    (only those also in ``only`` when given), check they are gone, and
    return them. Raises ProviderError naming what is still there."""
    found = sorted(provider._orphans(workload), key=lambda o: (o.workload or "", o.kind, o.name))
    if only is not None:
        # Exactly what the caller saw and confirmed, if it is still orphaned.
        confirmed = {(o.kind, o.id) for o in only}
        found = [o for o in found if (o.kind, o.id) in confirmed]
    if dry_run or not found:
        return found
    log.info("%s: deleting %d orphaned resource(s)", provider.name, len(found))
    provider._delete_orphans(found)
    deleted = {(o.kind, o.id) for o in found}
    left = [o for o in provider._orphans(workload) if (o.kind, o.id) in deleted]
    if left:
        names = ", ".join(f"{o.kind} {o.name}" for o in left)
        raise ProviderError(
            f"gc: still present after deleting: {names}", provider=provider.name, operation="gc"
        )
    return found
