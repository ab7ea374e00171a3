"""Compute Engine backend: ``vmkit.connect("gcp", project=..., zone=...)``.

Importing this package imports google-cloud-compute; that is what lets the
registry answer ``pip install "vmkit[gcp]"`` when it is missing. ``import
vmkit`` alone never imports it.
"""

from __future__ import annotations

from vmkit.providers.gcp.provider import GcpProvider

__all__ = ["GcpProvider"]
