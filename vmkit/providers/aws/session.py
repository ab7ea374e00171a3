"""boto3 sessions that share one botocore data loader.

A new ``boto3.Session`` parses the service models (EC2's is several MB of
JSON) again for its first client: about 100 ms of CPU per ``connect("aws")``,
under the GIL, which a fleet view listing several AWS targets at once pays
one after another. botocore's ``Loader`` caches what it loaded per instance,
so every session vmkit makes uses one loader per data path (what botocore
itself would build for that session, ``botocore.session.Session`` registering
``create_loader(data_path)``): the models are parsed once per process. The
loader only reads files and memoizes them, so sharing it between threads at
worst parses a model twice.
"""

from __future__ import annotations

import threading

import boto3
import botocore.loaders
import botocore.session
from botocore.exceptions import ProfileNotFound

from vmkit.errors import ConfigError

__all__ = ["session"]

_loaders: dict[str | None, botocore.loaders.Loader] = {}
_lock = threading.Lock()


def _loader(data_path: str | None) -> botocore.loaders.Loader:
    with _lock:
        loader = _loaders.get(data_path)
        if loader is None:
            loader = _loaders[data_path] = botocore.loaders.create_loader(data_path)
        return loader


def session(
    *,
    profile: str | None,
    region: str | None,
    aws_access_key_id: str | None,
    aws_secret_access_key: str | None,
    aws_session_token: str | None,
) -> boto3.Session:
    """A boto3 session as ``boto3.Session(...)`` makes it, with the shared loader.

    Raises ConfigError naming a ``profile`` that is not configured.
    """
    core = botocore.session.get_session()
    loader = _loader(core.get_config_variable("data_path"))
    core.register_component("data_loader", loader)
    try:
        made = boto3.Session(
            profile_name=profile,
            region_name=region,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
            botocore_session=core,
        )
        # Reads the profile now, as boto3 does for a session of its own.
        core.get_scoped_config()
    except ProfileNotFound as exc:
        raise ConfigError(f"aws: profile {profile!r} is not configured") from exc
    with _lock:
        # boto3 adds its own data directory to the loader of every session.
        paths = loader.search_paths
        paths[:] = list(dict.fromkeys(paths))
    return made
