"""A real CourseSpawner starts, stops and fails against an emulated
Kubernetes API (kmock, over HTTP, through a kubeconfig).

kmock is not a cluster: no scheduler or kubelet runs. The tests play their
part, writing pod status and posting events as they would, and check the
words the user sees and how soon the start gives up. The emulated cluster
is tests/kube_cluster.py, shared with benchmarks/bench_spawn_failures.py.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from traitlets.config import Config

from kube_cluster import (
    CASES,
    HUB_ACCOUNT,
    NAMESPACE,
    NOT_FOUND,
    begin,
    failure_of,
    fast,
    kube_api,
    real_spawner,
    waiting,
)
from kube_helpers import base_config


@pytest.fixture
async def cluster(tmp_path):
    async with kube_api(tmp_path) as cluster:
        yield cluster


@pytest.fixture
def config(catalog_dir, users_file):
    return fast(base_config(catalog_dir, users_file))


# --- start and stop ----------------------------------------------------------------
async def test_start_and_stop_a_course_server(cluster, config):
    spawner = real_spawner(config, "student1")
    start = await begin(spawner, "intro")
    pod = await cluster.wait_for_pod("jupyter-student1-intro")
    await cluster.event(
        pod, "Pulling", 'Pulling image "example/notebook:5.0"', "Normal"
    )
    await asyncio.sleep(1.2)  # a first pull in progress is no failure
    assert not start.done()
    await cluster.run(pod)
    assert await asyncio.wait_for(start, 10) == "http://10.1.2.3:8888"
    assert pod["spec"]["containers"][0]["workingDir"] == "/notebooks"
    assert await spawner.poll() is None
    await spawner.stop()
    assert cluster.pod("jupyter-student1-intro") is None
    assert await spawner.poll() == 1


async def test_progress_shows_events_while_the_start_fails(cluster, config):
    spawner = real_spawner(config, "student1")
    start = await begin(spawner, "intro")
    messages = []

    async def follow():
        async for event in spawner.progress():
            messages.append(event.get("message", ""))

    following = asyncio.ensure_future(follow())
    pod = await cluster.wait_for_pod("jupyter-student1-intro")
    await cluster.event(pod, "Scheduled", "Successfully assigned to node-1", "Normal")
    await asyncio.sleep(1.5)  # KubeSpawner's progress looks once a second
    assert any("Successfully assigned" in m for m in messages)  # as they come
    said = (
        'MountVolume.SetUp failed for volume "home" : mount failed: exit status 32'
        "\nOutput: mount.nfs: access denied by server while mounting"
        " nfs.example.org:/export/home"
    )
    await cluster.event(pod, "FailedMount", said)
    message, seconds = await failure_of(start)
    await asyncio.wait_for(following, 5)
    assert "storage could not be attached" in message
    assert "nfs.example.org refused access to /export/home" in message
    assert any("access denied by server" in m for m in messages)  # the event
    assert seconds < 30
    assert cluster.pod("jupyter-student1-intro") is None  # deleted as on timeout


@pytest.mark.parametrize("case", sorted(CASES))
async def test_pod_failure_is_reported_in_seconds(cluster, config, case):
    status, events, words = CASES[case]
    cluster["get /api/v1/namespaces/jupyter/pods/jupyter-student1-intro/log"] << (
        b"Traceback (most recent call last):\n"
        b"ModuleNotFoundError: No module named 'x'\n"
    )
    spawner = real_spawner(config, "student1")
    start = await begin(spawner, "intro")
    pod = await cluster.wait_for_pod("jupyter-student1-intro")
    for reason, message in events:  # the kubelet's events come first
        await cluster.event(pod, reason, message)
    await cluster.set_status("jupyter-student1-intro", status(pod))
    message, seconds = await failure_of(start)
    for word in words:
        assert word in message
    assert seconds < 30  # 15 s start_timeout: a timeout would be too late too
    assert cluster.pod("jupyter-student1-intro") is None


async def test_no_room_fails_after_the_grace_period(cluster, config):
    spawner = real_spawner(config, "student1")
    start = await begin(spawner, "intro")
    pod = await cluster.wait_for_pod("jupyter-student1-intro")
    said = "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes"
    await cluster.event(pod, "FailedScheduling", said)
    await asyncio.sleep(1)
    assert not start.done()  # other servers may still end: 2 s grace here
    message, seconds = await failure_of(start)
    assert "There is no room for your server in the cluster right now" in message
    assert "3 of 3 nodes have not enough free memory" in message
    assert "It asks for" in message
    assert seconds < 30


async def test_no_matching_node_is_named(cluster, config):
    config.CourseSpawner.node_selector = {"gpu": "true"}
    spawner = real_spawner(config, "student1")
    start = await begin(spawner, "intro")
    pod = await cluster.wait_for_pod("jupyter-student1-intro")
    await cluster.event(
        pod,
        "FailedScheduling",
        "0/3 nodes are available: 3 node(s) didn't match Pod's node"
        " affinity/selector. preemption: 0/3 nodes are available",
    )
    await cluster.event(
        pod, "NotTriggerScaleUp", "pod didn't trigger scale-up: 1 max node group size"
    )
    message, seconds = await failure_of(start)
    assert "No node in the cluster can run your server" in message
    assert "(it asks for gpu=true)" in message
    assert seconds < 30


async def test_autoscaler_adding_a_node_is_waited_for(cluster, config):
    spawner = real_spawner(config, "student1")
    start = await begin(spawner, "intro")
    pod = await cluster.wait_for_pod("jupyter-student1-intro")
    await cluster.event(
        pod, "FailedScheduling", "0/1 nodes are available: 1 Too many pods."
    )
    await cluster.event(pod, "TriggeredScaleUp", "pod triggered scale-up", "Normal")
    await asyncio.sleep(3)  # longer than the 2 s grace
    assert not start.done()
    await cluster.run(pod)
    assert await asyncio.wait_for(start, 10) == "http://10.1.2.3:8888"


async def test_a_plain_kubespawner_config_fails_fast_too(cluster):
    config = fast(Config())
    config.CourseSpawner.image = "example/plain:1"
    spawner = real_spawner(config, "alice")
    assert not spawner.course_mode
    start = await begin(spawner)
    pod = await cluster.wait_for_pod("jupyter-alice")
    await cluster.set_status("jupyter-alice", waiting(pod, "ErrImagePull", NOT_FOUND))
    message, _ = await failure_of(start)
    assert "its software image example/plain:1" in message


# --- the API refuses ---------------------------------------------------------------
async def test_stale_pod_of_the_same_name_is_replaced(cluster, config):
    spawner = real_spawner(config, "student1")
    # kmock's watch has no resourceVersion replay: an event put before the
    # watcher is connected is lost, where a real API server would replay it.
    # So the pod watch is started (and connected) before the leftover goes.
    await spawner._start_watching_pods()
    await asyncio.sleep(0.5)
    leftover = {
        "metadata": {"name": "jupyter-student1-intro", "namespace": NAMESPACE},
        "spec": {"containers": [{"name": "notebook", "image": "old:1"}]},
    }
    async with cluster.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=leftover):
        pass
    stale = cluster.pod("jupyter-student1-intro")
    await cluster.set_status(
        "jupyter-student1-intro", waiting(stale, "CrashLoopBackOff")
    )
    start = await begin(spawner, "intro")
    pod = await cluster.wait_for_pod("jupyter-student1-intro", replacing=stale)
    await asyncio.sleep(1)  # the leftover's crash loop is not this start's
    await cluster.run(pod)
    assert await asyncio.wait_for(start, 10) == "http://10.1.2.3:8888"
    notices = [e["message"] async for e in spawner.progress()]
    assert any("from an earlier start was still there" in m for m in notices)


async def test_api_server_unreachable(tmp_path, config):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"https://127.0.0.1:{s.getsockname()[1]}"
    async with kube_api(tmp_path, server=closed):
        spawner = real_spawner(config, "student1")
        message, seconds = await failure_of(await begin(spawner, "intro"))
    assert message.startswith("The hub cannot reach the Kubernetes cluster")
    assert "try again in a few minutes" in message
    assert "HTTP response" not in message and seconds < 10


@pytest.mark.parametrize(
    ("status", "said", "causes", "words"),
    [
        (
            401,
            "Unauthorized",
            (),
            ["did not accept its credentials (401 Unauthorized)"],
        ),
        (
            403,
            f'pods is forbidden: User "{HUB_ACCOUNT}" cannot create resource "pods"'
            ' in API group "" in the namespace "jupyter"',
            (),
            ["service account jupyter/hub create pods in namespace jupyter"],
        ),
        (
            403,
            'pods "jupyter-student1-intro" is forbidden: exceeded quota: users,'
            " requested: limits.memory=1Gi, used: limits.memory=10Gi,"
            " limited: limits.memory=10Gi",
            (),
            ["resource quota is used up (users, requested: limits.memory=1Gi"],
        ),
        (
            422,
            'Pod "jupyter-student1-intro" is invalid: spec.containers[0].image:'
            " Required value",
            (
                {
                    "reason": "FieldValueRequired",
                    "field": "spec.containers[0].image",
                    "message": "Required value",
                },
            ),
            ["invalid: spec.containers[0].image: Required value", "course staff"],
        ),
        (
            500,
            "etcdserver: request timed out",
            (),
            ["internal error (500 Internal Server Error)", "try again"],
        ),
    ],
)
async def test_api_error_on_create_in_words(
    cluster, config, status, said, causes, words
):
    cluster.refuse("post", "pods", status, said, causes)
    spawner = real_spawner(config, "student1")
    message, seconds = await failure_of(await begin(spawner, "intro"))
    for word in words:
        assert word in message
    assert "HTTP response headers" not in message and len(message) < 400
    assert seconds < 10


@pytest.mark.xfail(
    strict=False,
    reason="intermittent (about 1 run in 10 on a loaded machine): the second"
    " start sometimes never creates its pod after the refused watch was"
    " forgotten; cause not yet found (kmock watch or KubeSpawner's reflector"
    " restart); see the closing note of the drop-in issue",
)
async def test_refused_watch_is_retried_by_the_next_start(cluster, config):
    said = (
        f'pods is forbidden: User "{HUB_ACCOUNT}" cannot list resource "pods"'
        ' in API group "" in the namespace "jupyter"'
    )
    cluster.refuse("get", "pods", 403, said, times=1)
    spawner = real_spawner(config, "student1")
    message, _ = await failure_of(await begin(spawner, "intro"))
    # KubeSpawner's reflector keeps only the status, not the API's message
    # (that is in its own log line): the account is not named here.
    assert "refused to let the hub's service account list and watch pods" in message
    assert "in namespace jupyter (403 Forbidden)" in message
    # RBAC fixed: KubeSpawner alone would keep the failed reflector, and
    # this start would wait start_timeout for a pod it never sees.
    start = await begin(spawner, "intro")
    await cluster.run(await cluster.wait_for_pod("jupyter-student1-intro", timeout=30))
    assert await asyncio.wait_for(start, 30) == "http://10.1.2.3:8888"


async def test_a_failed_start_is_recorded_with_its_cause(cluster, config):
    from aaltohub import metrics
    from aaltohub.audit import audit_log

    status, events, _ = CASES["image-not-found"]
    failures = metrics.SPAWN_FAILURES.labels(course="intro", cause="image")
    before = failures._value.get()
    spawner = real_spawner(config, "student1")
    start = await begin(spawner, "intro")
    pod = await cluster.wait_for_pod("jupyter-student1-intro")
    assert metrics.PENDING_SPAWNS.labels(course="intro")._value.get() >= 1
    for reason, message in events:
        await cluster.event(pod, reason, message)
    await cluster.set_status("jupyter-student1-intro", status(pod))
    await failure_of(start)
    record = audit_log(config).recent(action="server-fail")[-1]
    assert (record["course"], record["outcome"], record["target"]) == (
        "intro",
        "failed",
        "student1",
    )
    assert record["reason"].startswith("image: Your server could not start")
    assert failures._value.get() == before + 1
    assert metrics.PENDING_SPAWNS.labels(course="intro")._value.get() == 0


async def test_a_server_gone_by_itself_and_a_start_given_up_are_recorded(
    cluster, config
):
    from aaltohub import metrics
    from aaltohub.audit import audit_log

    log = audit_log(config)
    running = metrics.RUNNING_SERVERS.labels(course="intro", role="student")
    spawner = real_spawner(config, "student1")
    start = await begin(spawner, "intro")
    pod = await cluster.wait_for_pod("jupyter-student1-intro")
    await cluster.run(pod)
    await asyncio.wait_for(start, 10)
    count = running._value.get()
    url = f"/api/v1/namespaces/{NAMESPACE}/pods/jupyter-student1-intro"
    async with cluster.delete(url) as response:  # someone deleted the pod
        assert response.status == 200
    for _ in range(100):
        if await spawner.poll() is not None:
            break
        await asyncio.sleep(0.1)
    spawner.clear_state()  # what JupyterHub does with a server found stopped
    stop = log.recent(action="server-stop")[-1]
    assert (stop["course"], stop["reason"]) == ("intro", "exited by itself")
    assert running._value.get() == count - 1

    # JupyterHub gives up after start_timeout: it cancels the start.
    timeouts = metrics.SPAWN_FAILURES.labels(course="intro", cause="timeout")
    before = timeouts._value.get()
    start = await begin(spawner, "intro")
    await cluster.wait_for_pod("jupyter-student1-intro", replacing=pod)
    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await start
    fail = log.recent(action="server-fail")[-1]
    assert fail["course"] == "intro" and fail["reason"].startswith("timeout:")
    assert timeouts._value.get() == before + 1
    stops = len(log.recent(action="server-stop"))
    assert await spawner.poll() is None  # the pod is still there ...
    await spawner.stop()  # ... and JupyterHub cleans up: no stop of a server
    assert len(log.recent(action="server-stop")) == stops
    assert running._value.get() == count - 1
