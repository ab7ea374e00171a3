"""Amazon EC2 backend: ``vmkit.connect("aws", region=...)``.

Importing this package imports boto3; that is what lets the registry answer
``pip install "vmkit[aws]"`` when boto3 is missing. ``import vmkit`` alone
never imports it.
"""

from __future__ import annotations

from vmkit.providers.aws.provider import AwsProvider

__all__ = ["AwsProvider"]
