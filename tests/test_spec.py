"""Workload validation: every bad input names its field, before any API call."""

from __future__ import annotations

from pathlib import Path

import pytest

import vmkit
from vmkit.spec import format_size, parse_size


def spec(**fields: object) -> vmkit.Workload:
    return vmkit.Workload(**{"name": "web", **fields})


def test_the_design_example_validates() -> None:
    workload = vmkit.Workload(
        name="web",
        image="nginx:1.27",
        env={"MODE": "prod"},
        ports=[80, vmkit.Port(port=53, protocol="udp")],
        resources=vmkit.Resources(cpu=2, memory="4GiB", disk="30GiB", gpu=0),
        replicas=3,
        labels={"team": "infra"},
        options={"aws": {"instance_type": "c7i.large"}},
    )
    assert [str(p) for p in workload.ports] == ["80/tcp", "53/udp"]
    assert workload.resources.memory == 4 * 2**30
    assert workload.resources.disk == 30 * 2**30
    assert workload.options_for("aws") == {"instance_type": "c7i.large"}
    assert workload.options_for("gcp") == {}


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"name": "Web"}, "name", "RFC 1123"),
        ({"name": "-web"}, "name", "RFC 1123"),
        ({"name": "w" * 41}, "name", "at most 40"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"resources": {"cpu": 0}}, "resources.cpu", "greater than 0"),
        ({"resources": {"cpu": -1}}, "resources.cpu", "greater than 0"),
        ({"resources": {"cpu": True}}, "resources.cpu", "boolean"),
        ({"resources": {"memory": "4096"}}, "resources.memory", "no unit"),
        ({"resources": {"memory": "4 parsecs"}}, "resources.memory", "unknown unit"),
        ({"resources": {"memory": 512}}, "resources.memory", "forget a unit"),
        ({"resources": {"disk": "100MiB"}}, "resources.disk", "at least 1GiB"),
        ({"resources": {"gpu": -1}}, "resources.gpu", "greater than or equal to 0"),
        ({"resources": {"ram": "1GiB"}}, "resources.ram", "unknown field"),
        ({"ports": [0]}, "ports.0.port", "greater than or equal to 1"),
        ({"ports": [65536]}, "ports.0.port", "less than or equal to 65535"),
        ({"ports": [{"port": 53, "protocol": "icmp"}]}, "ports.0.protocol", "tcp"),
        ({"ports": [80, 80]}, "ports", "twice"),
        ({"replicas": -1}, "replicas", "greater than or equal to 0"),
        ({"replicas": "3"}, "replicas", "valid integer"),
        ({"replicas": 2.5}, "replicas", "valid integer"),
        ({"env": {"1BAD": "x"}}, "env", "environment variable name"),
        ({"env": {"A": ["x"]}}, "env.A", "valid string"),
        ({"labels": {"Team": "x"}}, "labels", "lowercase"),
        ({"labels": {"team": "Infra"}}, "labels", "value"),
        ({"labels": {"vmkit-workload": "x"}}, "labels", "reserved"),
        ({"ssh_public_key": "not a key"}, "ssh_public_key", "OpenSSH"),
        ({"isolation": "hypervisor"}, "isolation", "container"),
        ({"command": ["sh"]}, "command", "needs an image"),
        ({"args": ["-v"]}, "args", "needs an image"),
        ({"image": "nginx latest"}, "image", "without spaces"),
        ({"spot": "yes"}, "spot", "valid boolean"),
        ({"image": "x", "args": ["ok", "a\0b"]}, "args.1", "NUL"),
        ({"image": "x", "command": ["\ud800"]}, "command.0", "surrogate"),
        ({"env": {"A": "x\0"}}, "env.A", "NUL"),
        ({"user_data": "#!/bin/sh\n\udc80"}, "user_data", "surrogate"),
    ],
)
def test_bad_input_names_the_field(fields: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(vmkit.SpecError) as info:
        spec(**fields)
    assert info.value.field == field
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


def test_every_invalid_field_is_reported() -> None:
    with pytest.raises(vmkit.SpecError) as info:
        spec(replicas=-1, resources={"cpu": 0})
    assert "also invalid" in str(info.value)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4GiB", 4 * 2**30),
        ("512MiB", 512 * 2**20),
        ("1Gi", 2**30),
        ("1.5GiB", 3 * 2**29),
        ("30G", 30 * 10**9),
        ("2TB", 2 * 10**12),
        (" 8 gib ", 8 * 2**30),
        (1024, 1024),
    ],
)
def test_sizes_parse(text: object, size: int) -> None:
    assert parse_size(text) == size


def test_sizes_format_exactly() -> None:
    assert format_size(4 * 2**30) == "4GiB"
    assert format_size(1536 * 2**20) == "1536MiB"
    assert format_size(10**9) == "953.7MiB"


def test_env_numbers_from_yaml_become_strings(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text("name: web\nimage: nginx\nenv:\n  PORT: 8080\n  RATIO: 0.5\nports: [80]\n")
    workload = vmkit.Workload.from_yaml(path)
    assert workload.env == {"PORT": "8080", "RATIO": "0.5"}


def test_yaml_errors_are_spec_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(vmkit.SpecError, match="not valid YAML"):
        vmkit.Workload.from_yaml(path)
    path.write_text("- a list\n")
    with pytest.raises(vmkit.SpecError, match="must be a mapping"):
        vmkit.Workload.from_yaml(path)
    path.write_text("name: web\nresources: {cpu: 0}\n")
    with pytest.raises(vmkit.SpecError) as info:
        vmkit.Workload.from_yaml(path)
    assert info.value.field == "resources.cpu"
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)
    )
    path.write_text(f"name: web\noptions:\n  aws:\n    {laughs.replace(chr(10), chr(10) + '    ')}")
    with pytest.raises(vmkit.SpecError, match=r"aliases \(\*name\) are not allowed"):
        vmkit.Workload.from_yaml(path)
    with pytest.raises(vmkit.SpecError, match="cannot read"):
        vmkit.Workload.from_yaml(tmp_path / "missing.yaml")


def test_spec_hash_ignores_replicas_and_tracks_everything_else() -> None:
    base = spec(image="nginx:1.27", replicas=1)
    assert base.spec_hash == spec(image="nginx:1.27", replicas=5).spec_hash
    assert base.spec_hash != spec(image="nginx:1.28").spec_hash
    assert base.spec_hash != spec(image="nginx:1.27", env={"A": "1"}).spec_hash
    assert base.spec_hash != spec(image="nginx:1.27", resources={"cpu": 2}).spec_hash


def test_workloads_are_immutable() -> None:
    workload = spec()
    with pytest.raises(Exception, match="frozen"):
        workload.replicas = 3  # type: ignore[misc]


def test_json_schema_refuses_unknown_fields_and_accepts_sizes_as_strings() -> None:
    schema = vmkit.Workload.model_json_schema()
    assert schema["additionalProperties"] is False
    assert "name" in schema["required"]
    memory = schema["$defs"]["Resources"]["properties"]["memory"]
    assert {"string", "integer"} <= {alt["type"] for alt in memory["anyOf"]}
