"""The three azure-mgmt clients vmkit uses, configured for vmkit's retry policy, and the
placeholder credential of ``auth="anonymous"``.

* ``retry_total=0``: azure-core's RetryPolicy (``azure/core/pipeline/policies/_retry.py``,
  option ``retry_total``) would otherwise retry 429/5xx and dropped answers underneath
  vmkit's own policy, multiplying attempts; vmkit.retry is the one policy.
* ``polling_interval``: the wait between polls of a long-running operation when ARM sends
  no Retry-After (azure-core treats ``Retry-After: 0`` as absent, ``_extract_delay`` in
  ``azure/core/polling/base_polling.py``); the SDK's default is 30 s.
* An ``http://`` endpoint (a private test endpoint, an emulator) gets
  :class:`PlainHttpBearerPolicy`: azure-core's bearer policy refuses to send a token
  over plain http unless the request context says ``enforce_https=False``
  (``_enforce_https`` in ``azure/core/pipeline/policies/_authentication.py``).
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

__all__ = [
    "ARM_SCOPE",
    "AnonymousCredential",
    "AzureClients",
    "PlainHttpBearerPolicy",
    "make_clients",
]

ARM_SCOPE = "https://management.azure.com/.default"


class PlainHttpBearerPolicy(ARMChallengeAuthenticationPolicy):
    """ARM bearer authentication that may also go over plain http.

    Used only when the user gives an ``http://`` endpoint: the token then travels in
    clear text, which is what such an endpoint asks for (a local emulator or fake).
    """

    def on_request(self, request: PipelineRequest[Any]) -> None:
        request.context["enforce_https"] = False
        super().on_request(request)


class AzureClients(NamedTuple):
    """Compute, Network and Resources clients of one subscription."""

    compute: ComputeManagementClient
    network: NetworkManagementClient
    resources: ResourceManagementClient


def make_clients(
    credential: TokenCredential,
    subscription_id: str,
    *,
    endpoint: str | None,
    polling_interval: float | None,
) -> AzureClients:
    """Clients for ``subscription_id``; with ``endpoint``, every call goes there."""

    def options() -> dict[str, Any]:
        kwargs: dict[str, Any] = {"retry_total": 0}
        if polling_interval is not None:
            kwargs["polling_interval"] = polling_interval
        if endpoint is not None:
            kwargs["base_url"] = endpoint.rstrip("/")
            scopes = [ARM_SCOPE]
            if endpoint.lower().startswith("http://"):
                # One policy per client: a policy instance caches its token.
                kwargs["authentication_policy"] = PlainHttpBearerPolicy(credential, *scopes)
        return kwargs

    return AzureClients(
        ComputeManagementClient(credential, subscription_id, **options()),
        NetworkManagementClient(credential, subscription_id, **options()),
        ResourceManagementClient(credential, subscription_id, **options()),
    )


class AnonymousCredential:
    """A ``TokenCredential`` for ``auth="anonymous"``: the same placeholder bearer
    token, ``anonymous``, for every scope. ARM's protocol sends a bearer token on
    every call (azure-core's BearerTokenCredentialPolicy asks the credential for
    one), so an emulator gets one that is no secret and grants nothing."""

    TOKEN = "anonymous"
    # One day: azure-core asks again only when a token is about to expire.
    LIFETIME = 86400

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """The placeholder token, valid for a day from now."""
        return AccessToken(self.TOKEN, int(time.time()) + self.LIFETIME)
