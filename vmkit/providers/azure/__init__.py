"""Microsoft Azure backend: ``vmkit.connect("azure", subscription_id=..., resource_group=...,
location=...)``.

Importing this package imports the azure-mgmt SDKs; that is what lets the registry
answer ``pip install "vmkit[azure]"`` when they are missing. ``import vmkit`` alone
never imports them.
"""

from __future__ import annotations

from vmkit.providers.azure.provider import AzureProvider

__all__ = ["AzureProvider"]
