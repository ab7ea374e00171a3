"""Simulated clouds: the real SDK clients against in-process fakes.

They back ``vmkit demo``, the documentation examples and the test suite, and
users can run their own pipelines against them offline::

    from vmkit.testing.sim import simulated_aws

    with simulated_aws() as config:
        aws = vmkit.connect("aws", **config)
        aws.deploy(workload)

Each ``simulated_<cloud>()`` is a context manager yielding the ``connect()``
keyword arguments of that cloud; :func:`simulated_clouds` enters all of them
at once and yields ``{provider name: config}``. Nothing leaves the process.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "AWS_SIM_ENVIRONMENT",
    "SIMULATORS",
    "amazon_linux_image",
    "seed_aws_images",
    "simulated_aws",
    "simulated_azure",
    "simulated_clouds",
    "simulated_gcp",
    "simulated_kubernetes",
]

#: The environment a simulated AWS runs under (restored afterwards). Fake
#: credentials, and no profile, config file or endpoint of the developer's
#: that could point boto3 elsewhere.
AWS_SIM_ENVIRONMENT: Mapping[str, str | None] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_PROFILE": None,
    "AWS_DEFAULT_PROFILE": None,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_ENDPOINT_URL": None,
    "AWS_ENDPOINT_URL_EC2": None,
    "AWS_ENDPOINT_URL_SSM": None,
    "AWS_EC2_METADATA_DISABLED": "true",
    # moto accepts any AMI id and instance type unless told to check them as
    # EC2 does (docstring of moto/ec2/models/instances.py, run_instances).
    "MOTO_ENABLE_AMI_VALIDATION": "true",
    "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true",
}

# Publishers of the portable images, whose AMIs the seeded parameters prefer.
_PUBLISHERS = {"ubuntu": "099720109477", "debian": "136693071363"}
_AMAZON = "137112412989"


@contextmanager
def _environment(values: Mapping[str, str | None]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _reload_moto_settings() -> None:
    # moto reads MOTO_* variables once, when moto.settings is imported; its
    # modules read the flags as attributes of that module object, so reloading
    # it in place makes the current environment count.
    import moto.settings

    importlib.reload(moto.settings)


@contextmanager
def simulated_aws(region: str = "us-east-1") -> Iterator[dict[str, Any]]:
    """A fresh, empty AWS account in ``region`` (moto's ``mock_aws``, in-process).

    AMI ids and instance types are validated as EC2 does; the SSM public
    parameters of the portable images are seeded (see :func:`seed_aws_images`)
    so ``ubuntu-22.04`` and friends resolve exactly as on AWS; root volume
    replacement tasks work (:mod:`vmkit.testing.fakes.moto_ext`). Yields the
    ``connect("aws", ...)`` config, with a short ``poll_interval``. The
    environment and moto's settings are restored on exit.
    """
    import boto3
    from moto import mock_aws

    from vmkit.testing.fakes import moto_ext

    try:
        with _environment(AWS_SIM_ENVIRONMENT):
            _reload_moto_settings()
            # Root volume replacement tasks, which moto lacks (see moto_ext).
            moto_ext.install()
            with mock_aws():
                seed_aws_images(boto3.client("ec2", region_name=region), region)
                yield {"region": region, "poll_interval": 0.05}
    finally:
        _reload_moto_settings()


def seed_aws_images(ec2_client: Any, region: str) -> dict[str, str]:
    """Publish the portable images' SSM parameters in moto, as AWS does.

    moto ships the Amazon Linux public parameters only. For every portable
    name and architecture of vmkit's catalog, the parameter is pointed at an
    AMI that exists in moto's region: the publisher's own when moto has one
    of that architecture (Canonical's Ubuntu), else the newest Amazon Linux
    one. Returns ``{parameter name: AMI id}``. Must run under ``mock_aws``.
    """
    from moto.ssm.models import Parameter, ssm_backends

    from vmkit.catalog import PORTABLE_IMAGES, resolve_image

    vpcs = ec2_client.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])
    account = str(vpcs["Vpcs"][0]["OwnerId"])
    # AWS refuses PutParameter under /aws/ (moto too: "No access to reserved
    # parameter name"), so the parameters go into moto's store directly.
    store = ssm_backends[account][region]._parameters
    seeded: dict[str, str] = {}
    picked: dict[tuple[str, str | None], str] = {}
    for arch in ("x86_64", "arm64"):
        for name in PORTABLE_IMAGES:
            ref = resolve_image("aws", name, arch=arch)
            if ref.kind != "ssm-parameter" or store.get(ref.value):
                continue
            publisher = _PUBLISHERS.get(name.split("-")[0])
            if (arch, publisher) not in picked:
                picked[arch, publisher] = _pick_image(ec2_client, arch, publisher)
            ami = picked[arch, publisher]
            # moto builds its own parameters the same way (moto/ssm/models.py,
            # ParameterDict._load_latest_amis); its typing marks the class abstract.
            store[ref.value].append(
                Parameter(  # type: ignore[abstract]
                    account_id=account,
                    name=ref.value,
                    value=ami,
                    parameter_type="String",
                    description=None,
                    allowed_pattern=None,
                    keyid=None,
                    last_modified_date=datetime.now(UTC),
                    version=1,
                    data_type="aws:ec2:image",
                )
            )
            seeded[ref.value] = ami
    return seeded


def amazon_linux_image(ec2_client: Any, arch: str = "x86_64") -> dict[str, Any]:
    """An Amazon Linux 2023 image of ``arch`` from moto's catalogue (its
    DescribeImages record), for tests that launch instances by hand."""
    filters = [
        {"Name": "name", "Values": ["al2023-ami-2023*"]},
        {"Name": "architecture", "Values": [arch]},
    ]
    return dict(ec2_client.describe_images(Owners=[_AMAZON], Filters=filters)["Images"][0])


def _pick_image(ec2_client: Any, arch: str, publisher: str | None) -> str:
    """The publisher's newest image of ``arch``, else Amazon Linux 2023's.

    Narrow queries: moto answers a DescribeImages of its whole catalogue in
    about a second.
    """
    queries: list[dict[str, Any]] = []
    if publisher is not None:
        queries.append({"Owners": [publisher]})
    queries.append(
        {"Owners": [_AMAZON], "Filters": [{"Name": "name", "Values": ["al2023-ami-2023*"]}]}
    )
    queries.append({})
    for query in queries:
        filters = [*query.get("Filters", []), {"Name": "architecture", "Values": [arch]}]
        found = ec2_client.describe_images(**{**query, "Filters": filters})["Images"]
        linux = [i for i in found if i.get("Platform") != "windows"]
        if linux:
            ordered = sorted(linux, key=lambda i: str(i["ImageId"]))
            ordered.sort(key=lambda i: str(i.get("CreationDate", "")), reverse=True)
            return str(ordered[0]["ImageId"])
    raise RuntimeError(f"moto has no Linux image for {arch} to seed with")


def simulated_gcp(**options: Any) -> AbstractContextManager[dict[str, Any]]:
    """A Compute Engine fake on 127.0.0.1 (see vmkit.testing.fakes.gce.sim)."""
    from vmkit.testing.fakes.gce.sim import simulated_gcp as simulate

    return simulate(**options)


def simulated_azure(**options: Any) -> AbstractContextManager[dict[str, Any]]:
    """An Azure Resource Manager fake on 127.0.0.1 (see vmkit.testing.fakes.azure.sim)."""
    from vmkit.testing.fakes.azure.sim import simulated_azure as simulate

    return simulate(**options)


def simulated_kubernetes(**options: Any) -> AbstractContextManager[dict[str, Any]]:
    """A Kubernetes API server fake on 127.0.0.1 (see vmkit.testing.fakes.kubernetes.sim)."""
    from vmkit.testing.fakes.kubernetes.sim import simulated_kubernetes as simulate

    return simulate(**options)


#: Each simulated cloud by the provider name it is connected with.
SIMULATORS: Mapping[str, Callable[..., AbstractContextManager[dict[str, Any]]]] = {
    "aws": simulated_aws,
    "gcp": simulated_gcp,
    "azure": simulated_azure,
    "kubernetes": simulated_kubernetes,
}


@contextmanager
def simulated_clouds() -> Iterator[dict[str, dict[str, Any]]]:
    """Every simulated cloud at once: ``{"aws": config, "gcp": config, ...}``.

    Each cloud's SDK must be installed (``pip install "vmkit[all,testing]"``).
    """
    with ExitStack() as stack:
        yield {name: stack.enter_context(simulate()) for name, simulate in SIMULATORS.items()}
