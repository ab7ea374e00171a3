"""Rendering: cloud-init user data for VMs, Pod manifests for Kubernetes.

The cloud-init tests parse what was rendered exactly as cloud-init does
(yaml.safe_load, the email package for MIME) and check the argv that reaches
Docker element by element. Two of them also run the runcmd line through a real
/bin/sh, quoted the way cloud-init writes its runcmd script, to prove that no
value is reinterpreted on the way.
"""

from __future__ import annotations

import email
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import vmkit
from vmkit.render import render_cloud_init, render_pod
from vmkit.render.pod import cpu_quantity, memory_quantity

NASTY = [
    "two words",
    "it's",
    'say "hi"',
    "$(rm -rf /)",
    "`reboot`",
    "$HOME",
    "${PATH}",
    "back\\slash\\",
    "line1\nline2",
    "tab\there",
    "héllo wörld ☃ 日本",
    "-rf",
    "--privileged",
    "a=b=c",
    "",
    " leading and trailing ",
    "'; echo pwned; '",
    "\\'",
    "#not a comment",
    "- not a list",
    "key: value",
    "null",
    "true",
    "0x10",
    "010",
    "1e3",
    "~",
    "*alias",
    "&anchor",
    "!!python/object:os.system",
    "%TAG",
    "\r\n",
]


def workload(**fields: Any) -> vmkit.Workload:
    return vmkit.Workload(**{"name": "web", "image": "nginx:1.27", **fields})


def cloud_config(text: str | None) -> dict[str, Any]:
    assert text is not None
    assert text.startswith("#cloud-config\n")
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def docker_argv(config: dict[str, Any]) -> list[str]:
    runs = [
        item
        for item in config["runcmd"]
        if isinstance(item, list) and item[:2] == ["docker", "run"]
    ]
    assert len(runs) == 1
    argv = runs[0]
    assert all(isinstance(item, str) for item in argv)
    return argv


def after_image(argv: list[str], image: str = "nginx:1.27") -> list[str]:
    return argv[argv.index(image) + 1 :]


def env_entries(argv: list[str]) -> list[str]:
    image_at = argv.index("nginx:1.27")
    return [argv[i + 1] for i in range(image_at) if argv[i] == "-e"]


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def through_sh(argv: list[str]) -> list[str]:
    """What a POSIX shell passes on when the argv is written the way
    cloud-init writes a list-form runcmd item: every element in single
    quotes, each ' as '\\''. The first element is swapped for printf so the
    shell hands back what the program would have received."""
    quoted = ["'" + item.replace("'", "'\\''") + "'" for item in argv[1:]]
    line = "printf '%s\\0' " + " ".join(quoted)
    out = subprocess.run(["/bin/sh", "-c", line], capture_output=True, check=True).stdout
    return out.decode("utf-8").split("\0")[:-1]


def test_document_starts_with_cloud_config_and_runs_the_container() -> None:
    text = render_cloud_init(workload(ports=[80, vmkit.Port(port=53, protocol="udp")]))
    config = cloud_config(text)
    assert config["package_update"] is True
    assert "docker.io" in config["packages"]
    assert config["runcmd"][0] == ["systemctl", "enable", "--now", "docker"]
    argv = docker_argv(config)
    assert argv[:6] == ["docker", "run", "-d", "--restart=always", "--name", "vmkit-web"]
    assert argv[6:8] == ["-p", "80:80/tcp"]
    assert argv[8:10] == ["-p", "53:53/udp"]
    assert argv[-1] == "nginx:1.27"


def test_docker_is_started_before_the_container() -> None:
    config = cloud_config(render_cloud_init(workload()))
    commands = [tuple(item[:2]) for item in config["runcmd"]]
    assert commands.index(("systemctl", "enable")) < commands.index(("docker", "run"))


def test_adversarial_env_values_are_single_exact_argv_elements() -> None:
    env = {f"V{index}": value for index, value in enumerate(NASTY)}
    argv = docker_argv(cloud_config(render_cloud_init(workload(env=env))))
    assert env_entries(argv) == [f"{key}={value}" for key, value in env.items()]
    for key, value in env.items():
        position = argv.index(f"{key}={value}")
        assert argv[position - 1] == "-e"


def test_adversarial_args_keep_their_order_and_bytes() -> None:
    argv = docker_argv(cloud_config(render_cloud_init(workload(args=NASTY))))
    assert after_image(argv) == NASTY
    assert "--entrypoint" not in argv


def test_command_replaces_the_entrypoint_with_pod_semantics() -> None:
    wl = workload(command=["/bin/sh", "-c", "echo $HOME; `id`"], args=["x y", "--flag"])
    argv = docker_argv(cloud_config(render_cloud_init(wl)))
    entry = argv.index("--entrypoint")
    assert argv[entry + 1] == "/bin/sh"
    assert entry < argv.index("nginx:1.27")
    # The rest of command, then args, after the image.
    assert after_image(argv) == ["-c", "echo $HOME; `id`", "x y", "--flag"]


def test_command_alone_clears_cmd_and_empty_lists_mean_unset() -> None:
    argv = docker_argv(cloud_config(render_cloud_init(workload(command=["serve"]))))
    assert argv[argv.index("--entrypoint") + 1] == "serve"
    assert after_image(argv) == []
    argv = docker_argv(cloud_config(render_cloud_init(workload(command=[], args=[]))))
    assert "--entrypoint" not in argv
    assert after_image(argv) == []


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_the_argv_survives_the_shell_cloud_init_runs_it_with() -> None:
    env = {f"V{index}": value for index, value in enumerate(NASTY)}
    wl = workload(command=["$(id)", *NASTY], args=NASTY, env=env)
    argv = docker_argv(cloud_config(render_cloud_init(wl)))
    assert through_sh(argv) == argv[1:]


def test_a_nul_character_is_refused_naming_the_field() -> None:
    # The spec refuses it; render refuses it too for a workload built without
    # validation (model_construct), so no NUL ever reaches a VM.
    with pytest.raises(vmkit.SpecError) as caught:
        workload(env={"A": "x\0y"})
    assert caught.value.field == "env.A"
    unchecked = workload().model_copy(update={"args": ["ok", "x\0"]})
    with pytest.raises(vmkit.SpecError) as caught:
        render_cloud_init(unchecked)
    assert caught.value.field == "args.1"


def test_an_image_that_docker_would_read_as_an_option_is_refused() -> None:
    with pytest.raises(vmkit.SpecError) as caught:
        render_cloud_init(workload(image="--privileged"))
    assert caught.value.field == "image"


def test_rendering_is_deterministic() -> None:
    wl = workload(env={"A": "1"}, user_data="#!/bin/sh\necho hi\n")
    assert render_cloud_init(wl) == render_cloud_init(wl)


def test_the_ssh_key_never_goes_into_cloud_init() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me"
    for wl in (workload(ssh_public_key=key), workload(ssh_public_key=key, user_data="#!/bin/sh\n")):
        text = render_cloud_init(wl)
        assert text is not None
        assert "AAAAC3NzaC1lZDI1NTE5" not in text
        assert "ssh_authorized_keys" not in text


def test_without_image_or_user_data_there_is_nothing_to_render() -> None:
    assert render_cloud_init(vmkit.Workload(name="vm")) is None


def test_without_image_the_user_data_goes_unchanged() -> None:
    script = "#!/bin/bash\necho $HOME\n"
    assert render_cloud_init(vmkit.Workload(name="vm", user_data=script)) == script
    config = "#cloud-config\npackages: [htop]  # keep my comment\n"
    assert render_cloud_init(vmkit.Workload(name="vm", user_data=config)) == config


def test_user_cloud_config_is_merged() -> None:
    user = (
        "#cloud-config\n"
        "package_update: false\n"
        "packages: [htop]\n"
        "runcmd:\n  - [touch, /run/mine]\n"
        "write_files:\n  - path: /etc/motd\n    content: hi\n"
        "timezone: Europe/Paris\n"
    )
    config = cloud_config(render_cloud_init(workload(user_data=user)))
    assert config["packages"] == ["docker.io", "htop"]
    assert config["package_update"] is False  # the user's scalar wins
    assert config["runcmd"][0] == ["systemctl", "enable", "--now", "docker"]
    assert config["runcmd"][1][:2] == ["docker", "run"]
    assert config["runcmd"][2] == ["touch", "/run/mine"]  # vmkit's entries first
    assert config["write_files"] == [{"path": "/etc/motd", "content": "hi"}]
    assert config["timezone"] == "Europe/Paris"


def test_user_mappings_are_merged_key_by_key() -> None:
    user = "#cloud-config\nruncmd:\npackages:\napt:\n  preserve_sources_list: true\n"
    config = cloud_config(render_cloud_init(workload(user_data=user)))
    assert config["apt"] == {"preserve_sources_list": True}
    # Empty keys add nothing rather than erasing vmkit's lists.
    assert config["packages"] == ["docker.io"]
    assert docker_argv(config)


@pytest.mark.parametrize(
    "user_data",
    ["#cloud-config\n- just\n- a list\n", "#cloud-config\nkey: [unclosed\n", "#cloud-config\n42\n"],
)
def test_user_cloud_config_that_is_not_a_mapping_is_a_spec_error(user_data: str) -> None:
    with pytest.raises(vmkit.SpecError) as caught:
        render_cloud_init(workload(user_data=user_data))
    assert caught.value.field == "user_data"
    with pytest.raises(vmkit.SpecError):
        render_cloud_init(vmkit.Workload(name="vm", user_data=user_data))


def test_user_value_that_would_drop_vmkits_list_is_a_spec_error() -> None:
    with pytest.raises(vmkit.SpecError, match="runcmd") as caught:
        render_cloud_init(workload(user_data="#cloud-config\nruncmd: reboot\n"))
    assert caught.value.field == "user_data"


def parts_of(text: str | None) -> list[tuple[str, str]]:
    assert text is not None
    message = email.message_from_string(text)
    assert message.get_content_type() == "multipart/mixed"
    found = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found.append((part.get_content_type(), payload.decode(part.get_content_charset() or "")))
    return found


def test_a_user_script_goes_beside_the_cloud_config_in_a_multipart() -> None:
    script = '#!/bin/bash\necho "$(hostname)" > /run/host\n'
    parts = parts_of(render_cloud_init(workload(user_data=script, env={"A": "é ü"})))
    assert [kind for kind, _ in parts] == ["text/cloud-config", "text/x-shellscript"]
    config = cloud_config(parts[0][1])
    assert env_entries(docker_argv(config)) == ["A=é ü"]
    assert parts[1][1] == script


def test_other_user_data_is_left_for_cloud_init_to_recognise() -> None:
    boothook = "#cloud-boothook\necho early > /run/early\n"
    parts = parts_of(render_cloud_init(workload(user_data=boothook)))
    assert parts[1] == ("text/plain", boothook)


def test_a_user_mime_message_is_merged_not_nested() -> None:
    user = (
        'Content-Type: multipart/mixed; boundary="XX"\n'
        "MIME-Version: 1.0\n\n"
        "--XX\n"
        'Content-Type: text/cloud-config; charset="us-ascii"\n\n'
        "#cloud-config\npackages: [jq]\n\n"
        "--XX\n"
        'Content-Type: text/x-shellscript; charset="us-ascii"\n\n'
        "#!/bin/sh\necho hi\n\n"
        "--XX--\n"
    )
    parts = parts_of(render_cloud_init(workload(user_data=user)))
    assert [kind for kind, _ in parts] == ["text/cloud-config", "text/x-shellscript"]
    config = cloud_config(parts[0][1])
    assert config["packages"] == ["docker.io", "jq"]
    assert docker_argv(config)
    assert parts[1][1].startswith("#!/bin/sh\necho hi")


@settings(max_examples=200, deadline=None)
@given(
    env_value=st.text(),
    args=st.lists(st.text(), max_size=5),
    command=st.lists(st.text(), max_size=3),
)
def test_property_argv_round_trips_through_the_rendered_yaml(
    env_value: str, args: list[str], command: list[str]
) -> None:
    values = [env_value, *args, *command]
    if any("\0" in item or not _is_text(item) for item in values):
        # NUL and lone surrogates cannot reach a process: refused by the spec.
        with pytest.raises(vmkit.SpecError):
            workload(env={"VALUE": env_value}, args=args, command=command)
        return
    wl = workload(env={"VALUE": env_value}, args=args, command=command)
    argv = docker_argv(cloud_config(render_cloud_init(wl)))
    assert env_entries(argv) == [f"VALUE={env_value}"]
    if command:
        assert argv[argv.index("--entrypoint") + 1] == command[0]
        assert after_image(argv) == command[1:] + args
    else:
        assert "--entrypoint" not in argv
        assert after_image(argv) == args


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
@settings(max_examples=50, deadline=None)
@given(
    args=st.lists(
        st.text(alphabet=st.characters(exclude_characters="\0", exclude_categories=("Cs",))),
        max_size=4,
    )
)
def test_property_argv_survives_the_shell(args: list[str]) -> None:
    argv = docker_argv(cloud_config(render_cloud_init(workload(args=args))))
    assert through_sh(argv) == argv[1:]


# --- Pod manifests -----------------------------------------------------------

LABELS = {"team": "infra", "vmkit-workload": "web", "vmkit-replica": "2"}


def pod(**fields: Any) -> dict[str, Any]:
    return render_pod(workload(**fields), 2, labels=LABELS)


def only_container(manifest: dict[str, Any]) -> dict[str, Any]:
    containers = manifest["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def test_pod_identity_and_labels() -> None:
    manifest = pod()
    assert manifest["apiVersion"] == "v1"
    assert manifest["kind"] == "Pod"
    assert manifest["metadata"] == {"name": "web-2", "labels": LABELS}
    container = only_container(manifest)
    assert container["name"] == "web"
    assert container["image"] == "nginx:1.27"


def test_pod_carries_command_args_env_and_ports() -> None:
    manifest = pod(
        command=["/bin/sh", "-c"],
        args=["echo $HOME", ""],
        env={"B": "2", "A": "1 two", "C": "$(x)"},
        ports=[8080, vmkit.Port(port=53, protocol="udp")],
    )
    container = only_container(manifest)
    assert container["command"] == ["/bin/sh", "-c"]
    # "$" is doubled so the kubelet's $(VAR) expansion gives the text back.
    assert container["args"] == ["echo $$HOME", ""]
    assert container["env"] == [
        {"name": "B", "value": "2"},
        {"name": "A", "value": "1 two"},
        {"name": "C", "value": "$$(x)"},
    ]
    assert container["ports"] == [
        {"containerPort": 8080, "protocol": "TCP"},
        {"containerPort": 53, "protocol": "UDP"},
    ]


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's expansion of command, args and env values, as its
    third_party/forked/golang/expansion/expand.go does it: "$$" -> "$",
    "$(NAME)" -> the variable (kept as written when unknown), "$" + anything
    else kept."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env.get(name, text[i : end + 1]))
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("$()AB x\\n"), max_size=12), max_size=4))
def test_pod_values_survive_the_kubelets_expansion(values: list[str]) -> None:
    env = {f"V{i}": value for i, value in enumerate(values)}
    container = only_container(pod(command=["run", *values], args=values, env=env))
    defined = {"A": "expanded!", "HOME": "/root"}
    assert [kubelet_expand(v, defined) for v in container["command"]] == ["run", *values]
    assert [kubelet_expand(v, defined) for v in container.get("args", [])] == values
    got = {e["name"]: kubelet_expand(e["value"], defined) for e in container.get("env", [])}
    assert got == env


def test_pod_without_command_or_args_leaves_the_image_defaults() -> None:
    container = only_container(pod())
    assert "command" not in container
    assert "args" not in container
    assert "env" not in container
    assert "ports" not in container


@pytest.mark.parametrize(
    ("cpu", "memory", "expected"),
    [
        (0.5, "4GiB", {"cpu": "500m", "memory": "4Gi"}),
        (2, "1536MiB", {"cpu": "2", "memory": "1536Mi"}),
        (1.25, "3GiB", {"cpu": "1250m", "memory": "3Gi"}),
        (0.1, "64MiB", {"cpu": "100m", "memory": "64Mi"}),
        ("250m", "4GB", {"cpu": "250m", "memory": "4G"}),
    ],
)
def test_pod_requests_and_limits(cpu: Any, memory: Any, expected: dict[str, str]) -> None:
    container = only_container(pod(resources=vmkit.Resources(cpu=cpu, memory=memory)))
    assert container["resources"] == {"requests": expected, "limits": expected}


def test_gpu_only_when_asked() -> None:
    assert "nvidia.com/gpu" not in only_container(pod())["resources"]["limits"]
    resources = only_container(pod(resources=vmkit.Resources(gpu=2)))["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "2"
    assert resources["requests"]["nvidia.com/gpu"] == "2"


def test_quantities_are_exact() -> None:
    assert cpu_quantity(0.0001) == "1m"  # rounded up, never to zero
    assert cpu_quantity(3.0) == "3"
    assert memory_quantity(2**30 + 2**10) == "1048577Ki"
    assert memory_quantity(10**9 + 1) == str(10**9 + 1)


def test_pod_secure_defaults() -> None:
    manifest = pod()
    spec = manifest["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Always"
    assert spec["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert only_container(manifest)["securityContext"] == {"allowPrivilegeEscalation": False}


@pytest.mark.parametrize(
    ("isolation", "classes", "expected"),
    [
        ("container", None, None),
        ("container", {"sandbox": "runsc"}, None),
        ("sandbox", None, "gvisor"),
        ("vm", None, "kata"),
        ("sandbox", {"sandbox": "runsc"}, "runsc"),
        ("vm", {"sandbox": "runsc"}, "kata"),
        ("vm", {"vm": "kata-qemu"}, "kata-qemu"),
    ],
)
def test_runtime_class_follows_isolation(
    isolation: str, classes: dict[str, str] | None, expected: str | None
) -> None:
    manifest = render_pod(workload(isolation=isolation), 0, labels={}, runtime_classes=classes)
    assert manifest["spec"].get("runtimeClassName") == expected


def test_a_pod_needs_an_image() -> None:
    with pytest.raises(vmkit.Unsupported, match="needs an image"):
        render_pod(vmkit.Workload(name="vm"), 0, labels={})
