"""Credentials and the API client, resolved the way kubectl resolves them.

Order: an explicit ``host`` (with ``token``); else a kubeconfig (the
``kubeconfig`` option, else ``$KUBECONFIG``, else ``~/.kube/config``) and its
``context``; else the in-cluster service account. The namespace is the
explicit one, else the context's (kubectl's ``--namespace`` resolution),
else the service account's, else ``default``.

Client facts this relies on (kubernetes 36, kubernetes/client/configuration.py
``auth_settings`` and issue kubernetes-client/python#2595): the bearer token
is read from ``api_key["BearerToken"]`` with ``api_key_prefix["BearerToken"]``;
a prefix keyed ``"authorization"`` is ignored, which would send the token
without ``Bearer`` and get 401 from a real API server. The kubeconfig and
in-cluster loaders store ``"Bearer <token>"`` under that key themselves
(kubernetes/config/kube_config.py ``_load_user_token``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from vmkit.errors import ConfigError

__all__ = ["Connection", "credentials_problem", "open_connection"]

# The in-cluster service account's files (kubernetes/config/incluster_config.py,
# and the namespace file kubectl reads: "Accessing the Kubernetes API from a Pod",
# https://kubernetes.io/docs/tasks/run-application/access-api-from-pod/).
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_KUBECONFIG = "~/.kube/config"

Kubeconfig = str | os.PathLike[str] | Mapping[str, Any]


@dataclass(frozen=True)
class Connection:
    """A ready API client and where it points."""

    api_client: Any
    namespace: str
    #: ``<context>/<namespace>``, ``<host:port>/<namespace>`` or ``in-cluster/<namespace>``
    location: str


def _kubeconfig_source(kubeconfig: Kubeconfig | None) -> Kubeconfig | None:
    """The kubeconfig to use: the option, else $KUBECONFIG, else ~/.kube/config
    when it exists; None when there is none."""
    if kubeconfig is not None:
        return kubeconfig
    from_env = os.environ.get("KUBECONFIG")
    if from_env:
        return from_env
    default = Path(DEFAULT_KUBECONFIG).expanduser()
    return str(default) if default.is_file() else None


def _in_cluster() -> bool:
    return (
        bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        and (SERVICE_ACCOUNT_DIR / "token").is_file()
    )


def _context(source: Kubeconfig, context: str | None) -> dict[str, Any]:
    """The kubeconfig context entry (``{"name": ..., "context": {...}}``) named
    ``context``, else the current one."""
    if isinstance(source, Mapping):
        contexts = [dict(c) for c in source.get("contexts") or [] if isinstance(c, Mapping)]
        current = next(
            (c for c in contexts if c.get("name") == source.get("current-context")), None
        )
    else:
        found, current = config.list_kube_config_contexts(config_file=os.fspath(source))
        contexts = [dict(c) for c in found]
    if context is None:
        if current is None:
            raise ConfigException("kubeconfig has no current-context; pass context=")
        return dict(current)
    for entry in contexts:
        if entry.get("name") == context:
            return entry
    raise ConfigException(f"kubeconfig has no context named {context!r}")


def _load_kubeconfig(source: Kubeconfig, context: str | None, configuration: Any) -> None:
    # persist_config=False: vmkit never writes refreshed tokens back into the
    # user's kubeconfig file.
    if isinstance(source, Mapping):
        config.load_kube_config_from_dict(
            dict(source),
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    else:
        config.load_kube_config(
            config_file=os.fspath(source),
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )


def _set_token(configuration: Any, token: str) -> None:
    configuration.api_key = {"BearerToken": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    # A kubeconfig's exec/auth-provider hook would put its own token back.
    configuration.refresh_api_key_hook = None


def open_connection(
    *,
    namespace: str | None,
    context: str | None,
    kubeconfig: Kubeconfig | None,
    host: str | None,
    token: str | None,
    verify_ssl: bool,
    ca_cert: str | None,
    pool_size: int,
) -> Connection:
    """Resolve credentials and build the client. No API call (a kubeconfig's
    exec plugin, if any, runs now as it does for kubectl). Raises ConfigError
    when nothing resolves; the message never contains a credential."""
    configuration = client.Configuration()
    where: str
    context_namespace: str | None = None
    try:
        if host is not None:
            configuration.host = host.rstrip("/")
            where = urlsplit(configuration.host).netloc or configuration.host
        else:
            source = _kubeconfig_source(kubeconfig)
            if source is not None:
                entry = _context(source, context)
                _load_kubeconfig(source, context, configuration)
                where = str(entry.get("name") or "kubeconfig")
                context_namespace = (entry.get("context") or {}).get("namespace")
            elif _in_cluster():
                config.load_incluster_config(client_configuration=configuration)
                where = "in-cluster"
                ns_file = SERVICE_ACCOUNT_DIR / "namespace"
                if ns_file.is_file():
                    context_namespace = ns_file.read_text(encoding="utf-8").strip() or None
            else:
                raise ConfigError(
                    "kubernetes: no credentials: pass host= and token=, a kubeconfig "
                    "(kubeconfig=, $KUBECONFIG or ~/.kube/config), or run in a cluster"
                )
    # The client's loaders yaml.safe_load the kubeconfig and let a YAMLError
    # through (KubeConfigMerger.load_config, kubernetes/config/kube_config.py).
    except (ConfigException, OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"kubernetes: cannot load the configuration: {exc}") from exc
    if token is not None:
        _set_token(configuration, token)
    if not verify_ssl:
        configuration.verify_ssl = False
    if ca_cert is not None:
        configuration.ssl_ca_cert = ca_cert
    # vmkit's retry.py is the one retry policy: urllib3's default Retry(3)
    # would otherwise retry 429s (honouring Retry-After) and resets underneath
    # it, unseen and uncounted (kubernetes/client/rest.py passes
    # Configuration.retries to the PoolManager).
    configuration.retries = False
    # One pooled connection per concurrent request (urllib3 keeps 4 by default
    # and drops the rest after each use).
    configuration.connection_pool_maxsize = pool_size
    resolved = namespace or context_namespace or "default"
    return Connection(client.ApiClient(configuration), resolved, f"{where}/{resolved}")


def credentials_problem(
    *,
    context: str | None,
    kubeconfig: Kubeconfig | None,
    host: str | None,
    token: str | None,
) -> str | None:
    """None when credentials resolve, else why not. No API call and no
    exec plugin run: only the kubeconfig's contexts are read."""
    if host is not None:
        return None if token else f"no token given for host {host} (requests would be anonymous)"
    source = _kubeconfig_source(kubeconfig)
    if source is not None:
        try:
            _context(source, context)
        except (ConfigException, OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
            return f"kubeconfig: {exc}"
        return None
    if _in_cluster():
        return None
    return "no kubeconfig ($KUBECONFIG, ~/.kube/config) and not running in a cluster"
