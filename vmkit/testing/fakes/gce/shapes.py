"""Small pieces of the compute v1 REST shapes: links, ids, times, fingerprints, errors.

The real API answers with ``https://www.googleapis.com/compute/v1/...`` links
whatever endpoint was called, timestamps in US Pacific time with a numeric
offset and milliseconds, int64 fields as JSON strings and 8-byte base64
fingerprints; the fake does the same so a backend that only works with UTC
"Z" times or with links that point at the endpoint it called is caught.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LINK_BASE",
    "Ref",
    "RefError",
    "fingerprint",
    "google_error",
    "parse_ref",
    "rfc3339",
]

LINK_BASE = "https://www.googleapis.com/compute/v1"

# Resource names are RFC 1035 labels; the API quotes this regex in its 400s
# ("Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'",
# googleapis/nodejs-compute#765).
NAME_REGEX = "(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)"
NAME_RE = re.compile(f"^{NAME_REGEX}$")

# The fingerprint of an empty label/tag set as every real resource shows it
# ("labelFingerprint": "42WmSpB8rSM=" on unlabelled instances, disks, addresses).
EMPTY_FINGERPRINT = "42WmSpB8rSM="

try:
    from zoneinfo import ZoneInfo

    _PACIFIC: dt.tzinfo = ZoneInfo("America/Los_Angeles")
except Exception:  # no tz database on this machine: a fixed offset keeps the format
    _PACIFIC = dt.timezone(dt.timedelta(hours=-8))


def rfc3339(ts: float) -> str:
    """``2024-06-26T11:42:22.006-07:00``: the format of creationTimestamp,
    insertTime... (seen in operation dumps, e.g. CCExtractor/sample-platform#901)."""
    return dt.datetime.fromtimestamp(ts, _PACIFIC).isoformat(timespec="milliseconds")


def fingerprint(value: Any) -> str:
    """An 8-byte URL-safe base64 fingerprint of ``value``; empty -> the API's constant."""
    if not value:
        return EMPTY_FINGERPRINT
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest[:8]).decode()


def google_error(
    status: int,
    message: str,
    reason: str,
    *,
    domain: str = "global",
    location: str | None = None,
    location_type: str | None = None,
) -> dict[str, Any]:
    """The compute v1 error body: ``{"error": {"code", "message", "errors": [...]}}``.

    Shape as returned for a stale label fingerprint (googleapis/google-cloud-go#7802):
    code, message and one ``errors`` item with message, domain, reason and,
    for header preconditions, location/locationType.
    """
    item: dict[str, Any] = {"message": message, "domain": domain, "reason": reason}
    if location is not None:
        item["location"] = location
    if location_type is not None:
        item["locationType"] = location_type
    return {"error": {"code": status, "message": message, "errors": [item]}}


class RefError(ValueError):
    """A resource reference that cannot be parsed."""


@dataclass(frozen=True)
class Ref:
    """A parsed resource reference (full URL, partial URL or short path)."""

    project: str | None
    zone: str | None
    region: str | None
    is_global: bool
    collection: str
    name: str
    family: bool = False


def parse_ref(value: str, collection: str) -> Ref:
    """Parse ``https://.../compute/v1/projects/P/zones/Z/machineTypes/N``,
    ``projects/P/zones/Z/machineTypes/N`` or ``zones/Z/machineTypes/N`` (the
    forms the API accepts for references, "full or partial URL"). Image family
    references ``.../global/images/family/F`` set ``family``."""
    path = re.sub(r"^https?://[^/]+", "", value.strip())
    path = re.sub(r"^/?compute/(?:v1|beta|alpha)/", "", path).strip("/")
    parts = path.split("/")
    project = zone = region = None
    is_global = False
    i = 0
    while i < len(parts):
        head = parts[i]
        if head == "projects" and i + 1 < len(parts):
            project, i = parts[i + 1], i + 2
        elif head == "zones" and i + 1 < len(parts) and i + 2 < len(parts):
            zone, i = parts[i + 1], i + 2
        elif head == "regions" and i + 1 < len(parts) and i + 2 < len(parts):
            region, i = parts[i + 1], i + 2
        elif head == "global":
            is_global, i = True, i + 1
        else:
            break
    rest = parts[i:]
    family = False
    if collection == "images" and len(rest) == 3 and rest[:2] == ["images", "family"]:
        rest, family = ["images", rest[2]], True
    if len(rest) != 2 or rest[0] != collection or not rest[1]:
        raise RefError(value)
    return Ref(project, zone, region, is_global, collection, rest[1], family)
