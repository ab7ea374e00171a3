"""Real Azure SDK clients pointed at a running :class:`AzureFake`.

Azure's bearer-token policy refuses plain-http URLs: ``_enforce_https`` in
``azure/core/pipeline/policies/_authentication.py`` raises ServiceRequestError
unless the pipeline context carries ``enforce_https=False`` (a per-request option
it moves into the context). The supported way to keep bearer auth against an
``http://127.0.0.1`` endpoint is therefore to give the client its own
``authentication_policy`` that sets that context entry before authorising, which
also covers the long-running-operation polls. A ``Retry-After: 0`` from the server
counts as absent in azure-core (``_extract_delay`` in ``azure/core/polling/base_polling.py``
tests ``if delay:``), so fast polling needs the client option ``polling_interval=0``.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.pipeline import PipelineRequest
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from vmkit.testing.fakes.azure.server import AzureFake

__all__ = [
    "ARM_SCOPE",
    "AzureClients",
    "PlainHttpBearerPolicy",
    "StaticTokenCredential",
    "client_options",
    "make_clients",
]

ARM_SCOPE = "https://management.azure.com/.default"


class StaticTokenCredential:
    """A ``TokenCredential`` that always returns the same bearer token."""

    def __init__(self, token: str = "fake-arm-token", lifetime: int = 3600) -> None:
        self.token = token
        self.lifetime = lifetime
        #: scopes requested so far, so a test can check what the client asked for
        self.requested: list[tuple[str, ...]] = []

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """A token valid for ``lifetime`` seconds."""
        self.requested.append(scopes)
        return AccessToken(self.token, int(time.time()) + self.lifetime)


class PlainHttpBearerPolicy(ARMChallengeAuthenticationPolicy):
    """ARM bearer authentication that is also allowed over plain http (test endpoints)."""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        request.context["enforce_https"] = False
        super().on_request(request)


def client_options(
    fake: AzureFake, credential: TokenCredential | None = None, **overrides: Any
) -> dict[str, Any]:
    """Keyword arguments for any azure-mgmt client so that it talks to ``fake``:
    ``base_url``, a plain-http bearer policy around ``credential`` (a
    :class:`StaticTokenCredential` holding the fake's token by default) and
    ``polling_interval=0``. ``overrides`` (e.g. ``retry_total``) win."""
    if credential is None:
        credential = StaticTokenCredential(fake.token or "fake-arm-token")
    options: dict[str, Any] = {
        "base_url": fake.url,
        "authentication_policy": PlainHttpBearerPolicy(credential, ARM_SCOPE),
        "polling_interval": 0,
    }
    options.update(overrides)
    return options


class AzureClients(NamedTuple):
    """The three real management clients of one subscription."""

    compute: ComputeManagementClient
    network: NetworkManagementClient
    resources: ResourceManagementClient


def make_clients(
    fake: AzureFake,
    subscription_id: str,
    credential: TokenCredential | None = None,
    **overrides: Any,
) -> AzureClients:
    """The real ComputeManagementClient, NetworkManagementClient and
    ResourceManagementClient configured for ``fake`` (see :func:`client_options`)."""
    if credential is None:
        credential = StaticTokenCredential(fake.token or "fake-arm-token")
    token_credential: TokenCredential = credential

    def options() -> dict[str, Any]:
        # One policy object per client: a policy instance caches its token.
        return client_options(fake, token_credential, **overrides)

    return AzureClients(
        ComputeManagementClient(token_credential, subscription_id, **options()),
        NetworkManagementClient(token_credential, subscription_id, **options()),
        ResourceManagementClient(token_credential, subscription_id, **options()),
    )
