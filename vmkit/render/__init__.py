"""Workload -> what a backend sends: cloud-init user data (VMs), a Pod manifest
(Kubernetes). Pure functions, no cloud call."""

from __future__ import annotations

from vmkit.render.cloud_init import render_cloud_init
from vmkit.render.pod import render_pod

__all__ = ["render_cloud_init", "render_pod"]
