"""The four simulated clouds as servers, for pipelines that run in other processes.

This is what ``vmkit sim serve`` runs. :func:`serve_simulated_clouds` starts, on
127.0.0.1, moto's server behind vmkit's EC2 front (see
:func:`vmkit.testing.fakes.aws.simulated_aws_server`) and the Compute Engine, Azure
and Kubernetes fakes, then writes a targets file naming one target per cloud
(:data:`SIM_TARGETS`) and a kubeconfig for the Kubernetes one::

    with serve_simulated_clouds() as session:
        print(session.shell())  # export VMKIT_CONFIG=... and the AWS fake credentials
        wait_for_sigterm()

Any process with :attr:`SimSession.environment` then reaches the simulated clouds
through the ordinary targets (``vmkit deploy web.yaml --on sim-aws``). The targets
file holds no secret, as every targets file: AWS takes the fake credentials from
the environment, Compute Engine and Azure are reached with ``auth: anonymous`` (only
allowed with an explicit ``endpoint``), and the Kubernetes token is in the
kubeconfig (mode 0600), as it would be for a real cluster.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmkit.errors import ConfigError

__all__ = [
    "MARKER",
    "SIM_TARGETS",
    "SimSession",
    "client_environment",
    "serve_simulated_clouds",
]

#: The target each simulated cloud gets in the targets file, by provider name.
SIM_TARGETS: Mapping[str, str] = {
    "aws": "sim-aws",
    "gcp": "sim-gcp",
    "azure": "sim-azure",
    "kubernetes": "sim-k8s",
}

#: The first line of a targets file the simulator writes: it overwrites only such
#: a file, so that ``--targets-file vmkit.yaml`` cannot clobber a real one.
MARKER = "# Written by `vmkit sim serve`"

_KUBE_CONTEXT = "vmkit-sim"


def client_environment(targets_file: Path) -> dict[str, str | None]:
    """The environment a client of the simulated clouds needs (None: unset).

    ``VMKIT_CONFIG`` names the targets file; the rest is what boto3 needs to
    sign its requests with fake credentials and to read no profile, config
    file or endpoint of the developer's (:data:`vmkit.testing.sim.
    AWS_SIM_ENVIRONMENT` without moto's own settings, which only the server
    reads).
    """
    from vmkit.testing.sim import AWS_SIM_ENVIRONMENT

    environment: dict[str, str | None] = {"VMKIT_CONFIG": str(targets_file)}
    environment.update(
        (key, value) for key, value in AWS_SIM_ENVIRONMENT.items() if not key.startswith("MOTO_")
    )
    return environment


@dataclass(frozen=True)
class SimSession:
    """What a running simulation wrote and what its clients need."""

    #: The targets file naming :data:`SIM_TARGETS`.
    targets_file: Path
    #: The kubeconfig the Kubernetes target names (it holds the fake's token).
    kubeconfig: Path
    #: Each target's options as written in the targets file, ``provider`` first.
    targets: Mapping[str, Mapping[str, Any]]
    #: The URL each target's API is served at.
    endpoints: Mapping[str, str]
    #: The environment of a client: a value to set, or None for a variable to unset.
    environment: Mapping[str, str | None]

    def shell(self) -> str:
        """POSIX shell lines that set up a client: ``export K=V`` and ``unset K``."""
        lines = []
        for key, value in self.environment.items():
            lines.append(f"unset {key}" if value is None else f"export {key}={shlex.quote(value)}")
        return "\n".join(lines) + "\n"

    def dotenv(self) -> str:
        """``KEY=VALUE`` lines, the variables to set only (the format of
        ``$GITHUB_ENV`` and ``docker --env-file``; such files cannot unset)."""
        return "".join(f"{k}={v}\n" for k, v in self.environment.items() if v is not None)

    def to_dict(self) -> dict[str, Any]:
        """``{"targets_file", "kubeconfig", "targets", "endpoints", "environment"}``;
        ``environment`` maps a variable to unset to null."""
        return {
            "targets_file": str(self.targets_file),
            "kubeconfig": str(self.kubeconfig),
            "targets": list(self.targets),
            "endpoints": dict(self.endpoints),
            "environment": dict(self.environment),
        }


def _check_writable(path: Path) -> None:
    """Refuse to overwrite a targets file the simulator did not write."""
    if not path.exists():
        return
    try:
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    except (OSError, UnicodeDecodeError):
        first = ""
    if not first.startswith(MARKER):
        raise ConfigError(
            f"--targets-file {path}: the file exists and was not written by vmkit sim "
            "serve; it is left alone: name another file, or delete it"
        )


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, replacing ``path`` at once."""
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(partial, path)


def _render_kubeconfig(host: str, token: str, namespace: str) -> str:
    import yaml

    # The kubeconfig layout of "Organizing Cluster Access Using kubeconfig Files"
    # (https://kubernetes.io/docs/concepts/configuration/organize-cluster-access-kubeconfig/):
    # a cluster (server), a user (token) and a context joining them.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": _KUBE_CONTEXT, "cluster": {"server": host}}],
        "users": [{"name": _KUBE_CONTEXT, "user": {"token": token}}],
        "contexts": [
            {
                "name": _KUBE_CONTEXT,
                "context": {
                    "cluster": _KUBE_CONTEXT,
                    "user": _KUBE_CONTEXT,
                    "namespace": namespace,
                },
            }
        ],
        "current-context": _KUBE_CONTEXT,
    }
    return str(yaml.safe_dump(config, sort_keys=False))


def _targets(
    configs: Mapping[str, Mapping[str, Any]], kubeconfig: Path
) -> dict[str, dict[str, Any]]:
    """The targets file's entries for the clouds' ``connect()`` configs: every
    option but the credentials, which the environment, ``auth: anonymous`` and
    the kubeconfig stand for."""
    aws = dict(configs["aws"])
    gcp = dict(configs["gcp"])
    azure = dict(configs["azure"])
    kubernetes = configs["kubernetes"]
    for key in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
        aws.pop(key, None)
    gcp.pop("credentials", None)
    azure.pop("credential", None)
    return {
        SIM_TARGETS["aws"]: {"provider": "aws", **aws},
        SIM_TARGETS["gcp"]: {"provider": "gcp", **gcp, "auth": "anonymous"},
        SIM_TARGETS["azure"]: {"provider": "azure", **azure, "auth": "anonymous"},
        SIM_TARGETS["kubernetes"]: {
            "provider": "kubernetes",
            "kubeconfig": str(kubeconfig),
            "context": _KUBE_CONTEXT,
            "poll_interval": kubernetes["poll_interval"],
        },
    }


def _render_targets(targets: Mapping[str, Mapping[str, Any]]) -> str:
    import yaml

    header = (
        f"{MARKER} (pid {os.getpid()}): simulated clouds on 127.0.0.1.\n"
        "# Removed when it stops; it holds no secret (see docs/sim.md).\n"
    )
    body = yaml.safe_dump(
        {name: dict(options) for name, options in targets.items()},
        sort_keys=False,
        default_flow_style=False,
    )
    return header + body


@contextmanager
def serve_simulated_clouds(
    targets_file: Path | None = None, *, latency: float = 0.0
) -> Iterator[SimSession]:
    """Serve the four simulated clouds on 127.0.0.1 until the block ends.

    Each cloud starts empty; ``latency`` seconds are added before every answer
    (a real cloud API takes tens to hundreds of milliseconds). The targets
    file goes to ``targets_file`` (a fresh temporary directory's
    ``vmkit.yaml`` when None) and the kubeconfig next to it
    (``<stem>.kubeconfig``); both are written only once every cloud serves
    and are removed first on the way out, so while they exist the clouds
    answer. Raises ConfigError when ``targets_file`` exists and the simulator
    did not write it, and ConfigError naming the extras when a cloud's SDK or
    moto is not installed.
    """
    with ExitStack() as stack:
        if targets_file is None:
            directory = Path(tempfile.mkdtemp(prefix="vmkit-sim-"))
            stack.callback(shutil.rmtree, directory, ignore_errors=True)
            targets_file = directory / "vmkit.yaml"
        targets_file = targets_file.expanduser().absolute()
        _check_writable(targets_file)
        kubeconfig = targets_file.with_name(f"{targets_file.stem}.kubeconfig")
        if latency < 0:
            raise ConfigError(f"latency must be 0 or more seconds, got {latency}")
        configs = _start_clouds(stack, latency)
        kube = configs["kubernetes"]
        targets = _targets(configs, kubeconfig)
        # The files go last in, first out: removed before the clouds stop.
        _write_private(
            kubeconfig, _render_kubeconfig(kube["host"], kube["token"], kube["namespace"])
        )
        stack.callback(kubeconfig.unlink, missing_ok=True)
        _write_private(targets_file, _render_targets(targets))
        stack.callback(targets_file.unlink, missing_ok=True)
        endpoints = {
            SIM_TARGETS["aws"]: configs["aws"]["endpoint_url"],
            SIM_TARGETS["gcp"]: configs["gcp"]["endpoint"],
            SIM_TARGETS["azure"]: configs["azure"]["endpoint"],
            SIM_TARGETS["kubernetes"]: kube["host"],
        }
        yield SimSession(
            targets_file=targets_file,
            kubeconfig=kubeconfig,
            targets=targets,
            endpoints=endpoints,
            environment=client_environment(targets_file),
        )


def _start_clouds(stack: ExitStack, latency: float) -> dict[str, dict[str, Any]]:
    """Start each simulated cloud on ``stack``; ``{provider: connect() config}``."""
    try:
        from vmkit.testing.fakes.aws import simulated_aws_server
        from vmkit.testing.fakes.azure.server import AzureFake
        from vmkit.testing.fakes.azure.sim import simulated_azure
        from vmkit.testing.faults import FaultPlan
        from vmkit.testing.sim import simulated_gcp, simulated_kubernetes
    except ImportError as exc:
        raise ConfigError(
            f'vmkit sim needs every SDK and moto: pip install "vmkit[all,testing]" ({exc})'
        ) from exc

    def delays() -> FaultPlan:
        plan = FaultPlan()
        if latency > 0:
            plan.delay(latency)
        return plan

    # No token set: the Azure fake takes any bearer token, the placeholder of
    # auth "anonymous" included (vmkit/testing/fakes/azure/core.py, the token check).
    azure_fake = stack.enter_context(AzureFake(lro_delay=0.02, faults=delays()))
    return {
        "aws": stack.enter_context(simulated_aws_server(faults=delays())),
        "gcp": stack.enter_context(simulated_gcp(faults=delays())),
        "azure": stack.enter_context(simulated_azure(fake=azure_fake)),
        "kubernetes": stack.enter_context(simulated_kubernetes(faults=delays())),
    }
