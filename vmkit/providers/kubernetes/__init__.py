"""Kubernetes backend: ``vmkit.connect("kubernetes", context=..., namespace=...)``.

Importing this package imports the official ``kubernetes`` client; that is
what lets the registry answer ``pip install "vmkit[kubernetes]"`` when it is
missing. ``import vmkit`` alone never imports it.
"""

from __future__ import annotations

from vmkit.providers.kubernetes.provider import KubernetesProvider

__all__ = ["KubernetesProvider"]
