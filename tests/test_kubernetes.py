"""What is specific to the Kubernetes backend, against the HTTP fake of the API
server (tests/test_kubernetes_conformance.py runs the shared semantics).

The backend is reached as a user reaches a private API server: ``host`` and
``token``, or a kubeconfig. Faults come from the fake's FaultPlan; pods are
inspected through the fake's own helpers or the official client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes = pytest.importorskip("kubernetes")

from kubernetes import client  # noqa: E402

import vmkit  # noqa: E402
from vmkit.providers.kubernetes import KubernetesProvider  # noqa: E402
from vmkit.testing.fakes.kubernetes import KubernetesFake, make_api_client  # noqa: E402

TOKEN = "k8s-s3cr3t-never-printed"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "web.yaml"


@pytest.fixture
def fake() -> Iterator[KubernetesFake]:
    with KubernetesFake(token=TOKEN) as server:
        yield server


def connect(fake: KubernetesFake, **options: Any) -> KubernetesProvider:
    config: dict[str, Any] = {"host": fake.url, "token": TOKEN, "poll_interval": 0.01}
    config.update(options)
    provider = vmkit.connect("kubernetes", **config)
    assert isinstance(provider, KubernetesProvider)
    return provider


@pytest.fixture
def k8s(fake: KubernetesFake) -> KubernetesProvider:
    return connect(fake)


def small(name: str, replicas: int = 1, **fields: Any) -> vmkit.Workload:
    spec: dict[str, Any] = {"image": "nginx:1.27", "resources": {"cpu": 0.25, "memory": "256MiB"}}
    spec.update(fields)
    return vmkit.Workload(name=name, replicas=replicas, **spec)


def raw_api(fake: KubernetesFake) -> Any:
    return client.CoreV1Api(make_api_client(fake))


# ------------------------------------------------------------- the Pod itself


def test_the_example_deploys_unchanged_as_the_rendered_pods(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    workload = vmkit.Workload.from_yaml(EXAMPLE)
    plan = k8s.plan(workload)
    assert [(r.operation, r.replicas) for r in plan.requests] == [
        ("k8s:CreatePod", (0,)),
        ("k8s:CreatePod", (1,)),
        ("k8s:CreatePod", (2,)),
    ]
    body = plan.requests[1].body
    assert body["metadata"] == {
        "name": "web-1",
        "namespace": "default",
        "labels": {
            "team": "demo",
            "vmkit-workload": "web",
            "vmkit-spec": workload.spec_hash,
            "vmkit-replica": "1",
            "app.kubernetes.io/managed-by": "vmkit",
        },
    }
    (container,) = body["spec"]["containers"]
    assert container["image"] == "nginx:1.27"
    assert container["env"] == [
        {"name": "NGINX_ENTRYPOINT_QUIET_LOGS", "value": "1"},
        {"name": "MODE", "value": "demo"},
    ]
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    quantities = {"cpu": "2", "memory": "4Gi"}
    assert container["resources"] == {"requests": quantities, "limits": quantities}

    machines = k8s.apply(plan)
    assert [m.name for m in machines] == ["web-0", "web-1", "web-2"]
    stored = fake.pod("default", "web-1")
    assert stored is not None
    assert stored["metadata"]["labels"] == body["metadata"]["labels"]
    assert stored["spec"]["containers"][0]["env"] == container["env"]
    machine = machines[1]
    assert (machine.kind, machine.size, machine.image) == ("container", "2cpu/4Gi", "nginx:1.27")
    assert machine.location == f"{fake.url.split('//')[1]}/default"
    assert machine.private_ip == stored["status"]["podIP"]
    assert machine.public_ip is None
    assert machine.labels == {"team": "demo"}
    assert machine.id == stored["metadata"]["uid"]


def test_secure_defaults_reach_the_stored_pod(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    (machine,) = k8s.deploy(small("secure"))
    pod = fake.pod("default", machine.name)
    assert pod is not None
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert not spec.get("volumes"), "no service-account token volume is mounted"
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["status"]["qosClass"] == "Guaranteed"  # requests == limits


def test_only_declared_ports_and_no_host_access_or_ssh(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me"
    workload = small("ports", ports=[80, vmkit.Port(port=53, protocol="udp")], ssh_public_key=key)
    (machine,) = k8s.deploy(workload)
    pod = fake.pod("default", machine.name)
    assert pod is not None
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["ports"] == [
        {"containerPort": 80, "protocol": "TCP"},
        {"containerPort": 53, "protocol": "UDP"},
    ]
    assert not any("hostPort" in port for port in container["ports"])
    assert not any(spec.get(f) for f in ("hostNetwork", "hostPID", "hostIPC"))
    assert not container["securityContext"].get("privileged")
    # The SSH key is a VM field: no port 22, and the key goes nowhere in the pod.
    assert "AAAAC3NzaC1lZDI1NTE5" not in str(pod)


def test_gpu_isolation_and_options_become_pod_fields(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    fake.add_runtime_class("gvisor-fast", "runsc")
    workload = small(
        "opts",
        resources={"cpu": 0.5, "memory": "512MiB", "gpu": 1},
        isolation="sandbox",
        options={
            "kubernetes": {
                "node_selector": {"pool": "gpu"},
                "service_account": "runner",
                "image_pull_secrets": ["regcred"],
                "runtime_classes": {"sandbox": "gvisor-fast"},
            }
        },
    )
    spec = k8s.plan(workload).requests[0].body["spec"]
    assert spec["containers"][0]["resources"]["limits"] == {
        "cpu": "500m",
        "memory": "512Mi",
        "nvidia.com/gpu": "1",
    }
    assert spec["runtimeClassName"] == "gvisor-fast"
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["serviceAccountName"] == "runner"
    assert spec["automountServiceAccountToken"] is False
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"nodeSelector": {"a": "b"}}, "options.kubernetes.nodeSelector"),
        ({"service_account": "Not_Valid"}, "options.kubernetes.service_account"),
        (
            {"runtime_classes": {"container": "runc"}},
            "options.kubernetes.runtime_classes.container",
        ),
        ({"image_pull_secrets": "regcred"}, "options.kubernetes.image_pull_secrets"),
    ],
)
def test_bad_options_are_spec_errors_before_any_call(
    k8s: KubernetesProvider, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(vmkit.SpecError) as info:
        k8s.plan(small("bad", options={"kubernetes": options}))
    assert info.value.field == field
    assert sum(k8s.api_calls.values()) == 0


def test_vm_only_workloads_are_refused_before_any_call(k8s: KubernetesProvider) -> None:
    with pytest.raises(vmkit.Unsupported, match="needs an image"):
        k8s.deploy(vmkit.Workload(name="plain-vm"))
    with pytest.raises(vmkit.Unsupported, match="user_data"):
        k8s.deploy(small("cloudinit", user_data="#!/bin/sh\necho hi\n"))
    assert sum(k8s.api_calls.values()) == 0


# ------------------------------------------------------- isolation on demand


def installed(fake: KubernetesFake, *names: str) -> None:
    """RuntimeClasses as gVisor and Kata install them (kata with its overhead)."""
    for name in names:
        handler = "runsc" if name.startswith("gvisor") else name
        overhead = {"memory": "160Mi", "cpu": "250m"} if name.startswith("kata") else None
        fake.add_runtime_class(name, handler, overhead=overhead)


def test_sandbox_and_vm_pods_run_under_their_runtime_class(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    installed(fake, "gvisor", "kata")
    boxed = k8s.deploy(small("boxed", replicas=3, isolation="sandbox"))
    assert [m.state for m in boxed] == [vmkit.MachineState.RUNNING] * 3
    # One read of the class per deploy, not one per pod.
    assert fake.verb_count("get", "runtimeclasses") == 1
    (vm,) = k8s.deploy(small("vm", isolation="vm"))
    plain = k8s.deploy(small("plain"))[0]
    assert fake.verb_count("get", "runtimeclasses") == 2, "container isolation reads no class"
    stored = {p["metadata"]["name"]: p for p in fake.pods("default")}
    assert {stored[f"boxed-{i}"]["spec"]["runtimeClassName"] for i in range(3)} == {"gvisor"}
    assert stored["vm-0"]["spec"]["runtimeClassName"] == "kata"
    # Admission copied Kata's overhead into the pod, as the API server does.
    assert stored["vm-0"]["spec"]["overhead"] == {"memory": "160Mi", "cpu": "250m"}
    assert "runtimeClassName" not in stored["plain-0"]["spec"]
    assert stored["vm-0"]["metadata"]["labels"]["vmkit-isolation"] == "vm"
    assert "vmkit-isolation" not in stored["plain-0"]["metadata"]["labels"]
    assert vm.labels == plain.labels == {}, "vmkit's own labels are not the user's"
    assert not k8s.plan(small("vm", isolation="vm")).changes
    assert fake.verb_count("get", "runtimeclasses") == 2, "a plan that creates nothing reads none"
    # The administrator resizes Kata's overhead: a reboot (a new pod) gets the new one.
    fake.add_runtime_class("kata", "kata", overhead={"memory": "200Mi", "cpu": "250m"})
    rebooted = vm.reboot()
    assert rebooted.state == vmkit.MachineState.RUNNING
    assert rebooted.raw["spec"]["overhead"] == {"memory": "200Mi", "cpu": "250m"}
    assert rebooted.raw["spec"]["runtimeClassName"] == "kata"


def test_the_target_maps_levels_to_classes_and_the_workload_wins(fake: KubernetesFake) -> None:
    k8s = connect(fake, runtime_classes={"vm": "kata-qemu"})
    installed(fake, "gvisor", "kata-qemu", "kata-fc")

    def runtime_class(workload: vmkit.Workload) -> str:
        return str(k8s.plan(workload).requests[0].body["spec"]["runtimeClassName"])

    assert runtime_class(small("a", isolation="vm")) == "kata-qemu"
    assert runtime_class(small("b", isolation="sandbox")) == "gvisor", "unmapped: the default"
    own = {"kubernetes": {"runtime_classes": {"vm": "kata-fc"}}}
    assert runtime_class(small("c", isolation="vm", options=own)) == "kata-fc"
    (machine,) = k8s.deploy(small("c", isolation="vm", options=own))
    pod = fake.pod("default", machine.name)
    assert pod is not None
    assert pod["spec"]["runtimeClassName"] == "kata-fc"


@pytest.mark.parametrize(
    ("mapping", "key"),
    [
        ({"container": "runc"}, "runtime_classes.container"),
        ({"vm": "Kata_QEMU"}, "runtime_classes.vm"),
        ({"sandbox": 7}, "runtime_classes.sandbox"),
        ("kata-qemu", "runtime_classes"),
    ],
)
def test_a_bad_target_mapping_is_a_config_error_naming_the_key(
    fake: KubernetesFake, mapping: Any, key: str
) -> None:
    with pytest.raises(vmkit.ConfigError, match=rf"kubernetes: {key}\b"):
        connect(fake, runtime_classes=mapping)


def test_a_bad_class_in_the_workload_options_is_a_spec_error_naming_it(
    k8s: KubernetesProvider,
) -> None:
    options = {"kubernetes": {"runtime_classes": {"vm": "Kata_QEMU"}}}
    with pytest.raises(vmkit.SpecError) as info:
        k8s.plan(small("bad", isolation="vm", options=options))
    assert info.value.field == "options.kubernetes.runtime_classes.vm"
    assert sum(k8s.api_calls.values()) == 0


def test_runtime_classes_in_a_targets_file(
    fake: KubernetesFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    targets = {
        "lab": {"provider": "kubernetes", "host": fake.url, "runtime_classes": {"vm": "kata-qemu"}},
        "typo": {"provider": "kubernetes", "host": fake.url, "runtime_classes": {"mv": "kata"}},
    }
    (tmp_path / "vmkit.yaml").write_text(yaml.safe_dump(targets), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    installed(fake, "kata-qemu")
    lab = vmkit.connect("lab", token=TOKEN)
    (machine,) = lab.deploy(small("lab", isolation="vm"))
    pod = fake.pod("default", machine.name)
    assert pod is not None
    assert pod["spec"]["runtimeClassName"] == "kata-qemu"
    with pytest.raises(vmkit.ConfigError, match=r"runtime_classes\.mv"):
        vmkit.connect("typo", token=TOKEN)


@pytest.mark.parametrize(
    ("isolation", "name", "runtime"),
    [("sandbox", "gvisor", "gVisor"), ("vm", "kata", "Kata Containers")],
)
def test_a_missing_runtime_class_fails_before_any_pod_is_made(
    k8s: KubernetesProvider, fake: KubernetesFake, isolation: str, name: str, runtime: str
) -> None:
    workload = small("iso", replicas=3, isolation=isolation)
    for attempt in (lambda: k8s.plan(workload), lambda: k8s.deploy(workload)):
        with pytest.raises(vmkit.Unsupported) as info:
            attempt()
        message = str(info.value)
        assert f'isolation="{isolation}" needs the RuntimeClass "{name}"' in message
        assert f"Install {runtime}" in message
        assert f'runtime_classes={{"{isolation}": "<class>"}}' in message
    assert fake.pods("default") == []
    assert fake.verb_count("create", "pods") == 0
    assert "k8s:CreatePod" not in k8s.api_calls
    assert fake.verb_count("get", "runtimeclasses") == 2  # the plan's and the deploy's
    # Once the runtime is installed, the same deploy goes through.
    installed(fake, name)
    assert [m.state for m in k8s.deploy(workload)] == [vmkit.MachineState.RUNNING] * 3


def test_a_missing_class_replaces_nothing(k8s: KubernetesProvider, fake: KubernetesFake) -> None:
    (before,) = k8s.deploy(small("move"))
    with pytest.raises(vmkit.Unsupported, match='RuntimeClass "kata"'):
        k8s.deploy(small("move", isolation="vm"))
    assert [p["metadata"]["uid"] for p in fake.pods("default")] == [before.id]
    assert fake.verb_count("delete", "pods") == 0


def test_a_server_without_runtime_classes_says_so(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    # A cluster older than node.k8s.io/v1 answers a bare 404 for the group.
    fake.faults.fail(404, path=r"/apis/node\.k8s\.io/", count=None)
    with pytest.raises(vmkit.Unsupported, match="does not serve RuntimeClasses"):
        k8s.deploy(small("old", isolation="sandbox"))
    assert fake.pods("default") == []


def test_without_rbac_to_read_classes_the_api_server_decides(
    k8s: KubernetesProvider, fake: KubernetesFake, caplog: pytest.LogCaptureFixture
) -> None:
    fake.forbid("get", "runtimeclasses", "node.k8s.io")
    installed(fake, "kata")
    machines = k8s.deploy(small("ok", replicas=2, isolation="vm"))
    assert [m.state for m in machines] == [vmkit.MachineState.RUNNING] * 2
    assert "cannot check that RuntimeClass kata exists" in caplog.text
    # A class that is missing: RuntimeClass admission refuses every pod.
    with pytest.raises(vmkit.Unsupported) as info:
        k8s.deploy(small("no", replicas=2, isolation="sandbox"))
    assert sorted(info.value.failed) == ["no-0", "no-1"]
    for reason in info.value.failed.values():
        assert 'pod rejected: RuntimeClass "gvisor" not found' in reason
        assert "runtime_classes=" in reason
    assert {p["metadata"]["name"] for p in fake.pods("default")} == {"ok-0", "ok-1"}


def test_a_changed_mapping_replaces_the_pods_of_the_old_class(fake: KubernetesFake) -> None:
    installed(fake, "kata", "kata-qemu")
    (old,) = connect(fake).deploy(small("mig", isolation="vm"))
    moved = connect(fake, runtime_classes={"vm": "kata-qemu"})
    plan = moved.plan(small("mig", isolation="vm"))
    assert [(a.kind, a.reason) for a in plan.actions] == [
        ("replace", "runtime class kata -> kata-qemu")
    ]
    (new,) = moved.apply(plan)
    assert new.id != old.id
    pod = fake.pod("default", "mig-0")
    assert pod is not None
    assert pod["spec"]["runtimeClassName"] == "kata-qemu"
    assert not moved.plan(small("mig", isolation="vm")).changes


def test_a_class_the_cluster_gives_container_pods_is_kept(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    # A mutating admission policy (a cluster default runtime, say) may set
    # runtimeClassName on pods that ask for none. isolation="container" asks
    # for no class, so the pod is up to date: replacing it would only get the
    # class set again, on every deploy.
    fake.add_runtime_class("runc-hardened", "runc")
    spec = small("hooked", replicas=2)
    for request in k8s.plan(spec).requests:
        body = dict(request.body)
        body["spec"] = {**body["spec"], "runtimeClassName": "runc-hardened"}
        raw_api(fake).create_namespaced_pod("default", body)
    made = {p["metadata"]["uid"] for p in fake.pods("default")}

    plan = k8s.plan(spec)
    assert [a.kind for a in plan.actions] == ["keep", "keep"], plan.actions
    machines = k8s.deploy(spec)
    assert {m.id for m in machines} == made
    assert fake.verb_count("delete", "pods") == 0


def test_the_simulated_cluster_has_gvisor_and_kata() -> None:
    from vmkit.testing.sim import simulated_kubernetes

    with simulated_kubernetes() as config:
        k8s = vmkit.connect("kubernetes", **config)
        for isolation in ("sandbox", "vm"):
            machines = k8s.deploy(small(f"sim-{isolation}", replicas=2, isolation=isolation))
            assert [m.state for m in machines] == [vmkit.MachineState.RUNNING] * 2
    with simulated_kubernetes(runtime_classes={}) as config:
        bare = vmkit.connect("kubernetes", **config)
        with pytest.raises(vmkit.Unsupported, match='RuntimeClass "gvisor"'):
            bare.deploy(small("bare", isolation="sandbox"))


# -------------------------------------------------------------------- waiting


def test_waiting_is_one_watch_and_no_polling(k8s: KubernetesProvider, fake: KubernetesFake) -> None:
    machines = k8s.deploy(small("watched", replicas=6))
    assert [m.state for m in machines] == [vmkit.MachineState.RUNNING] * 6
    assert fake.watch_count("pods") == 1
    assert fake.verb_count("get", "pods") == 0, "no pod is read one by one"
    # One listing for the plan, one to start the watch from.
    assert fake.verb_count("list", "pods") == 2
    assert k8s.api_calls["k8s:WatchPods"] == 1


def test_progress_reports_state_changes_of_the_whole_batch(k8s: KubernetesProvider) -> None:
    seen: list[list[str]] = []
    k8s.deploy(small("prog", replicas=3), progress=lambda ms: seen.append([m.state for m in ms]))
    assert seen[0] == ["pending"] * 3
    assert seen[-1] == ["running"] * 3
    assert all(len(states) == 3 for states in seen)


def test_an_image_that_cannot_be_pulled_fails_fast_naming_the_pod(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    fake.fail_image("*:does-not-exist")
    started = time.monotonic()
    with pytest.raises(vmkit.ProviderError) as info:
        k8s.deploy(small("pull", image="nginx:does-not-exist"), timeout=60)
    assert time.monotonic() - started < 5
    assert not isinstance(info.value, vmkit.DeployTimeout)
    message = str(info.value)
    assert "pull-0" in message
    assert "ErrImagePull" in message or "ImagePullBackOff" in message
    assert "nginx:does-not-exist" in message
    assert list(info.value.failed) == ["pull-0"]
    # The failed pod was deleted before the error was raised: nothing lingers.
    assert k8s.list("pull") == []
    assert fake.pods("default") == []
    # A fixed image deploys.
    fixed = k8s.deploy(small("pull"))
    assert fixed[0].state == vmkit.MachineState.RUNNING


def test_a_request_no_node_fits_fails_fast_as_unschedulable(k8s: KubernetesProvider) -> None:
    started = time.monotonic()
    with pytest.raises(vmkit.ProviderError) as info:
        k8s.deploy(small("huge", resources={"cpu": 64, "memory": "1GiB"}), timeout=60)
    assert time.monotonic() - started < 5
    assert "huge-0 (Unschedulable: 0/1 nodes are available: 1 Insufficient cpu" in str(info.value)


def test_a_crash_looping_pod_is_failed_and_replaced_by_the_next_deploy(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    # Without a readiness probe a container is Ready as soon as it starts, so a
    # deploy may return before its first crash (as kubectl's would); what
    # follows is a pod in CrashLoopBackOff, which vmkit reports as failed.
    fake.crash_image("crashy:*")
    workload = small("crash", image="crashy:1")
    (machine,) = k8s.deploy(workload, wait=False)
    deadline = time.monotonic() + 5
    while (current := machine.refresh()).state != vmkit.MachineState.FAILED:
        assert time.monotonic() < deadline, "the crash loop was never reported"
        time.sleep(0.02)
    waiting = current.raw["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "CrashLoopBackOff"
    assert [(a.kind, a.reason) for a in k8s.plan(workload).actions] == [("replace", "failed")]


def test_the_deadline_names_the_pending_pods() -> None:
    with KubernetesFake(token=TOKEN, start_delay=60) as slow:
        k8s = connect(slow)
        with pytest.raises(vmkit.DeployTimeout) as info:
            k8s.deploy(small("slow", replicas=2), timeout=0.5)
        assert info.value.pending == ("slow-0", "slow-1")
        assert slow.watch_count() == 1


def test_an_expired_watch_is_relisted_and_the_wait_goes_on() -> None:
    with KubernetesFake(token=TOKEN, start_delay=0.4) as fake:
        k8s = connect(fake)
        api = raw_api(fake)
        calls = 0

        def compact_once(_: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                # Called on the first list, before the watch opens: move the
                # revision on and drop the history, so the watch's
                # resourceVersion is gone (410 in an ERROR event).
                api.create_namespaced_pod(
                    "default",
                    {
                        "metadata": {"name": "other"},
                        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
                    },
                )
                fake.compact()

        machines = k8s.deploy(small("gone", replicas=2), progress=compact_once)
        assert [m.state for m in machines] == [vmkit.MachineState.RUNNING] * 2
        # plan, first list, and the relist after the 410
        assert k8s.api_calls["k8s:ListPods"] == 3
        assert k8s.api_calls["k8s:WatchPods"] >= 1


def test_creates_run_concurrently(k8s: KubernetesProvider, fake: KubernetesFake) -> None:
    fake.faults.delay(0.25, method="POST", path=r"/pods$")
    started = time.monotonic()
    k8s.deploy(small("conc", replicas=8), wait=False)
    # Eight creates of 0.25 s one after the other would take 2 s.
    assert time.monotonic() - started < 1.2
    assert fake.verb_count("create", "pods") == 8


# --------------------------------------------------------- conflicts, retries


def test_a_lost_create_response_is_retried_without_a_duplicate(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    fake.faults.drop_responses(count=1, method="POST", path=r"/pods$")
    (machine,) = k8s.deploy(small("lost"))
    assert machine.state == vmkit.MachineState.RUNNING
    assert fake.verb_count("create", "pods") == 2  # the lost one, then 409 AlreadyExists
    assert k8s.api_calls["k8s:CreatePod"] == 2
    pods = fake.pods("default")
    assert [p["metadata"]["name"] for p in pods] == ["lost-0"]
    assert machine.id == pods[0]["metadata"]["uid"]


def test_a_conflicting_pod_of_another_spec_is_replaced(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    workload = small("clash", env={"VERSION": "2"})
    plan = k8s.plan(workload)
    # Another deploy (older spec) created the pod between plan and apply.
    old = dict(plan.requests[0].body)
    old["metadata"] = {
        **old["metadata"],
        "labels": {**old["metadata"]["labels"], "vmkit-spec": "0ld"},
    }
    stale = raw_api(fake).create_namespaced_pod("default", old)
    (machine,) = k8s.apply(plan)
    assert machine.id != stale.metadata.uid
    assert machine.spec_hash == workload.spec_hash
    pods = fake.pods("default")
    assert [(p["metadata"]["name"], p["metadata"]["uid"]) for p in pods] == [
        ("clash-0", machine.id)
    ]


def test_a_same_named_pod_vmkit_does_not_own_is_left_alone(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    plan = k8s.plan(small("mine"))
    body = {"metadata": {"name": "mine-0"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}
    theirs = raw_api(fake).create_namespaced_pod("default", body)
    with pytest.raises(vmkit.ProviderError, match=r"mine-0 already exists .* not a replica"):
        k8s.apply(plan)
    pod = fake.pod("default", "mine-0")
    assert pod is not None
    assert pod["metadata"]["uid"] == theirs.metadata.uid


def test_a_429_burst_is_retried_by_vmkit_not_by_urllib3(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    fake.faults.fail(429, count=3, method="POST", path=r"/pods$", retry_after=0)
    (machine,) = k8s.deploy(small("burst"))
    assert machine.state == vmkit.MachineState.RUNNING
    assert fake.count("fault") == 3
    # Every attempt is vmkit's, counted: urllib3's own retries are off.
    assert k8s.api_calls["k8s:CreatePod"] == 4
    assert fake.verb_count("create", "pods") == 1


def test_throttling_past_the_budget_is_throttled(fake: KubernetesFake) -> None:
    k8s = connect(fake, retry_attempts=2)
    fake.faults.fail(429, count=None, path=r"/pods$", retry_after=0)
    with pytest.raises(vmkit.Throttled):
        k8s.list()
    assert fake.count("fault") == 2


def test_api_errors_are_mapped(fake: KubernetesFake) -> None:
    with pytest.raises(vmkit.NotFound, match='namespaces "nowhere" not found'):
        connect(fake, namespace="nowhere").deploy(small("nons"))
    with KubernetesFake(token=TOKEN, anonymous=True) as strict:
        anonymous = vmkit.connect("kubernetes", host=strict.url)
        with pytest.raises(vmkit.AuthError, match="system:anonymous"):
            anonymous.list()


# ---------------------------------------------------------------- credentials


def test_token_auth_sends_bearer_from_host_and_token(fake: KubernetesFake) -> None:
    assert connect(fake).list() == []
    wrong = connect(fake, token="not-the-token")
    with pytest.raises(vmkit.AuthError) as info:
        wrong.list()
    assert "not-the-token" not in str(info.value)
    assert TOKEN not in str(info.value)


def test_token_auth_from_a_kubeconfig_dict_and_file(fake: KubernetesFake, tmp_path: Path) -> None:
    from_dict = vmkit.connect("kubernetes", kubeconfig=fake.kubeconfig(), poll_interval=0.01)
    assert from_dict.location == "vmkit-fake/default"
    (machine,) = from_dict.deploy(small("kc"))
    path = tmp_path / "config"
    raw_api(fake).create_namespace({"metadata": {"name": "team"}})
    path.write_text(yaml.safe_dump(fake.kubeconfig(namespace="team")), encoding="utf-8")
    from_file = vmkit.connect("kubernetes", kubeconfig=str(path), context="vmkit-fake")
    assert from_file.location == "vmkit-fake/team"
    assert from_file.list() == []  # the context's namespace
    assert [m.id for m in connect(fake).list()] == [machine.id]


def test_kubeconfig_from_the_environment_and_a_token_override(
    fake: KubernetesFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = fake.kubeconfig()
    config["users"][0]["user"] = {"token": "stale"}
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.setenv("KUBECONFIG", str(path))
    with pytest.raises(vmkit.AuthError):
        vmkit.connect("kubernetes").list()
    # A token alone overrides the kubeconfig user's, as kubectl --token does.
    assert vmkit.connect("kubernetes", token=TOKEN).list() == []


def test_missing_credentials_are_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(vmkit.ConfigError):
        vmkit.connect("kubernetes")
    assert KubernetesProvider.credentials_status() is not None
    assert KubernetesProvider.credentials_status(host="https://k8s.example:6443", token="t") is None
    with pytest.raises(vmkit.ConfigError, match="no context named 'nope'"):
        vmkit.connect("kubernetes", kubeconfig={**_minimal_kubeconfig()}, context="nope")
    with pytest.raises(vmkit.ConfigError, match="grace_period"):
        vmkit.connect("kubernetes", host="http://127.0.0.1:1", grace_period=-1)


def _minimal_kubeconfig() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "only", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "only",
    }


# ------------------------------------------------------------------ lifecycle


def test_logs_are_the_exact_container_text(k8s: KubernetesProvider, fake: KubernetesFake) -> None:
    (machine,) = k8s.deploy(small("talk", command=["sh", "-c"], args=["serve"]))
    fake.append_log("default", machine.name, "héllo wörld ✓\nline two")
    assert machine.logs() == "started nginx:1.27: sh -c serve\nhéllo wörld ✓\nline two\n"


def test_reboot_recreates_the_pod_under_the_same_name(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    (machine,) = k8s.deploy(small("boot"))
    rebooted = machine.reboot()
    assert rebooted.name == machine.name == "boot-0"
    assert rebooted.id != machine.id
    assert rebooted.state == vmkit.MachineState.RUNNING
    assert rebooted.spec_hash == machine.spec_hash
    with pytest.raises(vmkit.NotFound):
        k8s.get(machine.id)
    assert [m.id for m in k8s.list("boot")] == [rebooted.id]
    assert not k8s.plan(small("boot")).changes


def test_stop_and_start_are_unsupported_naming_what_to_do(k8s: KubernetesProvider) -> None:
    assert k8s.capabilities == frozenset({"reboot"})
    (machine,) = k8s.deploy(small("still"))
    for operation in (machine.stop, machine.start):
        with pytest.raises(vmkit.Unsupported) as info:
            operation()
        assert "delete it" in str(info.value)
        assert "VM providers (aws, gcp, azure)" in str(info.value)
    assert machine.refresh().state == vmkit.MachineState.RUNNING


def test_snapshots_are_unsupported_and_name_a_vm_provider(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    (machine,) = k8s.deploy(small("disk"))
    foreign = vmkit.Snapshot(
        id="snap-0123456789abcdef0",
        name="before",
        provider="aws",
        workload="disk",
        machine_id=machine.id,
        state="completed",
    )
    calls = sum(k8s.api_calls.values())
    operations = {
        "snapshot": lambda: machine.snapshot("before"),
        "snapshots": lambda: k8s.snapshots("disk"),
        "restore": lambda: machine.restore(foreign),
        "delete_snapshot": lambda: k8s.delete_snapshot(foreign.id),
    }
    for name, operation in operations.items():
        with pytest.raises(vmkit.Unsupported) as info:
            operation()
        message = str(info.value)
        assert "kubernetes pods have no disk" in message, name
        assert "VM provider (aws, gcp, azure)" in message, name
    assert sum(k8s.api_calls.values()) == calls, "refused before any call"
    # destroy(snapshots=True) has no snapshot to look for: it destroys the pods.
    assert [m.name for m in k8s.destroy("disk", snapshots=True)] == ["disk-0"]
    assert fake.pods("default") == []


def test_deleting_uses_the_grace_period() -> None:
    # 30 s of grace pass in 0.6 s on this fake.
    with KubernetesFake(token=TOKEN, grace_scale=0.02) as fake:
        k8s = connect(fake)
        (machine,) = k8s.deploy(small("grace"))
        k8s.delete(machine.id, wait=False)
        pod = fake.pod("default", "grace-0")
        assert pod is not None
        assert pod["metadata"]["deletionGracePeriodSeconds"] == 30
        assert k8s.get(machine.id).state == vmkit.MachineState.DELETING
        k8s.delete(machine.id)
        assert fake.pod("default", "grace-0") is None
        quick = connect(fake, grace_period=0)
        (again,) = quick.deploy(small("grace"))
        quick.delete(again.id, wait=False)
        assert fake.pod("default", "grace-0") is None


def test_ids_that_are_not_uids_are_not_found_without_a_call(k8s: KubernetesProvider) -> None:
    with pytest.raises(vmkit.NotFound):
        k8s.get("default/web-0")
    assert sum(k8s.api_calls.values()) == 0


# ------------------------------------------------ quotas, races, finalizers, gc


def quota(fake: KubernetesFake, pods: int) -> None:
    body = {"metadata": {"name": "pods"}, "spec": {"hard": {"pods": str(pods)}}}
    raw_api(fake).create_namespaced_resource_quota("default", body)


def test_a_full_quota_keeps_the_healthy_replicas_and_names_the_refused(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    quota(fake, 2)
    with pytest.raises(vmkit.QuotaExceeded) as info:
        k8s.deploy(small("q", replicas=3))
    pods = {p["metadata"]["name"] for p in fake.pods("default")}
    assert len(pods) == 2
    (refused,) = info.value.failed
    assert refused not in pods
    assert refused.startswith("q-")
    assert "exceeded quota: pods" in info.value.failed[refused]
    assert refused in str(info.value)
    assert [m.state for m in k8s.list("q")] == [vmkit.MachineState.RUNNING] * 2
    raw_api(fake).delete_namespaced_resource_quota("pods", "default")
    assert [m.name for m in k8s.deploy(small("q", replicas=3))] == ["q-0", "q-1", "q-2"]


def test_an_atomic_deploy_into_a_full_quota_leaves_nothing(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    quota(fake, 2)
    with pytest.raises(vmkit.QuotaExceeded):
        k8s.deploy(small("all", replicas=3), atomic=True)
    assert fake.pods("default") == []


def test_a_lost_create_answer_retried_into_a_full_quota_adopts_the_pod(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    # The retry meets quota admission again, and the pod the lost attempt
    # made fills the quota: the API server answers 403, not 409.
    quota(fake, 1)
    fake.faults.drop_responses(count=1, method="POST", path=r"/pods$")
    (machine,) = k8s.deploy(small("tight"))
    assert machine.state == vmkit.MachineState.RUNNING
    assert fake.verb_count("create", "pods") == 2
    pods = fake.pods("default")
    assert [p["metadata"]["uid"] for p in pods] == [machine.id]


def test_racing_deploys_share_the_pods_and_delete_nothing(fake: KubernetesFake) -> None:
    first, second = connect(fake), connect(fake)
    workload = small("race", replicas=4)
    plans = [first.plan(workload), second.plan(workload)]
    barrier = threading.Barrier(2)
    results: list[list[vmkit.Machine]] = [[], []]

    def deploy(index: int, provider: KubernetesProvider) -> None:
        barrier.wait()
        results[index] = provider.apply(plans[index])

    threads = [threading.Thread(target=deploy, args=(i, p)) for i, p in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [m.id for m in results[0]] == [m.id for m in results[1]]
    assert sorted(p["metadata"]["uid"] for p in fake.pods("default")) == sorted(
        m.id for m in results[0]
    )
    assert fake.verb_count("create", "pods") == 8  # each of the two sent its four
    assert fake.verb_count("delete", "pods") == 0


def test_destroy_fails_loudly_on_a_pod_a_finalizer_keeps(fake: KubernetesFake) -> None:
    k8s = connect(fake, timeout=1.0)
    k8s.deploy(small("kept", replicas=2))
    fake.set_finalizers("default", "kept-1", ["example.com/hold"])
    with pytest.raises(vmkit.DeployTimeout) as info:
        k8s.destroy("kept")
    assert info.value.pending == ("kept-1",)
    assert [p["metadata"]["name"] for p in fake.pods("default")] == ["kept-1"]
    assert k8s.list("kept")[0].state == vmkit.MachineState.DELETING
    fake.set_finalizers("default", "kept-1", [])
    assert k8s.destroy("kept") == []
    assert fake.pods("default") == []


def test_a_deadline_during_slow_pulls_leaves_the_pods_to_come_up(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    fake.hold_starts()
    with pytest.raises(vmkit.DeployTimeout) as info:
        k8s.deploy(small("pull", replicas=2), timeout=0.5)
    assert info.value.pending == ("pull-0", "pull-1")
    held = sorted(p["metadata"]["uid"] for p in fake.pods("default"))
    assert len(held) == 2
    fake.release_starts()
    machines = k8s.deploy(small("pull", replicas=2))
    assert sorted(m.id for m in machines) == held
    assert fake.verb_count("create", "pods") == 2


def test_gc_finds_nothing_on_kubernetes_and_touches_no_pod(
    k8s: KubernetesProvider, fake: KubernetesFake
) -> None:
    # A pod is the machine itself: even a failed one of a workload nobody
    # deploys any more is a machine (list shows it, destroy deletes it), not
    # an orphan.
    k8s.deploy(small("live"))
    fake.fail_image("*:gone")
    k8s.deploy(small("dead", image="nginx:gone"), wait=False)
    before = {p["metadata"]["uid"] for p in fake.pods()}
    calls = sum(k8s.api_calls.values())
    assert k8s.gc(dry_run=True) == []
    assert k8s.gc() == []
    assert k8s.gc("dead") == []
    assert sum(k8s.api_calls.values()) == calls
    assert [m.name for m in k8s.list()] == ["dead-0", "live-0"]
    assert {p["metadata"]["uid"] for p in fake.pods()} == before
