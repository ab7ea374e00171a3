"""Property tests: whatever a spec file holds, vmkit answers with a SpecError naming
a field, or accepts it and renders valid cloud-init and a valid Pod.

About 1,300 generated specs per run (dicts, YAML dumps, raw YAML text) plus 100
spec files through ``vmkit plan``.
"""

from __future__ import annotations

import email
import json
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from memory_provider import MemoryProvider

from vmkit import registry
from vmkit.cli import cli
from vmkit.errors import SpecError
from vmkit.render import render_cloud_init, render_pod
from vmkit.render.cloud_init import docker_run_argv
from vmkit.spec import Resources, Workload

WORKLOAD_FIELDS = frozenset(Workload.model_fields)
RESOURCE_FIELDS = frozenset(Resources.model_fields)
PORT_FIELDS = frozenset({"port", "protocol"})
RFC1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The Quantity grammar of k8s.io/apimachinery pkg/api/resource (<signedNumber><suffix>,
# suffix a binary SI, decimal SI or decimal exponent), as documented in the
# io.k8s.apimachinery.pkg.api.resource.Quantity schema:
# https://docs.redhat.com/en/documentation/openshift_container_platform/4.16/html/common_object_reference/io-k8s-apimachinery-pkg-api-resource-Quantity
_NUMBER = r"(\d+(\.\d*)?|\.\d+)"
QUANTITY = re.compile(rf"^[+-]?{_NUMBER}(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?{_NUMBER})?$")


def examples(count: int) -> settings:
    """``count`` generated examples, no per-example deadline (moto-free but CliRunner is slow)."""
    return settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ------------------------------------------------------------------ strategies

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "0", "4GiB", "500m", "tcp", "-", "$(X)", "#cloud-config", "ssh-rsa"]),
)
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=3)
    ),
    max_leaves=8,
)
names = st.one_of(
    st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z"),
    st.text(max_size=45),
    st.sampled_from(["web", "a" * 40, "a" * 41, "-web", "Web", "web-", "1"]),
)
images = st.one_of(
    st.none(),
    st.sampled_from(["nginx:1.25", "ghcr.io/acme/api@sha256:" + "a" * 64, "-rm", " ", "a b"]),
    st.text(max_size=15),
)
process_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["$(HOME)", "$$", "'", '"', "`id`", "a\nb", "\x85", "\0", "--", "-e"]),
)
env_names = st.one_of(st.from_regex(r"\A[-._a-zA-Z][-._a-zA-Z0-9]{0,8}\Z"), st.text(max_size=6))
sizes = st.one_of(
    st.builds(
        lambda n, u: f"{n}{u}",
        st.one_of(st.integers(0, 5000), st.floats(0, 5000).map(lambda x: round(x, 3))),
        st.sampled_from(["GiB", "MiB", "Gi", "Mi", "G", "GB", "TiB", "KiB", "B", "", "XB"]),
    ),
    st.integers(min_value=-1, max_value=2**45),
    st.just("9" * 400 + "GiB"),
    scalars,
)
cpus = st.one_of(
    st.floats(min_value=0.001, max_value=1100),
    st.integers(-1, 1100),
    st.integers(0, 200000).map(lambda n: f"{n}m"),
    st.just("9" * 400 + "m"),
    scalars,
)
resources = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={"cpu": cpus, "memory": sizes, "disk": sizes, "gpu": st.integers(-1, 20)},
    ),
    junk,
)
ports = st.one_of(
    st.lists(
        st.one_of(
            st.integers(0, 70000),
            st.fixed_dictionaries(
                {"port": st.integers(0, 70000)},
                optional={"protocol": st.sampled_from(["tcp", "udp", "TCP", "sctp"])},
            ),
            junk,
        ),
        max_size=4,
    ),
    junk,
)
label_keys = st.one_of(st.from_regex(r"\A[a-z][a-z0-9_-]{0,10}\Z"), st.text(max_size=8))
label_values = st.one_of(st.from_regex(r"\A[a-z0-9_-]{0,10}\Z"), st.text(max_size=8))
cloud_config_user_data = st.dictionaries(
    st.sampled_from(["runcmd", "packages", "write_files", "bootcmd", "users", "hostname"]),
    junk,
    max_size=3,
).map(lambda d: "#cloud-config\n" + yaml.safe_dump(d))
mime_user_data = st.builds(
    lambda body: (
        'Content-Type: multipart/mixed; boundary="XX"\nMIME-Version: 1.0\n\n'
        f'--XX\nContent-Type: text/x-shellscript; charset="us-ascii"\n\n#!/bin/sh\n{body}\n'
        '--XX\nContent-Type: text/cloud-config; charset="us-ascii"\n\nruncmd: [[echo, hi]]\n'
        "--XX--\n"
    ),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)
user_data = st.one_of(
    st.none(),
    process_text,
    cloud_config_user_data,
    mime_user_data,
    st.text(max_size=20).map(lambda t: "#!/bin/sh\n" + t),
    st.sampled_from(["#cloud-config\n[", "#cloud-config\n- a", "#cloud-config\nruncmd: x"]),
)
ssh_keys = st.one_of(
    st.none(),
    st.sampled_from(["ssh-ed25519 AAAAC3Nza me@host", " ssh-rsa AAAA== ", "ssh-ed25519", "x"]),
    st.text(max_size=10),
)
option_values = st.dictionaries(
    st.sampled_from(["aws", "gcp", "azure", "kubernetes"]),
    st.one_of(st.dictionaries(st.text(max_size=6), junk, max_size=2), junk),
    max_size=2,
)

FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": names,
    "image": images,
    "command": st.one_of(st.none(), st.lists(process_text, max_size=3), junk),
    "args": st.one_of(st.none(), st.lists(process_text, max_size=3), junk),
    "env": st.one_of(
        st.dictionaries(env_names, st.one_of(process_text, st.integers(), st.floats()), max_size=3),
        junk,
    ),
    "ports": ports,
    "resources": resources,
    "replicas": st.one_of(st.integers(-2, 1002), scalars),
    "os_image": st.one_of(st.sampled_from(["ubuntu-22.04", "debian-12", ""]), scalars),
    "user_data": user_data,
    "ssh_public_key": ssh_keys,
    "spot": st.one_of(st.booleans(), scalars),
    "isolation": st.one_of(st.sampled_from(["container", "sandbox", "vm", "gvisor"]), scalars),
    "labels": st.one_of(st.dictionaries(label_keys, label_values, max_size=3), junk),
    "options": st.one_of(option_values, junk),
}

#: Mostly plausible specs: the real fields, each present or not, each value from
#: a mix of valid and invalid values, sometimes an unknown key too.
plausible_specs = st.fixed_dictionaries(
    {"name": names},
    optional={
        **{key: value for key, value in FIELD_VALUES.items() if key != "name"},
        "unknown_key": junk,
        "Name": junk,
    },
)
#: Text a process can take (no NUL, no lone surrogate), with the characters
#: shells, YAML, Docker and the kubelet treat specially.
argv_text = st.one_of(
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=12),
    st.sampled_from(["$(HOME)", "$$", "'", '"', "`id`", "a\nb", "\x85", "--", "-e", "a=b"]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)
#: Specs whose every field is valid (or nearly), so that rendering gets exercised.
valid_specs = st.fixed_dictionaries(
    {
        "name": st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?\Z"),
        "image": st.one_of(
            st.sampled_from(["nginx:1.25", "ghcr.io/acme/api@sha256:" + "a" * 64, "-rm"]),
            st.from_regex(r"\A[a-z0-9][a-z0-9./:@_-]{0,30}\Z"),
        ),
    },
    optional={
        "command": st.lists(argv_text, max_size=3),
        "args": st.lists(argv_text, max_size=3),
        "env": st.dictionaries(
            st.from_regex(r"\A[-._a-zA-Z][-._a-zA-Z0-9]{0,8}\Z"),
            st.one_of(argv_text, st.integers(), st.floats(allow_nan=False)),
            max_size=3,
        ),
        "ports": st.lists(st.integers(1, 65535), max_size=3, unique=True),
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "cpu": st.one_of(
                    st.floats(0.0001, 64),
                    st.integers(1, 64),
                    st.integers(1, 64000).map("{}m".format),
                ),
                "memory": st.one_of(
                    st.integers(64, 2**20).map("{}MiB".format),
                    st.integers(1, 512).map("{}Gi".format),
                    st.integers(2**26, 2**40),
                ),
                "disk": st.integers(1, 2048).map("{}GiB".format),
                "gpu": st.integers(0, 8),
            },
        ),
        "replicas": st.integers(0, 1000),
        "user_data": user_data,
        "ssh_public_key": st.just("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA me@host"),
        "spot": st.booleans(),
        "isolation": st.sampled_from(["container", "sandbox", "vm"]),
        "labels": st.dictionaries(
            st.from_regex(r"\A[a-z][a-z0-9_-]{0,10}\Z"), st.from_regex(r"\A[a-z0-9_-]{0,10}\Z")
        ),
        "options": st.dictionaries(
            st.sampled_from(["aws", "gcp", "azure", "kubernetes"]),
            st.dictionaries(st.text(max_size=6), json_values, max_size=3),
        ),
    },
)

#: Anything at all at the top, and junk under the real field names.
hostile_specs = st.one_of(
    junk,
    st.dictionaries(
        st.one_of(st.sampled_from(sorted(WORKLOAD_FIELDS)), st.text(max_size=10), st.integers()),
        junk,
        max_size=6,
    ),
)

# -------------------------------------------------------------------- checks


def _keys(value: Any) -> set[str]:
    return {str(key) for key in value} if isinstance(value, Mapping) else set()


def _names_a_path(path: str, field_names: frozenset[str], data: Any) -> bool:
    """True when ``path`` (dotted) starts at a field of the model or at a key of ``data``."""
    for name in sorted(field_names | _keys(data), key=len, reverse=True):
        if path == name:
            return True
        if not path.startswith(name + "."):
            continue
        rest = path[len(name) + 1 :]
        if name not in field_names:
            return False  # an unknown field is refused as a whole
        sub = data.get(name) if isinstance(data, Mapping) else None
        return _names_a_subpath(name, rest, sub)
    return False


def _names_a_subpath(field: str, rest: str, value: Any) -> bool:
    head = rest.split(".")[0]
    if field == "resources":
        return _names_a_path(rest, RESOURCE_FIELDS, value)
    if field in ("ports", "command", "args"):
        if not (isinstance(value, list) and head.isdigit() and int(head) < len(value)):
            return False
        tail = rest[len(head) + 1 :]
        return field != "ports" or not tail or _names_a_path(tail, PORT_FIELDS, value[int(head)])
    if field in ("env", "labels", "options"):
        return any(rest == key or rest.startswith(key + ".") for key in _keys(value))
    return False


def assert_names_a_field(error: SpecError, data: Any) -> None:
    assert isinstance(error, ValueError)
    assert str(error).startswith(f"{error.field}: " if error.field else "")
    if not isinstance(data, Mapping):
        assert error.field == ""
    else:
        top = {str(key): value for key, value in data.items()}
        assert _names_a_path(error.field, WORKLOAD_FIELDS, top), (error.field, data)


def assert_valid_cloud_init(workload: Workload) -> None:
    text: str | None = None
    refusal: SpecError | None = None
    try:
        text = render_cloud_init(workload)
    except SpecError as exc:
        refusal = exc
    if refusal is not None:
        # Documented refusals, before any API call: bad cloud-config user_data,
        # an image Docker would read as an option.
        assert refusal.field in ("user_data", "image"), refusal
        return
    if workload.image is None:
        assert text == workload.user_data
        if text is not None and text.startswith("#cloud-config"):
            assert isinstance(yaml.safe_load(text), dict | None)
        return
    assert text is not None
    argv = docker_run_argv(workload)
    if text.startswith("#cloud-config"):
        config = yaml.safe_load(text)
    else:
        message = email.message_from_string(text)
        assert message.is_multipart()
        parts = [p for p in message.walk() if not p.is_multipart()]
        assert parts[0].get_content_type() == "text/cloud-config"
        payload = parts[0].get_payload(decode=True)
        assert isinstance(payload, bytes)
        config = yaml.safe_load(payload.decode())
    assert isinstance(config, dict)
    # The container's argv reaches docker exactly as the spec wrote it.
    assert argv in config["runcmd"]


def assert_valid_pod(workload: Workload) -> None:
    if workload.image is None:
        return
    pod = render_pod(workload, workload.replicas, labels={"app": workload.name})
    container = pod["spec"]["containers"][0]
    assert json.loads(json.dumps(container)) == container
    name = pod["metadata"]["name"]
    assert RFC1123.match(name), name
    assert len(name) <= 63, name
    assert RFC1123.match(container["name"])
    for quantities in container["resources"].values():
        for quantity in quantities.values():
            assert QUANTITY.match(quantity), quantity
    unescaped = [part.replace("$$", "$") for part in container.get("args", [])]
    assert unescaped == list(workload.args or [])


def check(data: Any) -> Workload | None:
    """Validate ``data``; a refusal must be a SpecError naming a field."""
    try:
        workload = Workload.from_dict(data)
    except SpecError as exc:
        assert_names_a_field(exc, data)
        return None
    assert len(workload.spec_hash) == 16
    assert_valid_cloud_init(workload)
    assert_valid_pod(workload)
    return workload


# --------------------------------------------------------------------- tests


@examples(500)
@given(st.one_of(valid_specs, plausible_specs))
@example({"name": "a", "resources": {"memory": "9" * 400 + "GiB"}})
@example({"name": "a", "resources": {"cpu": "9" * 400 + "m"}})
@example({"name": "a", "resources": {"cpu": 10**400}})
@example({"name": "a", "options": {"aws": {"blob": b"\xff"}}})
@example({"name": "a", "image": "x", "args": ["$(HOME)", "$$", "a\nb"], "user_data": "\x85"})
def test_plausible_specs_are_refused_by_field_or_render(data: dict[str, Any]) -> None:
    check(data)


@examples(300)
@given(hostile_specs)
def test_hostile_values_are_refused_with_a_spec_error(data: Any) -> None:
    check(data)


def _yaml_check(text: str) -> None:
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        data = None
        parsed = False
    else:
        parsed = True
    refusal: SpecError | None = None
    try:
        workload = Workload.from_yaml_text(text)
    except SpecError as exc:
        refusal = exc
    if refusal is not None:
        if parsed and isinstance(data, Mapping):
            assert_names_a_field(refusal, data)
        else:
            assert refusal.field == ""
        return
    assert_valid_cloud_init(workload)
    assert_valid_pod(workload)


@examples(250)
@given(st.text(max_size=80))
@example("[" * 5000)
@example("a: " + "{" * 3000)
@example("name: a\noptions: {aws: {x: !!binary /w==}}")
@example("name: !!python/object:os.system x")
def test_random_yaml_text_is_refused_with_a_spec_error(text: str) -> None:
    _yaml_check(text)


@examples(250)
@given(st.one_of(valid_specs, plausible_specs), st.sampled_from(["block", "flow"]))
def test_yaml_dumps_of_specs_load_like_the_dicts(data: dict[str, Any], style: str) -> None:
    try:
        text = yaml.safe_dump(data, default_flow_style=style == "flow", allow_unicode=True)
    except yaml.YAMLError:
        return  # a value YAML cannot represent (none in practice: safe_dump takes these)
    _yaml_check(text)
    # The file and the dict it dumps are the same spec.
    try:
        from_text: Workload | str = Workload.from_yaml_text(text)
    except SpecError as exc:
        from_text = exc.field
    reloaded = yaml.safe_load(text)
    try:
        from_dict: Workload | str = Workload.from_dict(reloaded)
    except SpecError as exc:
        from_dict = exc.field
    assert from_text == from_dict


# ----------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def spec_dir() -> Iterator[Path]:
    registry.register("memory-props", MemoryProvider)
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


@examples(100)
@given(
    st.one_of(
        st.one_of(valid_specs, plausible_specs).map(lambda d: yaml.safe_dump(d)),
        hostile_specs.map(lambda d: yaml.safe_dump(d)),
        st.text(max_size=60),
    )
)
@example("[" * 5000)
@example("name: a\nresources: {memory: " + "9" * 400 + "GiB}\n")
@example("name: a\noptions: {aws: {x: !!binary /w==}}\n")
def test_cli_answers_a_bad_spec_file_with_one_error_line(spec_dir: Path, text: str) -> None:
    path = spec_dir / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        Workload.from_yaml_text(text, source=str(path))
        expected: SpecError | None = None
    except SpecError as exc:
        expected = exc
    result = CliRunner().invoke(
        cli, ["plan", str(path), "--on", "memory-props"], env={"COLUMNS": None}
    )
    assert "Traceback" not in result.output
    if expected is None:
        # The memory backend refuses GPUs and over 64 vCPUs as a SpecError too.
        assert result.exit_code in (0, 3), result.output
        return
    assert result.exit_code == 3, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    # The CLI folds whitespace into single spaces (one line), field names included.
    prefix = " ".join(f"error: {expected.field}:".split()) if expected.field else "error:"
    assert lines[0].startswith(prefix), (lines, expected.field)
    assert result.stdout == ""
