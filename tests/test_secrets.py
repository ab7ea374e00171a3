"""Sentinel credentials never show up where a user or a log collector would see them.

Each test gives one simulated cloud a sentinel secret (an AWS secret key and
session token, a GCP OAuth token, an Azure ARM token, a Kubernetes bearer
token), runs real operations and failing ones (NotFound, AuthError,
QuotaExceeded, Throttled, DeployTimeout) with every logger of the process at
DEBUG, drives the CLI, and then looks for the sentinels in every log record
(message and traceback), every exception (str and repr, along the whole
``__cause__``/``__context__`` chain) and every CLI output.

The one leak found is in botocore, not vmkit, and is pinned exactly: at DEBUG,
botocore logs the signed request's headers and canonical request, which hold
``X-Amz-Security-Token`` (the session token) and the access key id. See
:func:`test_aws_secrets_stay_out_of_errors_cli_and_vmkit_logs`.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

import vmkit
from vmkit import registry
from vmkit.cli import cli
from vmkit.errors import (
    AuthError,
    DeployTimeout,
    NotFound,
    QuotaExceeded,
    Throttled,
    VmkitError,
)
from vmkit.provider import Provider
from vmkit.testing.faults import FaultPlan

SENTINEL = "SENTINEL"
WEB = vmkit.Workload(name="web", image="nginx:1.27", replicas=2, ports=[80])


# ----------------------------------------------------------------- the net


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Net:
    """Everything a secret could leak into: log records, exceptions, CLI output."""

    handler: _Records = field(default_factory=_Records)
    errors: list[BaseException] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)
    _saved: dict[str, tuple[int, bool]] = field(default_factory=dict)

    def arm(self) -> None:
        """Every logger at DEBUG, each record reaching the handler.

        Run again after each connect: the kubernetes client's Configuration()
        sets the ``urllib3`` and ``client`` loggers back to WARNING whenever one
        is built (its ``debug`` setter, kubernetes/client/configuration.py).
        """
        loggers = [logging.getLogger()] + [
            item for item in logging.root.manager.loggerDict.values()
            if isinstance(item, logging.Logger)
        ]  # fmt: skip
        for logger in loggers:
            self._saved.setdefault(logger.name, (logger.level, logger.disabled))
            logger.setLevel(logging.DEBUG)
            logger.disabled = False
            reaches_root = logger is not logging.getLogger() and logger.propagate
            if not reaches_root and self.handler not in logger.handlers:
                logger.addHandler(self.handler)

    def disarm(self) -> None:
        for name, (level, disabled) in self._saved.items():
            logger = logging.getLogger(name) if name != "root" else logging.getLogger()
            logger.setLevel(level)
            logger.disabled = disabled
            if self.handler in logger.handlers:
                logger.removeHandler(self.handler)

    def expect(self, kind: type[BaseException], call: Callable[[], Any]) -> BaseException:
        """Run ``call`` (loggers armed first); it must raise ``kind``, which is kept."""
        self.arm()
        with pytest.raises(kind) as info:
            call()
        self.errors.append(info.value)
        return info.value

    def run(self, call: Callable[[], Any]) -> Any:
        self.arm()
        return call()

    def cli(self, *args: str, code: int = 0) -> Result:
        self.arm()
        result = CliRunner().invoke(cli, list(args), env={"COLUMNS": None})
        assert result.exit_code == code, (args, result.output)
        assert "Traceback" not in result.output or "--debug" in args, result.output
        for name in ("stdout", "stderr", "output"):
            self.outputs.append((f"{' '.join(args[:2])} {name}", getattr(result, name)))
        return result

    def saw(self, *loggers: str) -> None:
        """The net did catch DEBUG records of these loggers (so a leak there would show)."""
        names = {record.name for record in self.handler.records}
        for logger in loggers:
            assert any(name.startswith(logger) for name in names), (logger, sorted(names))

    def log_texts(self) -> Iterator[tuple[str, str]]:
        for record in self.handler.records:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += "".join(traceback.format_exception(record.exc_info[1]))
            if record.stack_info:
                text += record.stack_info
            yield record.name, text

    def leaks(self, secret: str = SENTINEL) -> set[tuple[str, str]]:
        """(where, which sentinel) for every place ``secret`` shows up."""
        found: set[tuple[str, str]] = set()

        def scan(where: str, text: str) -> None:
            for match in re.finditer(rf"{re.escape(secret)}[-A-Za-z0-9]*", text):
                found.add((where, match.group()))

        for name, text in self.log_texts():
            scan(f"log {name}", text)
        for error in self.errors:
            for depth, link in enumerate(_chain(error)):
                kind = type(link).__name__
                scan(f"exception {depth} {kind} str", str(link))
                scan(f"exception {depth} {kind} repr", repr(link))
                scan(f"exception {depth} {kind} args", repr(link.args))
            scan("traceback", "".join(traceback.format_exception(error)))
        for where, text in self.outputs:
            scan(f"cli {where}", text)
        return found


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


@pytest.fixture
def net() -> Iterator[Net]:
    caught = Net()
    caught.arm()
    try:
        yield caught
    finally:
        caught.disarm()


def bound(name: str, cls: type[Provider], **fixed: Any) -> str:
    """Register ``cls`` under ``name`` with ``fixed`` options (e.g. a credential
    object, which ``-c key=value`` cannot carry), so the CLI can reach a fake."""

    class Bound(cls):  # type: ignore[valid-type,misc]
        def __init__(self, **options: Any) -> None:
            super().__init__(**{**fixed, **options})

    registry.register(name, Bound)
    return name


def cli_round(net: Net, target: list[str], machine_id: str) -> None:
    """The read commands a user runs, as JSON and as tables, and one that fails."""
    net.cli("ls", *target, "-o", "json")
    net.cli("ls", *target)
    net.cli("show", machine_id, *target, "-o", "json")
    net.cli("show", machine_id, *target)
    net.cli("deploy", str(_spec_file()), *target, "-o", "json")
    net.cli("show", "no-such-machine", *target, code=5)
    net.cli("--debug", "show", "no-such-machine", *target, code=5)


def _spec_file() -> Path:
    path = Path(os.environ.get("PYTEST_SECRETS_TMP", "/tmp")) / "vmkit-secrets-web.yaml"
    path.write_text(yaml.safe_dump(WEB.model_dump(mode="json")), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _spec_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_SECRETS_TMP", str(tmp_path))


# -------------------------------------------------------------- Kubernetes


def test_kubernetes_token_stays_out_of_logs_errors_and_cli(net: Net) -> None:
    from vmkit.testing.fakes.kubernetes.server import KubernetesFake

    token = "SENTINEL-KUBE-TOKEN-0d9c"
    with KubernetesFake(token=token, faults=FaultPlan()) as fake:
        options = {"host": fake.url, "poll_interval": 0.02, "retry_attempts": 2}
        k8s = vmkit.connect("kubernetes", token=token, **options)
        machines = net.run(lambda: k8s.deploy(WEB))
        assert [m.name for m in net.run(lambda: k8s.list("web"))] == ["web-0", "web-1"]
        net.run(lambda: k8s.logs(machines[0].id))
        net.expect(NotFound, lambda: k8s.get("no-such-uid"))
        wrong = vmkit.connect("kubernetes", token="SENTINEL-KUBE-WRONG-77aa", **options)
        net.expect(AuthError, lambda: wrong.list())
        net.expect(AuthError, lambda: wrong.deploy(WEB))
        fake.faults.fail(429, count=10, retry_after=0, method="GET")
        net.expect(Throttled, lambda: k8s.list())
        fake.faults.clear()
        slow = vmkit.Workload(**{**WEB.model_dump(), "name": "slow"})
        net.expect(DeployTimeout, lambda: k8s.deploy(slow, timeout=0.0))
        huge = vmkit.Workload(name="huge", image="nginx:1.27", resources={"cpu": 64})
        net.expect(VmkitError, lambda: k8s.deploy(huge, timeout=10))

        target = ["--on", "kubernetes", "-c", f"host={fake.url}", "-c", f"token={token}"]
        cli_round(net, target, machines[0].id)
        net.cli("ls", "--on", "kubernetes", "-c", f"host={fake.url}",
                "-c", "token=SENTINEL-KUBE-WRONG-77aa", code=5)  # fmt: skip
        net.cli("ls", *target, "-c", "bogus=1", code=4)
    # urllib3 logs each request line at DEBUG. (kubernetes.client.rest logs
    # response bodies only for preloaded responses, which vmkit does not ask for.)
    net.saw("urllib3.connectionpool", "vmkit.retry")
    assert net.leaks() == set()


# ------------------------------------------------------------------- Azure


def test_azure_token_stays_out_of_logs_errors_and_cli(net: Net) -> None:
    from vmkit.providers.azure import AzureProvider
    from vmkit.testing.fakes.azure.clients import StaticTokenCredential
    from vmkit.testing.fakes.azure.server import AzureFake

    token = "SENTINEL-AZURE-TOKEN-51be"
    fake = AzureFake(lro_delay=0.02, token=token)
    fake.start()
    try:
        options: dict[str, Any] = {
            "subscription_id": "00000000-0000-0000-0000-0000000000a2",
            "resource_group": "rg-secrets",
            "location": "eastus",
            "endpoint": fake.url,
            "polling_interval": 0.01,
            "poll_interval": 0.02,
            "retry_attempts": 2,
            "retry_timeout": 5.0,
        }
        azure = vmkit.connect("azure", credential=StaticTokenCredential(token), **options)
        machines = net.run(lambda: azure.deploy(WEB))
        net.run(lambda: azure.list("web"))
        net.expect(NotFound, lambda: azure.get("00000000-dead-beef-0000-000000000000"))
        wrong = StaticTokenCredential("SENTINEL-AZURE-WRONG-c3f1")
        net.expect(AuthError, lambda: vmkit.connect("azure", credential=wrong, **options).list())
        fake.fail_vm_create("web-2", code="QuotaExceeded", message="Not now", count=1)
        three = vmkit.Workload(**{**WEB.model_dump(), "replicas": 3})
        net.expect(QuotaExceeded, lambda: azure.deploy(three))
        fake.faults.fail(429, count=10, retry_after=0, method="GET")
        net.expect(Throttled, lambda: azure.list())
        fake.faults.clear()
        # No DeployTimeout here: a create waits for the VM's long-running
        # operation, which the fake ends with the VM running, so no poll ever
        # sees it pending. The Kubernetes test covers that error.

        name = bound("azure-sentinel", AzureProvider, credential=StaticTokenCredential(token))
        cli_round(net, ["--on", name, *_pairs(options)], machines[0].id)
    finally:
        fake.stop()
    # azure-core's HttpLoggingPolicy logs request headers, with every header not
    # on its allow-list (Authorization included) written as 'REDACTED'
    # (azure/core/pipeline/policies/_universal.py, HttpLoggingPolicy).
    net.saw("azure.core.pipeline.policies.http_logging_policy", "urllib3.connectionpool")
    assert net.leaks() == set()


def _pairs(options: dict[str, Any]) -> list[str]:
    return [arg for key, value in options.items() for arg in ("-c", f"{key}={value}")]


# --------------------------------------------------------------------- GCP


def test_gcp_token_stays_out_of_logs_errors_and_cli(net: Net) -> None:
    from google.oauth2.credentials import Credentials

    from vmkit.providers.gcp import GcpProvider
    from vmkit.testing.fakes.gce.server import GceFake
    from vmkit.testing.fakes.gce.sim import catalog_machine_types

    token = "SENTINEL-GCP-TOKEN-a41e"
    with GceFake(
        project="p",
        token=token,
        operation_delay=0.02,
        transition_delay=0.04,
        machine_types=catalog_machine_types(),
    ) as fake:
        options: dict[str, Any] = {
            "project": "p",
            "zone": "us-central1-a",
            "endpoint": fake.url,
            "poll_interval": 0.02,
            "retry_attempts": 2,
            "retry_timeout": 5.0,
        }
        gcp = vmkit.connect("gcp", credentials=Credentials(token=token), **options)
        machines = net.run(lambda: gcp.deploy(WEB))
        net.run(lambda: gcp.list("web"))
        net.expect(NotFound, lambda: gcp.get("1234567890"))
        wrong = Credentials(token="SENTINEL-GCP-WRONG-9e02")
        net.expect(AuthError, lambda: vmkit.connect("gcp", credentials=wrong, **options).list())
        fake.set_quota(cpus=1)
        bigger = vmkit.Workload(name="cpus", image="nginx:1.27", resources={"cpu": 4})
        net.expect(QuotaExceeded, lambda: gcp.deploy(bigger))
        fake.set_quota(cpus=None)
        fake.faults.fail(429, count=10, method="GET")
        net.expect(Throttled, lambda: gcp.list())
        fake.faults.clear()
        # No DeployTimeout here: a create waits for its operation, which the fake
        # ends with the instance running. The Kubernetes test covers that error
        # (its message is built by vmkit.provider for every backend alike).

        name = bound("gcp-sentinel", GcpProvider, credentials=Credentials(token=token))
        cli_round(net, ["--on", name, *_pairs(options)], machines[0].id)
    net.saw("urllib3.connectionpool", "google.auth")
    assert net.leaks() == set()


# --------------------------------------------------------------------- AWS

#: What botocore itself logs at DEBUG on every signed request: the prepared
#: request with its headers (botocore/endpoint.py, "Sending http request: %s")
#: and SigV4's canonical request (botocore/auth.py, "CanonicalRequest:\n%s").
#: Both hold X-Amz-Security-Token (the session token) and the Authorization
#: header's "Credential=<access key id>/..."; the secret key is never sent, only
#: the signature made with it. vmkit does not configure these loggers, and its
#: CLI's --debug turns on vmkit's own only. botocore's maintainers call these
#: wire-level logs, to be left off in production (boto/botocore#2626; the
#: redacting repr proposed in boto/botocore#2945 was closed unmerged).
BOTOCORE_REQUEST_LOGS = {"log botocore.endpoint", "log botocore.auth"}


def test_aws_secrets_stay_out_of_errors_cli_and_vmkit_logs(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.awsrequest import AWSResponse

    from vmkit.testing.sim import simulated_aws

    secret = "SENTINEL-AWS-SECRET-3b7d"
    session = "SENTINEL-AWS-SESSION-e5c0"
    key_id = "SENTINEL-AWS-KEYID-11f9"
    with simulated_aws() as config:
        # simulated_aws sets its own fake credentials; these replace them.
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        monkeypatch.setenv("AWS_SESSION_TOKEN", session)
        monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
        aws = vmkit.connect("aws", **{**config, "retry_attempts": 2, "retry_timeout": 5.0})
        machines = net.run(lambda: aws.deploy(WEB))
        net.run(lambda: aws.list("web"))
        net.expect(NotFound, lambda: aws.get("i-0123456789abcdef0"))
        # No DeployTimeout here: moto answers RunInstances "pending" but lists
        # the instance running at once, before any deadline can pass.

        # EC2's own refusals, answered before the send as botocore's parser reads them.
        answers: list[tuple[str, int]] = []

        def refuse(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
            if not answers:
                return None
            code, status = answers[0]
            http = AWSResponse("https://ec2.us-east-1.amazonaws.com/", status, {}, None)
            error = {"Code": code, "Message": f"{code} from the test"}
            return http, {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}

        aws.ec2_client.meta.events.register("before-call.ec2.*", refuse)
        for code, status, kind in [
            ("AuthFailure", 401, AuthError),
            ("VcpuLimitExceeded", 400, QuotaExceeded),
            ("RequestLimitExceeded", 503, Throttled),
        ]:
            answers[:] = [(code, status)]
            net.expect(kind, lambda: aws.deploy(vmkit.Workload(name="more", image="nginx:1")))
        answers.clear()

        target = ["--on", "aws", "--region", config["region"], "-c", "poll_interval=0.05"]
        cli_round(net, target, machines[0].id)
        net.cli("providers", "-o", "json")
        net.cli("providers")

    net.saw("botocore.endpoint", "botocore.auth", "botocore.credentials")
    leaks = net.leaks()
    # The secret key itself is nowhere, not even in botocore's DEBUG logs.
    assert not {where for where, which in leaks if which == secret}
    # The session token and access key id show only in botocore's own request logs.
    assert {where for where, _ in leaks} == BOTOCORE_REQUEST_LOGS
    assert {which for _, which in leaks} == {session, key_id}


# ------------------------------------------------------- vmkit providers


def test_providers_diagnostic_shows_no_credential(
    net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "SENTINEL-KUBE-TOKEN-kc01"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "missing-context",
    }
    kube = tmp_path / "kubeconfig"
    kube.write_text(yaml.safe_dump(kubeconfig), encoding="utf-8")
    adc = tmp_path / "adc.json"
    adc.write_text(
        '{"type": "authorized_user", "client_id": "x", '
        '"client_secret": "SENTINEL-GCP-CLIENT-SECRET-01", '
        '"refresh_token": "SENTINEL-GCP-REFRESH-01"}',
        encoding="utf-8",
    )
    environment = {
        "KUBECONFIG": str(kube),
        "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-0000000000a2",
        "AZURE_TENANT_ID": "00000000-0000-0000-0000-0000000000a3",
        "AZURE_CLIENT_ID": "00000000-0000-0000-0000-0000000000a4",
        "AZURE_CLIENT_SECRET": "SENTINEL-AZURE-CLIENT-SECRET-01",
        "AWS_ACCESS_KEY_ID": "SENTINEL-AWS-KEYID-02",
        "AWS_SECRET_ACCESS_KEY": "SENTINEL-AWS-SECRET-02",
        "AWS_SESSION_TOKEN": "SENTINEL-AWS-SESSION-02",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    statuses = net.cli("providers", "-o", "json")
    kube_status = next(s for s in yaml.safe_load(statuses.stdout) if s["name"] == "kubernetes")
    assert "missing-context" in str(kube_status["credentials"])  # the problem is reported
    net.cli("providers")
    kube.write_text(
        yaml.safe_dump(kubeconfig).replace("token: SENTINEL", "token: [SENTINEL"), encoding="utf-8"
    )  # broken YAML right at the token
    net.cli("providers", "-o", "json")
    net.cli("ls", "--on", "kubernetes", code=4)
    assert net.leaks() == set()
