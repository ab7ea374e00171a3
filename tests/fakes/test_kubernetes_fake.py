"""The Kubernetes fake, driven only through the official client (kubernetes 36).

Assertions use what the client returns or raises, plus the fake's own
inspection helpers; nothing patches the client.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

kubernetes = pytest.importorskip("kubernetes")
urllib3 = pytest.importorskip("urllib3")

from kubernetes import client, config, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from vmkit.testing.fakes.kubernetes import KubernetesFake, make_api_client  # noqa: E402

TOKEN = "s3cr3t-token"


@pytest.fixture
def fake() -> Iterator[KubernetesFake]:
    with KubernetesFake(token=TOKEN) as server:
        yield server


@pytest.fixture
def api(fake: KubernetesFake) -> Any:
    return client.CoreV1Api(make_api_client(fake))


def pod_body(name: str, image: str = "nginx:1.27", **extra: Any) -> dict[str, Any]:
    labels = extra.pop("labels", None)
    container: dict[str, Any] = {"name": "app", "image": image}
    if "resources" in extra:
        container["resources"] = extra.pop("resources")
    if "command" in extra:
        container["command"] = extra.pop("command")
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [container], **extra},
    }
    return body


def wait_for(check: Callable[[], Any], timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def status_body(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def running(api: Any, name: str, namespace: str = "default") -> Any:
    return wait_for(
        lambda: (pod := api.read_namespaced_pod(name, namespace)).status.phase == "Running" and pod
    )


# ----------------------------------------------------------------- basic CRUD


def test_create_get_list_delete_keep_state_and_metadata(api: Any, fake: KubernetesFake) -> None:
    created = api.create_namespaced_pod("default", pod_body("web-0", labels={"app": "web"}))
    assert created.status.phase == "Pending"
    assert uuid.UUID(created.metadata.uid).version == 4
    assert created.metadata.creation_timestamp is not None
    second = api.create_namespaced_pod("default", pod_body("web-1"))
    assert int(second.metadata.resource_version) > int(created.metadata.resource_version)

    got = api.read_namespaced_pod("web-0", "default")
    assert got.metadata.uid == created.metadata.uid
    assert got.metadata.labels == {"app": "web"}
    listed = api.list_namespaced_pod("default")
    assert [p.metadata.name for p in listed.items] == ["web-0", "web-1"]
    assert int(listed.metadata.resource_version) >= int(second.metadata.resource_version)

    api.delete_namespaced_pod("web-1", "default", grace_period_seconds=0)
    assert [p["metadata"]["name"] for p in fake.pods("default")] == ["web-0"]
    assert api.list_pod_for_all_namespaces().items[0].metadata.name == "web-0"


def test_api_server_defaults_and_service_account_token(api: Any) -> None:
    plain = api.create_namespaced_pod("default", pod_body("plain"))
    assert plain.spec.restart_policy == "Always"
    assert plain.spec.termination_grace_period_seconds == 30
    assert plain.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert any(v.name.startswith("kube-api-access-") for v in plain.spec.volumes)
    assert plain.status.qos_class == "BestEffort"

    hardened = api.create_namespaced_pod(
        "default",
        pod_body(
            "hardened",
            image="nginx",
            automountServiceAccountToken=False,
            resources={"limits": {"cpu": "500m", "memory": "256Mi"}},
        ),
    )
    assert not hardened.spec.volumes
    assert hardened.spec.containers[0].image_pull_policy == "Always"  # untagged = latest
    assert hardened.spec.containers[0].resources.requests == {"cpu": "500m", "memory": "256Mi"}
    assert hardened.status.qos_class == "Guaranteed"


def test_dry_run_validates_without_storing(api: Any, fake: KubernetesFake) -> None:
    preview = api.create_namespaced_pod("default", pod_body("preview"), dry_run="All")
    assert preview.metadata.name == "preview"
    assert fake.pod("default", "preview") is None


# ------------------------------------------------------------------ selectors


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["a", "b"]),
        ("app==web", ["a", "b"]),
        ("app!=web", ["c", "d"]),
        ("tier in (front,cache)", ["a", "c"]),
        ("tier notin (front)", ["b", "c", "d"]),
        ("tier", ["a", "b", "c"]),
        ("!tier", ["d"]),
        ("app=web,tier=back", ["b"]),
        ("app=web,!tier", []),
    ],
)
def test_label_selectors(api: Any, selector: str, expected: list[str]) -> None:
    labels = {
        "a": {"app": "web", "tier": "front"},
        "b": {"app": "web", "tier": "back"},
        "c": {"app": "db", "tier": "cache"},
        "d": {"app": "db"},
    }
    for name, pod_labels in labels.items():
        api.create_namespaced_pod("default", pod_body(name, labels=pod_labels))
    found = api.list_namespaced_pod("default", label_selector=selector)
    assert [p.metadata.name for p in found.items] == expected


def test_field_selectors_and_their_errors(api: Any, fake: KubernetesFake) -> None:
    api.create_namespaced_pod("default", pod_body("runs"))
    running(api, "runs")
    fake.fail_image("broken:*")
    api.create_namespaced_pod("default", pod_body("stuck", image="broken:1"))

    def names(selector: str) -> list[str]:
        return [
            p.metadata.name
            for p in api.list_namespaced_pod("default", field_selector=selector).items
        ]

    assert names("metadata.name=runs") == ["runs"]
    assert names("status.phase=Running") == ["runs"]
    assert names("status.phase!=Running") == ["stuck"]
    assert names("spec.nodeName=vmkit-fake-node,metadata.name=runs") == ["runs"]
    with pytest.raises(ApiException) as bad_field:
        api.list_namespaced_pod("default", field_selector="spec.image=nginx")
    assert bad_field.value.status == 400
    assert status_body(bad_field.value)["reason"] == "BadRequest"
    with pytest.raises(ApiException) as bad_label:
        api.list_namespaced_pod("default", label_selector="app in web")
    assert bad_label.value.status == 400


def test_list_pages_through_one_snapshot(api: Any) -> None:
    for index in range(5):
        api.create_namespaced_pod("default", pod_body(f"p{index}"))
    first = api.list_namespaced_pod("default", limit=2)
    assert [p.metadata.name for p in first.items] == ["p0", "p1"]
    assert first.metadata.remaining_item_count == 3
    api.create_namespaced_pod("default", pod_body("p5"))  # after the snapshot
    second = api.list_namespaced_pod("default", limit=10, _continue=first.metadata._continue)
    assert [p.metadata.name for p in second.items] == ["p2", "p3", "p4"]
    assert second.metadata.resource_version == first.metadata.resource_version


# --------------------------------------------------------------- error shapes


def test_already_exists_not_found_and_missing_namespace(api: Any) -> None:
    api.create_namespaced_pod("default", pod_body("dup"))
    with pytest.raises(ApiException) as conflict:
        api.create_namespaced_pod("default", pod_body("dup"))
    assert conflict.value.status == 409
    assert status_body(conflict.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "dup" already exists',
        "reason": "AlreadyExists",
        "details": {"name": "dup", "kind": "pods"},
        "code": 409,
    }
    with pytest.raises(ApiException) as missing:
        api.read_namespaced_pod("ghost", "default")
    body = status_body(missing.value)
    assert missing.value.status == 404
    assert (body["kind"], body["status"], body["reason"]) == ("Status", "Failure", "NotFound")
    assert body["message"] == 'pods "ghost" not found'
    assert body["details"] == {"name": "ghost", "kind": "pods"}
    with pytest.raises(ApiException) as no_ns:
        api.create_namespaced_pod("nowhere", pod_body("x"))
    assert no_ns.value.status == 404
    assert status_body(no_ns.value)["details"] == {"name": "nowhere", "kind": "namespaces"}
    with pytest.raises(ApiException) as gone:
        api.delete_namespaced_pod("ghost", "default")
    assert gone.value.status == 404


@pytest.mark.parametrize(
    ("body", "field", "cause_reason"),
    [
        (pod_body("Web_0"), "metadata.name", "FieldValueInvalid"),
        (pod_body("-web"), "metadata.name", "FieldValueInvalid"),
        (
            {"metadata": {"name": "empty"}, "spec": {"containers": []}},
            "spec.containers",
            "FieldValueRequired",
        ),
        (
            pod_body("cpu", resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
            "spec.containers[0].resources.requests",
            "FieldValueInvalid",
        ),
    ],
)
def test_invalid_pods_are_422_with_causes(
    api: Any, body: dict[str, Any], field: str, cause_reason: str
) -> None:
    with pytest.raises(ApiException) as invalid:
        api.create_namespaced_pod("default", body)
    assert invalid.value.status == 422
    status = status_body(invalid.value)
    assert status["reason"] == "Invalid"
    assert status["details"]["kind"] == "Pod"
    assert status["message"].startswith(f'Pod "{body["metadata"]["name"]}" is invalid: {field}')
    assert {"field": field, "reason": cause_reason}.items() <= status["details"]["causes"][
        0
    ].items()


def test_malformed_quantity_is_a_decode_error(api: Any) -> None:
    with pytest.raises(ApiException) as bad:
        api.create_namespaced_pod(
            "default", pod_body("q", resources={"limits": {"memory": "4 gigs"}})
        )
    assert bad.value.status == 400
    assert "quantities must match the regular expression" in status_body(bad.value)["message"]


# ---------------------------------------------------------------------- watch


def test_watch_sees_added_then_modified_to_running(api: Any, fake: KubernetesFake) -> None:
    start = api.list_namespaced_pod("default").metadata.resource_version
    api.create_namespaced_pod("default", pod_body("w"))
    seen: list[tuple[str, str]] = []
    stream = watch.Watch()
    for event in stream.stream(
        api.list_namespaced_pod, "default", resource_version=start, timeout_seconds=5
    ):
        seen.append((event["type"], event["object"].status.phase))
        if event["object"].status.phase == "Running":
            pod = event["object"]
            stream.stop()
    assert seen[0] == ("ADDED", "Pending")
    assert seen[-1] == ("MODIFIED", "Running")
    assert pod.status.pod_ip.startswith("10.")
    assert pod.status.host_ip == "10.0.0.10"
    assert pod.status.pod_ips[0].ip == pod.status.pod_ip
    assert pod.status.start_time is not None
    assert {c.type: c.status for c in pod.status.conditions} == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    (container,) = pod.status.container_statuses
    assert (container.ready, container.started, container.restart_count) == (True, True, 0)
    assert container.state.running.started_at is not None
    assert container.image == "docker.io/library/nginx:1.27"
    assert container.image_id.startswith("docker.io/library/nginx@sha256:")
    assert fake.watch_count("pods") == 1


def test_watch_resumes_from_resource_version(api: Any) -> None:
    api.create_namespaced_pod("default", pod_body("before"))
    mark = api.list_namespaced_pod("default").metadata.resource_version
    api.create_namespaced_pod("default", pod_body("after"), _request_timeout=5)
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            api.list_namespaced_pod, "default", resource_version=mark, timeout_seconds=1
        )
    ]
    assert ("ADDED", "after") in events
    # "before" changes after the mark (it gets scheduled), but is never re-added.
    assert ("ADDED", "before") not in events
    # Without a resourceVersion a watch starts with the current objects.
    initial = watch.Watch().stream(api.list_namespaced_pod, "default", timeout_seconds=1)
    first_two = [next(initial)["object"].metadata.name for _ in range(2)]
    initial.close()
    assert sorted(first_two) == ["after", "before"]


def test_expired_resource_version_is_410(api: Any, fake: KubernetesFake) -> None:
    old = api.list_namespaced_pod("default").metadata.resource_version
    api.create_namespaced_pod("default", pod_body("x"))
    fake.compact()
    with pytest.raises(ApiException) as expired:
        list(
            watch.Watch().stream(
                api.list_namespaced_pod, "default", resource_version=old, timeout_seconds=1
            )
        )
    assert expired.value.status == 410
    assert expired.value.reason.startswith("Expired: too old resource version")
    with pytest.raises(ApiException) as exact:
        api.list_namespaced_pod("default", resource_version=old, resource_version_match="Exact")
    assert exact.value.status == 410
    assert status_body(exact.value)["reason"] == "Expired"


def test_exact_list_and_small_history_window() -> None:
    with KubernetesFake(token=TOKEN, history=3, schedule_delay=60) as fake:
        api = client.CoreV1Api(make_api_client(fake))
        api.create_namespaced_pod("default", pod_body("a"))
        mark = api.list_namespaced_pod("default").metadata.resource_version
        api.create_namespaced_pod("default", pod_body("b"))
        at_mark = api.list_namespaced_pod(
            "default", resource_version=mark, resource_version_match="Exact"
        )
        assert [p.metadata.name for p in at_mark.items] == ["a"]
        for name in ("c", "d", "e"):
            api.create_namespaced_pod("default", pod_body(name))
        with pytest.raises(ApiException) as expired:
            api.list_namespaced_pod(
                "default", resource_version=mark, resource_version_match="Exact"
            )
        assert expired.value.status == 410


def test_watch_with_selector_sees_objects_leave_it(api: Any) -> None:
    start = api.list_namespaced_pod("default").metadata.resource_version
    api.create_namespaced_pod("default", pod_body("leaver"))
    types = []
    for event in watch.Watch().stream(
        api.list_namespaced_pod,
        "default",
        field_selector="status.phase=Pending",
        resource_version=start,
        timeout_seconds=3,
    ):
        types.append(event["type"])
        if event["type"] == "DELETED":
            break
    assert types[0] == "ADDED"
    assert types[-1] == "DELETED"


def test_watch_bookmark_carries_resource_version(api: Any, fake: KubernetesFake) -> None:
    events = list(
        watch.Watch().stream(
            api.list_namespaced_pod, "default", allow_watch_bookmarks=True, timeout_seconds=1
        )
    )
    assert events[-1]["type"] == "BOOKMARK"
    assert events[-1]["raw_object"]["metadata"]["resourceVersion"] == str(fake.revision)


def test_watch_stream_is_chunked_ndjson_and_params_are_case_insensitive(
    api: Any, fake: KubernetesFake
) -> None:
    api.create_namespaced_pod("default", pod_body("raw"))
    started = time.monotonic()
    response = api.api_client.call_api(
        "/api/v1/namespaces/{namespace}/pods",
        "GET",
        path_params={"namespace": "default"},
        query_params=[("WATCH", "true"), ("timeoutseconds", "1")],
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    assert response.headers["Transfer-Encoding"] == "chunked"
    lines = [json.loads(line) for line in response.data.decode().splitlines()]
    assert time.monotonic() - started < 3
    assert lines[0]["type"] == "ADDED"
    assert lines[0]["object"]["kind"] == "Pod"
    assert lines[0]["object"]["metadata"]["name"] == "raw"
    assert {line["type"] for line in lines} <= {"ADDED", "MODIFIED"}
    assert fake.watch_count() == 1


# --------------------------------------------------------- failure simulation


def test_image_pull_failure_stays_pending_with_events() -> None:
    with KubernetesFake(token=TOKEN, backoff=0.5) as fake:
        check_image_pull_failure(client.CoreV1Api(make_api_client(fake)), fake)


def check_image_pull_failure(api: Any, fake: KubernetesFake) -> None:
    fake.fail_image("*:does-not-exist")
    api.create_namespaced_pod("default", pod_body("bad", image="nginx:does-not-exist"))

    def waiting_reason() -> str | None:
        statuses = api.read_namespaced_pod("bad", "default").status.container_statuses or []
        return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None

    wait_for(lambda: waiting_reason() == "ErrImagePull")
    with pytest.raises(ApiException) as no_log:
        api.read_namespaced_pod_log("bad", "default")
    assert "is waiting to start: image can't be pulled" in status_body(no_log.value)["message"]
    wait_for(lambda: waiting_reason() == "ImagePullBackOff")
    with pytest.raises(ApiException) as still_no_log:
        api.read_namespaced_pod_log("bad", "default")
    assert (
        "waiting to start: trying and failing to pull image"
        in status_body(still_no_log.value)["message"]
    )
    pod = api.read_namespaced_pod("bad", "default")
    assert pod.status.phase == "Pending"
    assert "Back-off pulling image" in pod.status.container_statuses[0].state.waiting.message
    events = api.list_namespaced_event("default", field_selector="involvedObject.name=bad").items
    reasons = [(e.reason, e.message) for e in events]
    assert ("Failed", "Error: ErrImagePull") in reasons
    assert ("BackOff", 'Back-off pulling image "nginx:does-not-exist"') in reasons
    assert ("Failed", "Error: ImagePullBackOff") in reasons
    assert all(e.involved_object.uid == pod.metadata.uid for e in events)
    assert all(e.reason != "Started" for e in events)


def test_crash_loop_back_off_restart_count_grows(api: Any, fake: KubernetesFake) -> None:
    fake.crash_image("crashy:*")
    api.create_namespaced_pod("default", pod_body("crash", image="crashy:1"))

    def state() -> Any:
        return api.read_namespaced_pod("crash", "default").status.container_statuses[0]

    wait_for(
        lambda: (
            (s := api.read_namespaced_pod("crash", "default").status.container_statuses)
            and s[0].state.waiting
            and s[0].state.waiting.reason == "CrashLoopBackOff"
        )
    )
    first = state()
    assert first.last_state.terminated.exit_code == 1
    assert first.ready is False
    wait_for(lambda: state().restart_count > first.restart_count, timeout=5)
    previous = api.read_namespaced_pod_log(
        "crash", "default", previous=True, _preload_content=False
    )
    assert previous.data.decode().startswith("started crashy:1")
    events = fake.events("default", involved="crash")
    assert any(e["reason"] == "BackOff" and e["type"] == "Warning" for e in events)


def test_unschedulable_until_capacity_frees() -> None:
    with KubernetesFake(token=TOKEN, node_cpu="2", node_gpu=0) as fake:
        api = client.CoreV1Api(make_api_client(fake))
        gpu = {"limits": {"nvidia.com/gpu": "1"}}
        api.create_namespaced_pod("default", pod_body("gpu", resources=gpu))
        hog = {"requests": {"cpu": "1500m"}}
        api.create_namespaced_pod("default", pod_body("hog", resources=hog))
        running(api, "hog")
        api.create_namespaced_pod("default", pod_body("second", resources=hog))

        def scheduled(name: str) -> Any:
            conditions = api.read_namespaced_pod(name, "default").status.conditions or []
            return next((c for c in conditions if c.type == "PodScheduled"), None)

        for name, resource in (("gpu", "nvidia.com/gpu"), ("second", "cpu")):
            condition = wait_for(lambda n=name: scheduled(n))
            assert (condition.status, condition.reason) == ("False", "Unschedulable")
            assert f"1 Insufficient {resource}" in condition.message
            assert api.read_namespaced_pod(name, "default").status.phase == "Pending"
            events = api.list_namespaced_event(
                "default", field_selector=f"involvedObject.name={name}"
            )
            assert [e.reason for e in events.items] == ["FailedScheduling"]
            assert events.items[0].type == "Warning"
        api.delete_namespaced_pod("hog", "default", grace_period_seconds=0)
        running(api, "second")


def test_graceful_deletion_then_gone() -> None:
    with KubernetesFake(token=TOKEN, grace_scale=0.02) as fake:
        api = client.CoreV1Api(make_api_client(fake))
        api.create_namespaced_pod("default", pod_body("slow"))
        mark = running(api, "slow").metadata.resource_version
        deleted = api.delete_namespaced_pod("slow", "default", grace_period_seconds=10)
        assert deleted.metadata.deletion_timestamp is not None
        assert deleted.metadata.deletion_grace_period_seconds == 10
        # Terminating: still there for 10 s x 0.02 = 0.2 s.
        assert api.read_namespaced_pod("slow", "default").metadata.deletion_timestamp
        types = [
            e["type"]
            for e in watch.Watch().stream(
                api.list_namespaced_pod, "default", resource_version=mark, timeout_seconds=1
            )
        ]
        assert types == ["MODIFIED", "DELETED"]
        with pytest.raises(ApiException) as gone:
            api.read_namespaced_pod("slow", "default")
        assert gone.value.status == 404
        assert any(e["reason"] == "Killing" for e in fake.events("default", involved="slow"))


def test_grace_zero_and_unbound_pods_go_at_once() -> None:
    with KubernetesFake(token=TOKEN, schedule_delay=60) as fake:
        api = client.CoreV1Api(make_api_client(fake))
        api.create_namespaced_pod("default", pod_body("unbound"))
        api.delete_namespaced_pod("unbound", "default", grace_period_seconds=30)
        assert fake.pod("default", "unbound") is None
    with KubernetesFake(token=TOKEN, grace_scale=10) as fake:
        api = client.CoreV1Api(make_api_client(fake))
        api.create_namespaced_pod("default", pod_body("bound"))
        running(api, "bound")
        api.delete_namespaced_pod("bound", "default", grace_period_seconds=0)
        assert fake.pod("default", "bound") is None


def test_deletecollection_with_label_selector(api: Any, fake: KubernetesFake) -> None:
    for name, app in (("a", "web"), ("b", "web"), ("c", "db")):
        api.create_namespaced_pod("default", pod_body(name, labels={"app": app}))
    api.delete_collection_namespaced_pod(
        "default", label_selector="app=web", grace_period_seconds=0
    )
    assert [p["metadata"]["name"] for p in fake.pods("default")] == ["c"]
    assert fake.verb_count("deletecollection", "pods") == 1


def test_namespace_lifecycle(api: Any, fake: KubernetesFake) -> None:
    api.create_namespace({"metadata": {"name": "team"}})
    assert api.read_namespace("team").status.phase == "Active"
    assert "team" in [n.metadata.name for n in api.list_namespace().items]
    with pytest.raises(ApiException) as dup:
        api.create_namespace({"metadata": {"name": "team"}})
    assert dup.value.status == 409
    with pytest.raises(ApiException) as bad:
        api.create_namespace({"metadata": {"name": "Team.A"}})
    assert bad.value.status == 422
    api.create_namespaced_pod("team", pod_body("p"))
    answer = api.delete_namespace("team", _preload_content=False)
    assert json.loads(answer.data)["status"]["phase"] == "Terminating"
    wait_for(lambda: "team" not in fake.namespaces())
    assert fake.pods("team") == []
    with pytest.raises(ApiException) as protected:
        api.delete_namespace("default")
    assert protected.value.status == 403


# ----------------------------------------------------------------------- logs


def test_logs_exact_text_with_preload_off(api: Any, fake: KubernetesFake) -> None:
    api.create_namespaced_pod("default", pod_body("logger", command=["sh", "-c", "serve"]))
    running(api, "logger")
    fake.append_log("default", "logger", "héllo wörld ✓\nline two")
    raw = api.read_namespaced_pod_log("logger", "default", _preload_content=False)
    exact = raw.data.decode("utf-8")
    assert exact == "started nginx:1.27: sh -c serve\nhéllo wörld ✓\nline two\n"
    # The trap: with preloading, kubernetes 36 returns str(bytes), not the log.
    assert api.read_namespaced_pod_log("logger", "default") != exact
    tail = api.read_namespaced_pod_log("logger", "default", tail_lines=1, _preload_content=False)
    assert tail.data.decode() == "line two\n"
    stamped = api.read_namespaced_pod_log(
        "logger", "default", timestamps=True, _preload_content=False
    )
    assert stamped.data.decode().splitlines()[0].endswith("Z started nginx:1.27: sh -c serve")
    assert fake.verb_count("get", "pods/log") == 4


def test_follow_streams_lines_as_they_are_written(api: Any, fake: KubernetesFake) -> None:
    api.create_namespaced_pod("default", pod_body("tailer"))
    running(api, "tailer")
    follower = watch.Watch()
    lines = []
    for line in follower.stream(api.read_namespaced_pod_log, "tailer", "default"):
        lines.append(line)
        if len(lines) == 1:
            fake.append_log("default", "tailer", "written later")
        else:
            follower.stop()
    assert lines == ["started nginx:1.27", "written later"]


def test_log_errors_for_unknown_container_and_pod(api: Any) -> None:
    api.create_namespaced_pod("default", pod_body("one"))
    with pytest.raises(ApiException) as wrong:
        api.read_namespaced_pod_log("one", "default", container="sidecar")
    assert wrong.value.status == 400
    assert status_body(wrong.value)["message"] == "container sidecar is not valid for pod one"
    with pytest.raises(ApiException) as missing:
        api.read_namespaced_pod_log("none", "default")
    assert missing.value.status == 404


# ---------------------------------------------------------------------- auth


def test_bearer_token_trap(fake: KubernetesFake) -> None:
    def core(**settings: Any) -> Any:
        configuration = client.Configuration(host=fake.url)
        for key, value in settings.items():
            setattr(configuration, key, value)
        return client.CoreV1Api(client.ApiClient(configuration))

    # The prefix keyed "authorization" is ignored by kubernetes 36: a bare token goes out.
    trap = core(api_key={"authorization": TOKEN}, api_key_prefix={"authorization": "Bearer"})
    with pytest.raises(ApiException) as refused:
        trap.list_namespaced_pod("default")
    assert refused.value.status == 401
    assert status_body(refused.value)["reason"] == "Unauthorized"

    works = core(api_key={"BearerToken": TOKEN}, api_key_prefix={"BearerToken": "Bearer"})
    assert works.list_namespaced_pod("default").items == []
    assert core(api_key={"authorization": f"Bearer {TOKEN}"}).list_namespaced_pod("default")

    for wrong in (
        core(),
        core(api_key={"BearerToken": "nope"}, api_key_prefix={"BearerToken": "Bearer"}),
    ):
        with pytest.raises(ApiException) as denied:
            wrong.list_namespaced_pod("default")
        assert denied.value.status == 401


def test_kubeconfig_connects(fake: KubernetesFake) -> None:
    api = client.CoreV1Api(config.new_client_from_config_dict(fake.kubeconfig()))
    assert api.read_namespace("default").metadata.name == "default"


def test_anonymous_mode_answers_403() -> None:
    with KubernetesFake(token=TOKEN, anonymous=True) as fake:
        anonymous = client.CoreV1Api(client.ApiClient(client.Configuration(host=fake.url)))
        with pytest.raises(ApiException) as forbidden:
            anonymous.list_namespaced_pod("default")
        assert forbidden.value.status == 403
        assert status_body(forbidden.value)["message"] == (
            'pods is forbidden: User "system:anonymous" cannot list resource "pods" in API '
            'group "" in the namespace "default"'
        )
        # A wrong token is still a 401, anonymous auth or not.
        wrong = make_api_client(fake, token="wrong")
        with pytest.raises(ApiException) as unauthorized:
            client.CoreV1Api(wrong).read_namespaced_pod("x", "default")
        assert unauthorized.value.status == 401


# -------------------------------------------------------------------- faults


def test_429_short_burst_is_retried_by_the_client(api: Any, fake: KubernetesFake) -> None:
    # urllib3's default Retry(total=3) retries a 429 that carries Retry-After.
    fake.faults.fail(429, count=2, path=r"/pods$", retry_after=0)
    assert api.list_namespaced_pod("default").items == []
    assert fake.count("fault") == 2
    assert fake.count("pods") == 1


def test_429_long_burst_surfaces(fake: KubernetesFake) -> None:
    fake.faults.fail(429, count=3, path=r"/pods$")
    no_retry = client.CoreV1Api(make_api_client(fake, retries=False))
    with pytest.raises(ApiException) as throttled:
        no_retry.list_namespaced_pod("default")
    assert throttled.value.status == 429
    assert throttled.value.headers["Retry-After"] == "1"
    assert status_body(throttled.value)["reason"] == "TooManyRequests"
    fake.faults.clear()
    fake.faults.fail(429, count=10, path=r"/pods$", retry_after=0)
    api = client.CoreV1Api(make_api_client(fake))
    with pytest.raises(ApiException) as exhausted:
        api.list_namespaced_pod("default")
    assert exhausted.value.status == 429
    assert fake.count("fault") == 1 + 4  # one attempt and urllib3's three retries


def test_500_burst_is_an_internal_error_status(api: Any, fake: KubernetesFake) -> None:
    fake.faults.fail(500, count=1, method="POST")
    with pytest.raises(ApiException) as failed:
        api.create_namespaced_pod("default", pod_body("x"))
    assert failed.value.status == 500
    assert status_body(failed.value)["reason"] == "InternalError"
    assert fake.pod("default", "x") is None
    api.create_namespaced_pod("default", pod_body("x"))


def test_dropped_response_after_commit(api: Any, fake: KubernetesFake) -> None:
    fake.faults.drop_responses(count=1, path=r"/pods$")
    with pytest.raises(urllib3.exceptions.ProtocolError):
        api.create_namespaced_pod("default", pod_body("lost"))
    assert fake.pod("default", "lost") is not None
    with pytest.raises(ApiException) as retried:
        api.create_namespaced_pod("default", pod_body("lost"))
    assert retried.value.status == 409
    assert fake.verb_count("create", "pods") == 2


def test_added_latency(api: Any, fake: KubernetesFake) -> None:
    fake.faults.delay(0.3, count=1)
    started = time.monotonic()
    api.list_namespaced_pod("default")
    assert time.monotonic() - started >= 0.3


def test_request_counting(api: Any, fake: KubernetesFake) -> None:
    api.create_namespaced_pod("default", pod_body("counted"))
    api.read_namespaced_pod("counted", "default")
    api.list_namespaced_pod("default")
    list(watch.Watch().stream(api.list_namespaced_pod, "default", timeout_seconds=1))
    assert fake.requests["POST pods"] == 1
    assert fake.count("pod") == 1
    assert fake.verb_count("list") == 1
    assert fake.watch_count() == 1
    assert fake.open_watches == 0


# ------------------------------------------------------------ resource quotas


def quota_body(name: str, pods: str, **hard: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": name},
        "spec": {"hard": {"pods": pods, **hard}},
    }


def test_resource_quota_crud_and_usage(api: Any, fake: KubernetesFake) -> None:
    api.create_namespaced_pod("default", pod_body("one"))
    made = api.create_namespaced_resource_quota("default", quota_body("q", "3"))
    assert made.spec.hard == {"pods": "3"}
    assert made.status.used == {"pods": "1"}
    api.create_namespaced_pod("default", pod_body("two"))
    assert api.read_namespaced_resource_quota("q", "default").status.used == {"pods": "2"}
    with pytest.raises(ApiException) as dup:
        api.create_namespaced_resource_quota("default", quota_body("q", "3"))
    assert (dup.value.status, status_body(dup.value)["reason"]) == (409, "AlreadyExists")
    replaced = api.replace_namespaced_resource_quota("q", "default", quota_body("q", "5"))
    assert replaced.status.hard == {"pods": "5"}
    assert [q.metadata.name for q in api.list_namespaced_resource_quota("default").items] == ["q"]
    with pytest.raises(ApiException) as bad:
        api.create_namespaced_resource_quota("default", quota_body("neg", "-1"))
    assert (bad.value.status, status_body(bad.value)["reason"]) == (422, "Invalid")
    api.delete_namespaced_resource_quota("q", "default")
    with pytest.raises(ApiException) as gone:
        api.read_namespaced_resource_quota("q", "default")
    assert gone.value.status == 404
    assert fake.verb_count("create", "resourcequotas") == 3


def test_a_pod_beyond_the_quota_is_403_exceeded_quota(api: Any, fake: KubernetesFake) -> None:
    api.create_namespaced_resource_quota("default", quota_body("compute", "2"))
    api.create_namespaced_pod("default", pod_body("a"))
    api.create_namespaced_pod("default", pod_body("b"))
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_pod("default", pod_body("c"))
    status = status_body(refused.value)
    assert refused.value.status == 403
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        'pods "c" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, '
        "limited: pods=2"
    )
    assert status["details"] == {"name": "c", "kind": "pods"}
    assert fake.pod("default", "c") is None
    # Other namespaces are not charged; deleting a pod frees its place.
    api.create_namespace({"metadata": {"name": "other"}})
    api.create_namespaced_pod("other", pod_body("c"))
    api.delete_namespaced_pod("a", "default", grace_period_seconds=0)
    api.create_namespaced_pod("default", pod_body("c"))


def test_terminal_pods_are_not_charged_to_the_quota(api: Any, fake: KubernetesFake) -> None:
    fake.crash_image("crashy:*")
    api.create_namespaced_pod("default", pod_body("done", image="crashy:1", restartPolicy="Never"))
    wait_for(lambda: api.read_namespaced_pod("done", "default").status.phase == "Failed")
    api.create_namespaced_resource_quota("default", quota_body("one", "1"))
    api.create_namespaced_pod("default", pod_body("live"))
    assert api.read_namespaced_resource_quota("one", "default").status.used == {"pods": "1"}


def test_a_full_quota_answers_before_already_exists(api: Any) -> None:
    api.create_namespaced_pod("default", pod_body("only"))
    api.create_namespaced_resource_quota("default", quota_body("q", "1"))
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_pod("default", pod_body("only"))
    assert refused.value.status == 403
    assert "exceeded quota" in status_body(refused.value)["message"]


# ----------------------------------------------------------------- finalizers


def test_a_pod_with_a_finalizer_stays_terminating_until_it_is_removed(
    api: Any, fake: KubernetesFake
) -> None:
    body = pod_body("kept")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    api.create_namespaced_pod("default", body)
    mark = running(api, "kept").metadata.resource_version
    api.delete_namespaced_pod("kept", "default", grace_period_seconds=1)
    time.sleep(0.05)  # the grace period (1 s x 0.001) is long over
    pod = api.read_namespaced_pod("kept", "default")
    assert pod.metadata.deletion_timestamp is not None
    assert pod.metadata.deletion_grace_period_seconds == 0
    assert pod.metadata.finalizers == ["example.com/hold"]
    with pytest.raises(ValueError, match="no new finalizers"):
        fake.set_finalizers("default", "kept", ["example.com/hold", "example.com/more"])
    assert fake.set_finalizers("default", "kept", []) is None
    assert fake.pod("default", "kept") is None
    types = [
        e["type"]
        for e in watch.Watch().stream(
            api.list_namespaced_pod, "default", resource_version=mark, timeout_seconds=1
        )
    ]
    assert types[-1] == "DELETED"
    assert "MODIFIED" in types


def test_an_unbound_pod_with_a_finalizer_is_only_marked() -> None:
    body = pod_body("early")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    with KubernetesFake(token=TOKEN, schedule_delay=60) as slow:
        slow_api = client.CoreV1Api(make_api_client(slow))
        slow_api.create_namespaced_pod("default", body)
        slow_api.delete_namespaced_pod("early", "default")
        stored = slow.pod("default", "early")
        assert stored is not None
        assert stored["metadata"]["deletionTimestamp"]
        slow.set_finalizers("default", "early", [])
        assert slow.pod("default", "early") is None


def test_a_malformed_finalizer_is_invalid(api: Any) -> None:
    body = pod_body("bad")
    body["metadata"]["finalizers"] = ["not a name!"]
    with pytest.raises(ApiException) as info:
        api.create_namespaced_pod("default", body)
    assert info.value.status == 422
    assert status_body(info.value)["details"]["causes"][0]["field"] == "metadata.finalizers[0]"


# ---------------------------------------------------------------- slow pulls


def test_held_starts_stay_pending_pulling_until_released(api: Any, fake: KubernetesFake) -> None:
    api.create_namespaced_pod("default", pod_body("before"))
    running(api, "before")
    fake.hold_starts()
    api.create_namespaced_pod("default", pod_body("held"))
    time.sleep(0.3)  # six times the fake's whole start delay
    pod = api.read_namespaced_pod("held", "default")
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name  # scheduled, the kubelet is still pulling
    assert pod.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    fake.release_starts()
    running(api, "held")
    api.create_namespaced_pod("default", pod_body("after"))
    running(api, "after")


# ------------------------------------------------------------ runtime classes


@pytest.fixture
def node_v1(fake: KubernetesFake) -> Any:
    return client.NodeV1Api(make_api_client(fake))


def runtime_class_body(name: str, handler: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": name},
        "handler": handler,
        **extra,
    }


def test_runtime_classes_are_cluster_scoped_node_k8s_io_objects(
    node_v1: Any, fake: KubernetesFake
) -> None:
    overhead = {"podFixed": {"memory": "160Mi", "cpu": "250m"}}
    made = node_v1.create_runtime_class(runtime_class_body("kata", "kata", overhead=overhead))
    assert (made.handler, made.overhead.pod_fixed) == ("kata", overhead["podFixed"])
    assert uuid.UUID(made.metadata.uid)
    node_v1.create_runtime_class(runtime_class_body("gvisor", "runsc"))
    got = node_v1.read_runtime_class("gvisor")
    assert (got.api_version, got.kind, got.handler) == ("node.k8s.io/v1", "RuntimeClass", "runsc")
    assert got.metadata.namespace is None
    listed = node_v1.list_runtime_class()
    assert [c.metadata.name for c in listed.items] == ["gvisor", "kata"]
    events = list(watch.Watch().stream(node_v1.list_runtime_class, timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "gvisor"),
        ("ADDED", "kata"),
    ]

    with pytest.raises(ApiException) as dup:
        node_v1.create_runtime_class(runtime_class_body("gvisor", "runsc"))
    assert dup.value.status == 409
    assert status_body(dup.value)["message"] == 'runtimeclasses.node.k8s.io "gvisor" already exists'
    with pytest.raises(ApiException) as invalid:
        node_v1.create_runtime_class(runtime_class_body("bad", "Not_A_Label"))
    assert invalid.value.status == 422
    body = status_body(invalid.value)
    assert body["message"].startswith('RuntimeClass.node.k8s.io "bad" is invalid: handler:')
    assert body["details"]["causes"][0]["field"] == "handler"

    gone = node_v1.delete_runtime_class("gvisor")
    assert (gone.status, gone.details.name, gone.details.kind) == (
        "Success",
        "gvisor",
        "runtimeclasses",
    )
    with pytest.raises(ApiException) as missing:
        node_v1.read_runtime_class("gvisor")
    assert missing.value.status == 404
    assert status_body(missing.value)["message"] == 'runtimeclasses.node.k8s.io "gvisor" not found'
    assert status_body(missing.value)["details"]["kind"] == "runtimeclasses"
    assert fake.verb_count("get", "runtimeclasses") == 2
    assert fake.verb_count("create", "runtimeclasses") == 4


def test_the_node_group_is_in_api_discovery(fake: KubernetesFake) -> None:
    api_client = make_api_client(fake)
    groups = client.ApisApi(api_client).get_api_versions()
    (node,) = [g for g in groups.groups if g.name == "node.k8s.io"]
    assert node.preferred_version.group_version == "node.k8s.io/v1"
    resources = client.NodeV1Api(api_client).get_api_resources()
    (runtime_classes,) = resources.resources
    assert (runtime_classes.name, runtime_classes.kind) == ("runtimeclasses", "RuntimeClass")
    assert runtime_classes.namespaced is False
    assert {"create", "get", "list", "delete"} <= set(runtime_classes.verbs)


def test_a_pod_naming_a_missing_runtime_class_is_refused_at_admission(
    api: Any, fake: KubernetesFake
) -> None:
    for dry_run in ("All", None):
        with pytest.raises(ApiException) as refused:
            api.create_namespaced_pod(
                "default", pod_body("boxed", runtimeClassName="gvisor"), dry_run=dry_run
            )
        assert refused.value.status == 403
        body = status_body(refused.value)
        assert body["reason"] == "Forbidden"
        assert body["message"] == (
            'pods "boxed" is forbidden: pod rejected: RuntimeClass "gvisor" not found'
        )
        assert body["details"] == {"name": "boxed", "kind": "pods"}
    assert fake.pods() == []
    fake.add_runtime_class("gvisor", "runsc")
    made = api.create_namespaced_pod("default", pod_body("boxed", runtimeClassName="gvisor"))
    assert made.spec.runtime_class_name == "gvisor"
    assert made.spec.overhead is None
    running(api, "boxed")


def test_admission_applies_the_class_overhead_and_scheduling(
    api: Any, fake: KubernetesFake
) -> None:
    fake.add_runtime_class(
        "kata",
        "kata",
        overhead={"memory": "160Mi", "cpu": "250m"},
        scheduling={"nodeSelector": {"katacontainers.io/kata-runtime": "true"}},
    )
    made = api.create_namespaced_pod("default", pod_body("vm", runtimeClassName="kata"))
    assert made.spec.overhead == {"memory": "160Mi", "cpu": "250m"}
    assert made.spec.node_selector == {"katacontainers.io/kata-runtime": "true"}
    refusals = {
        "other-overhead": (
            {"runtimeClassName": "kata", "overhead": {"memory": "1Gi"}},
            "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead",
        ),
        "no-class-overhead": (
            {"overhead": {"memory": "1Gi"}},
            "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead",
        ),
        "clash": (
            {"runtimeClassName": "kata", "nodeSelector": {"katacontainers.io/kata-runtime": "no"}},
            "conflict: runtimeClass.scheduling.nodeSelector[katacontainers.io/kata-runtime] = "
            "true; pod.spec.nodeSelector[katacontainers.io/kata-runtime] = no",
        ),
    }
    for name, (spec, why) in refusals.items():
        with pytest.raises(ApiException) as refused:
            api.create_namespaced_pod("default", pod_body(name, **spec))
        assert refused.value.status == 403
        assert status_body(refused.value)["message"] == f'pods "{name}" is forbidden: {why}'
    # The same overhead, written another way, is accepted.
    same = {"memory": "167772160", "cpu": "0.25"}
    assert api.create_namespaced_pod(
        "default", pod_body("same", runtimeClassName="kata", overhead=same)
    ).spec.overhead == {"memory": "160Mi", "cpu": "250m"}


def test_the_scheduler_counts_the_pod_overhead() -> None:
    with KubernetesFake(token=TOKEN, node_cpu="2") as fake:
        api = client.CoreV1Api(make_api_client(fake))
        fake.add_runtime_class("kata", "kata", overhead={"cpu": "250m"})
        fits = {"requests": {"cpu": "1900m"}}
        api.create_namespaced_pod("default", pod_body("runc", resources=fits))
        running(api, "runc")
        api.delete_namespaced_pod("runc", "default", grace_period_seconds=0)
        api.create_namespaced_pod(
            "default", pod_body("kata", resources=fits, runtimeClassName="kata")
        )

        def condition() -> Any:
            conditions = api.read_namespaced_pod("kata", "default").status.conditions or []
            return next((c for c in conditions if c.type == "PodScheduled"), None)

        scheduled = wait_for(condition)
        assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
        assert "1 Insufficient cpu" in scheduled.message


def test_a_forbidden_rule_answers_as_rbac_does(node_v1: Any, fake: KubernetesFake) -> None:
    fake.add_runtime_class("gvisor", "runsc")
    fake.forbid("get", "runtimeclasses", "node.k8s.io")
    with pytest.raises(ApiException) as forbidden:
        node_v1.read_runtime_class("gvisor")
    assert forbidden.value.status == 403
    body = status_body(forbidden.value)
    assert body["message"] == (
        'runtimeclasses.node.k8s.io "gvisor" is forbidden: User "vmkit-fake" cannot get '
        'resource "runtimeclasses" in API group "node.k8s.io" at the cluster scope'
    )
    assert body["details"] == {"name": "gvisor", "group": "node.k8s.io", "kind": "runtimeclasses"}
    # Only that verb: listing is still allowed.
    assert [c.metadata.name for c in node_v1.list_runtime_class().items] == ["gvisor"]
