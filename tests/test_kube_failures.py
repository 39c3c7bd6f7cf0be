"""aaltohub.kube.failures: which starting pods have failed, and the words.

Pure functions on pod and event dicts as the API serves them (and V1 models,
as the client returns them); the messages are checked word for word where
the user reads them.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes_asyncio.client import (
    V1Container,
    V1ContainerState,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodSpec,
    V1PodStatus,
)
from kubernetes_asyncio.client.exceptions import ApiException

from aaltohub.kube import api_errors, failures
from aaltohub.kube.api_errors import explain_api_error
from aaltohub.kube.failures import StartWatch, diagnose


def pod(*statuses, phase="Pending", node="", **spec) -> dict:
    container = {
        "name": "notebook",
        "image": "example/notebook:5.0",
        "resources": {
            "limits": {"memory": 2 * 1024**3},
            "requests": {"memory": 1024**3, "cpu": 0.5},
        },
    }
    return {
        "metadata": {"name": "jupyter-ann", "namespace": "jupyter", "uid": "u1"},
        "spec": {
            "containers": [container],
            **({"nodeName": node} if node else {}),
            **spec,
        },
        "status": {"phase": phase, "containerStatuses": list(statuses)},
    }


def waiting(reason, message="", **more) -> dict:
    state = {"waiting": {"reason": reason, "message": message}}
    return {"name": "notebook", "restartCount": 0, "state": state, **more}


def event(reason, message, kind="Warning") -> dict:
    return {"reason": reason, "message": message, "type": kind}


NFS_DENIED = (
    'MountVolume.SetUp failed for volume "home" : mount failed: exit status 32\n'
    "Mounting command: mount\nMounting arguments: -t nfs nfs.example.org:/export/home"
    " /var/lib/kubelet/pods/x/volumes/kubernetes.io~nfs/home\n"
    "Output: mount.nfs: access denied by server while mounting"
    " nfs.example.org:/export/home"
)


# --- still starting: no failure -------------------------------------------------------
@pytest.mark.parametrize(
    "starting",
    [
        pod(),
        pod(waiting("ContainerCreating")),
        pod(waiting("PodInitializing")),
        pod(waiting("ContainerCreating"), node="node-1"),
    ],
)
def test_a_pod_on_its_way_is_not_a_failure(starting):
    events = [event("Scheduled", "assigned", "Normal"), event("Pulling", "Pulling")]
    assert diagnose(starting, events) is None


def test_a_v1_pod_from_the_client_is_read_like_a_dict():
    v1 = V1Pod(
        metadata=V1ObjectMeta(name="jupyter-ann", namespace="jupyter"),
        spec=V1PodSpec(containers=[V1Container(name="notebook", image="ex/nb:9")]),
        status=V1PodStatus(
            phase="Pending",
            container_statuses=[
                V1ContainerStatus(
                    name="notebook",
                    image="ex/nb:9",
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=V1ContainerState(
                        waiting=V1ContainerStateWaiting(
                            reason="ErrImagePull", message="manifest unknown"
                        )
                    ),
                )
            ],
        ),
    )
    found = diagnose(v1, [])
    assert found.cause == "image" and "ex/nb:9 could not be downloaded" in found.message


# --- images ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reason", "said", "what"),
    [
        (
            "ErrImagePull",
            "rpc error: code = NotFound desc = ... not found",
            "it does not exist in the registry",
        ),
        (
            "ImagePullBackOff",
            "unauthorized: authentication required",
            "the registry refused access to it",
        ),
        (
            "InvalidImageName",
            'couldn\'t parse image name "A B"',
            "its name is not a valid image name",
        ),
        ("ErrImagePull", "something new", "Kubernetes said: something new"),
    ],
)
def test_image_that_cannot_be_pulled_is_named(reason, said, what):
    found = diagnose(pod(waiting(reason, said)), [])
    assert found.message == (
        "Your server could not start: its software image example/notebook:5.0 could"
        f" not be downloaded: {what}. {failures.SETTINGS}"
    )
    assert not found.transient and found.status == 500
    assert "pod jupyter/jupyter-ann" in found.detail and reason in found.detail


def test_pull_cause_is_read_from_the_kubelets_failed_events():
    # ImagePullBackOff says only "Back-off pulling"; the Failed event says why.
    failed = event("Failed", 'Failed to pull image "x": manifest unknown')
    found = diagnose(
        pod(waiting("ImagePullBackOff", "Back-off pulling image")), [failed]
    )
    assert "does not exist in the registry" in found.message


def test_rate_limited_pull_is_transient():
    found = diagnose(pod(waiting("ErrImagePull", "429 Too Many Requests")), [])
    assert found.transient and found.status == 503
    assert found.message.endswith(failures.LATER)


# --- containers that ran --------------------------------------------------------------
def test_crash_loop_names_exit_code_and_asks_for_the_previous_log():
    last = {"terminated": {"exitCode": 1, "reason": "Error"}}
    found = diagnose(pod(waiting("CrashLoopBackOff", restartCount=4, lastState=last)))
    assert found.cause == "crash"
    assert found.message.startswith(
        "Your server stopped right after starting (exit code 1, restarted 4 times)."
    )
    assert (found.log_container, found.log_previous) == ("notebook", True)


def test_exited_container_asks_for_its_current_log():
    ended = {"name": "notebook", "restartCount": 0}
    ended["state"] = {"terminated": {"exitCode": 3, "reason": "Error"}}
    found = diagnose(pod(ended, phase="Running"))
    assert "(exit code 3)" in found.message and not found.log_previous


def test_oom_names_the_memory_limit():
    last = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    found = diagnose(pod(waiting("CrashLoopBackOff", restartCount=1, lastState=last)))
    assert found.cause == "oom"
    assert found.message.startswith(
        "Your server ran out of memory while starting (its limit is 2 GiB)"
    )


def test_log_lines_are_added_short_for_the_user_long_for_the_log():
    found = diagnose(pod(waiting("CrashLoopBackOff", restartCount=1)))
    text = "\n".join(f"line {i}" for i in range(30)) + "\n\n"
    logged = found.with_log(text)
    assert logged.message.endswith(
        "The last lines it printed:\n  line 25\n  line 26\n  line 27\n  line 28"
        "\n  line 29"
    )
    assert "line 10" in logged.detail and "line 9\n" not in logged.detail
    assert found.with_log("") is found


def test_init_container_completed_is_fine_failed_is_not():
    done = {"name": "setup", "state": {"terminated": {"exitCode": 0}}}
    failed = {"name": "setup", "state": {"terminated": {"exitCode": 2}}}
    ok = pod(waiting("PodInitializing"))
    ok["status"]["initContainerStatuses"] = [done]
    assert diagnose(ok) is None
    ok["status"]["initContainerStatuses"] = [failed]
    assert diagnose(ok).message.startswith(
        "A preparation step of your server (setup) failed (exit code 2)."
    )


def test_container_kubernetes_could_not_create():
    said = "couldn't find key TOKEN in Secret jupyter/course-x"
    found = diagnose(pod(waiting("CreateContainerConfigError", said)))
    assert found.message == (
        "Your server could not be created: Kubernetes could not prepare its"
        f" container ({said}). {failures.SETTINGS}"
    )


def test_evicted_pod():
    evicted = pod(phase="Failed")
    evicted["status"] |= {"reason": "Evicted", "message": "The node was low on memory."}
    found = diagnose(evicted)
    assert found.cause == "evicted" and found.status == 503
    assert "(Evicted: The node was low on memory.)" in found.message


# --- volumes --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("said", "words", "transient"),
    [
        (
            NFS_DENIED,
            "file server nfs.example.org refused access to /export/home",
            False,
        ),
        (
            "mount.nfs: mounting nfs.example.org:/export/gone failed, reason given by"
            " server: No such file or directory",
            "/export/gone does not exist on file server nfs.example.org",
            False,
        ),
        (
            "mount failed: exit status 32 ... mount.nfs: Connection timed out while"
            " mounting 10.0.0.5:/exports/u",
            "file server 10.0.0.5 did not answer when mounting /exports/u",
            True,
        ),
        (
            'MountVolume.SetUp failed for volume "files" :'
            ' configmap "nbgrader" not found',
            "the configmap nbgrader it needs does not exist",
            False,
        ),
    ],
)
def test_failed_mount_names_server_and_path(said, words, transient):
    found = diagnose(pod(waiting("ContainerCreating")), [event("FailedMount", said)])
    assert found.message.startswith(
        f"Your server's storage could not be attached: {words}."
    )
    assert found.transient is transient


def test_harmless_or_outdated_mount_events_are_ignored():
    race = event("FailedMount", 'object "jupyter"/"kube-root-ca.crt" not registered')
    assert diagnose(pod(waiting("ContainerCreating")), [race]) is None
    running = {"name": "notebook", "state": {"running": {}}}
    assert (
        diagnose(pod(running, phase="Running"), [event("FailedMount", NFS_DENIED)])
        is None
    )


# --- scheduling -----------------------------------------------------------------------
def test_node_reasons_in_plain_words():
    total, reasons = failures.node_reasons(
        "0/5 nodes are available: 2 Insufficient memory, 1 Insufficient cpu,"
        " 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) didn't"
        " match Pod's node affinity/selector. preemption: 0/5 nodes are available:"
        " 5 Preemption is not helpful for scheduling."
    )
    assert total == 5
    assert reasons == [
        (2, "have not enough free memory", True),
        (1, "have not enough free CPU", True),
        (1, "are reserved for other work (taint dedicated: gpu)", False),
        (1, "do not match the server's node selector", False),
    ]
    assert failures.node_reasons("something else") == (0, [])


def test_no_room_is_transient_and_says_what_the_server_asks_for():
    said = "0/3 nodes are available: 3 Insufficient memory."
    found = diagnose(pod(), [event("FailedScheduling", said)])
    assert found.transient and found.status == 503
    assert found.message == (
        "There is no room for your server in the cluster right now: 3 of 3 nodes"
        " have not enough free memory. It asks for 1 GiB of memory and 0.5 CPU."
        " Please try again in a few minutes, or choose a smaller profile if there"
        " is one."
    )


def test_no_matching_node_names_the_selector():
    said = (
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    )
    found = diagnose(
        pod(nodeSelector={"gpu": "true"}), [event("FailedScheduling", said)]
    )
    assert found.message == (
        "No node in the cluster can run your server: 2 of 2 nodes do not match the"
        f" server's node selector (it asks for gpu=true). {failures.ADMINS}"
    )


def test_autoscaler_decides_between_waiting_and_failing():
    unschedulable = event(
        "FailedScheduling", "0/1 nodes are available: 1 Too many pods."
    )
    scale_up = event(
        "TriggeredScaleUp", "pod triggered scale-up: [{pool 1->2}]", "Normal"
    )
    no_scale_up = event("NotTriggerScaleUp", "pod didn't trigger scale-up: max size")
    assert diagnose(pod(), [unschedulable, scale_up]) is None
    found = diagnose(pod(), [unschedulable, scale_up, no_scale_up])
    assert not found.transient
    assert "and the cluster cannot add a node for it" in found.message
    assert "NotTriggerScaleUp: pod didn't trigger scale-up" in found.detail


def test_a_scheduled_pod_is_past_its_old_failed_scheduling():
    unschedulable = event(
        "FailedScheduling", "0/1 nodes are available: 1 Too many pods."
    )
    placed = pod()
    placed["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"}]
    assert diagnose(placed, [unschedulable]) is None
    assert diagnose(pod(node="node-2"), [unschedulable]) is None


def test_missing_storage_claim_is_fatal_at_once():
    said = '0/3 nodes are available: persistentvolumeclaim "jupyter-nfs" not found.'
    found = diagnose(pod(), [event("FailedScheduling", said)])
    assert not found.transient and "(claim jupyter-nfs) does not exist" in found.message


def test_start_watch_waits_out_the_grace_period_then_fails():
    watch = StartWatch(grace=30)
    full = [event("FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu.")]
    assert watch.check(pod(), full, now=100) is None
    assert watch.check(pod(), full, now=129) is None
    assert watch.check(pod(), full, now=130).cause == "no-room"
    # the problem went away and came back: the clock starts again
    assert watch.check(pod(node="n1"), full, now=131) is None
    assert watch.check(pod(), full, now=140) is None
    # a permanent problem does not wait
    crashed = pod(waiting("CrashLoopBackOff"))
    assert StartWatch(grace=30).check(crashed, [], now=0).cause == "crash"


# --- Kubernetes API errors ------------------------------------------------------------
def api_error(status, reason, message="", causes=()) -> ApiException:
    body = {"kind": "Status", "code": status, "message": message}
    body["details"] = {"causes": list(causes)}
    response = SimpleNamespace(
        status=status,
        reason=reason,
        data=json.dumps(body),
        getheaders=lambda: {"X-Dump": "1"},
    )
    return ApiException(http_resp=response)


def explain(error, verb="create", resource="pods"):
    return explain_api_error(
        error,
        verb=verb,
        resource=resource,
        namespace="jupyter",
        server="https://k8s:6443",
    )


@pytest.mark.parametrize(
    ("error", "cause", "text", "status"),
    [
        (
            api_error(401, "Unauthorized", "Unauthorized"),
            "api-unauthorized",
            "The hub may not start servers right now: Kubernetes did not accept its"
            f" credentials (401 Unauthorized). {failures.ADMINS}",
            500,
        ),
        (
            api_error(
                403,
                "Forbidden",
                'pods is forbidden: User "system:serviceaccount:jupyter:hub" cannot'
                ' create resource "pods" in API group "" in the namespace "jupyter"',
            ),
            "api-forbidden",
            "The hub is not allowed to start servers: Kubernetes refused to let"
            " service account jupyter/hub create pods in namespace jupyter (403"
            f" Forbidden). {failures.ADMINS}",
            500,
        ),
        (
            api_error(403, "Forbidden", "forbidden"),
            "api-forbidden",
            "The hub is not allowed to start servers: Kubernetes refused to let the"
            " hub's service account create pods in namespace jupyter (403 Forbidden)."
            f" {failures.ADMINS}",
            500,
        ),
        (
            api_error(
                403,
                "Forbidden",
                'pods "jupyter-ann" is forbidden: violates PodSecurity'
                ' "restricted:latest":'
                " runAsNonRoot != true",
            ),
            "api-policy",
            "The cluster's security policy refused your server (violates PodSecurity"
            f' "restricted:latest": runAsNonRoot != true). {failures.ADMINS}',
            500,
        ),
        (
            api_error(409, "Conflict", 'pods "jupyter-ann" already exists'),
            "api-conflict",
            "Your server could not be created: a pod of the same name exists and could"
            f" not be replaced. {failures.LATER}",
            503,
        ),
        (
            api_error(
                422,
                "Unprocessable Entity",
                'Pod "jupyter-ann" is invalid: spec.containers[0].resources.limits:'
                " Invalid",
                [
                    {
                        "field": "spec.containers[0].resources.limits.memory",
                        "message": 'Invalid value: "2X": quantities must match',
                    }
                ],
            ),
            "api-invalid",
            "Kubernetes refused your server's settings as invalid:"
            ' spec.containers[0].resources.limits.memory: Invalid value: "2X":'
            f" quantities must match. {failures.SETTINGS}",
            500,
        ),
        (
            api_error(500, "Internal Server Error", "etcdserver: leader changed"),
            "api-server",
            "The Kubernetes cluster had an internal error (500 Internal Server Error)"
            f" and did not start your server. {failures.LATER}",
            503,
        ),
    ],
)
def test_api_errors_in_one_or_two_lines(error, cause, text, status):
    found = explain(error)
    assert (found.cause, found.message, found.status) == (cause, text, status)
    assert "HTTP response" not in found.message and "X-Dump" not in found.message
    assert "create pods in namespace jupyter" in found.detail


def test_quota_403_says_what_is_used_up():
    found = explain(
        api_error(
            403,
            "Forbidden",
            'pods "jupyter-ann" is forbidden: exceeded quota: users, requested:'
            " limits.memory=2Gi, used: limits.memory=9Gi, limited: limits.memory=10Gi",
        )
    )
    assert found.cause == "api-quota" and found.status == 503
    assert found.message.startswith(
        "The cluster's resource quota is used up (users, requested: limits.memory=2Gi,"
    )


def test_unreachable_and_slow_api_server():
    key = SimpleNamespace(host="k8s", port=6443, ssl=True)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    found = explain(refused, "list and watch", "pods")
    assert found.message == (
        "The hub cannot reach the Kubernetes cluster that runs the servers, so your"
        f" server was not started. {failures.LATER}"
    )
    assert "https://k8s:6443 unreachable while trying to list and watch pods" in (
        found.detail
    )
    assert explain(TimeoutError("Could not create pod")).cause == "api-timeout"
    assert explain(ValueError("a bug")) is None


def test_stale_pod_that_does_not_go_away():
    found = api_errors.stale_pod_failure("jupyter", "jupyter-ann", TimeoutError("slow"))
    assert found.message.startswith("A server of yours from an earlier start is still")
    assert "finalizers" in found.detail and found.status == 503


# --- robustness -----------------------------------------------------------------------
REASONS = ["ErrImagePull", "CrashLoopBackOff", "ContainerCreating", "OOMKilled", ""]
EVENTS = ["FailedScheduling", "FailedMount", "TriggeredScaleUp", "Failed", "Pulled"]
text = st.text(max_size=80)
fuzzed_status = st.fixed_dictionaries(
    {"name": st.sampled_from(["notebook", "x"])},
    optional={
        "state": st.dictionaries(
            st.sampled_from(["waiting", "terminated", "running"]),
            st.fixed_dictionaries(
                {},
                optional={
                    "reason": st.sampled_from(REASONS) | text,
                    "message": text,
                    "exitCode": st.integers(-1, 255) | st.none(),
                },
            ),
            max_size=2,
        ),
        "restartCount": st.integers(0, 9),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    statuses=st.lists(fuzzed_status, max_size=3),
    phase=st.sampled_from(["Pending", "Running", "Failed", "Succeeded", None]),
    events=st.lists(
        st.fixed_dictionaries(
            {"reason": st.sampled_from(EVENTS) | text, "message": text}
        ),
        max_size=4,
    ),
)
def test_any_pod_gives_an_answer_never_an_exception(statuses, phase, events):
    found = diagnose(
        {
            "metadata": {},
            "spec": {},
            "status": {"phase": phase, "containerStatuses": statuses},
        },
        events,
    )
    if found is not None:
        assert found.cause in failures.TEXTS and found.message.strip()
        assert found.status in (500, 503)


# --- slow but healthy starts are not failed (review findings) ----------------------
@pytest.mark.parametrize(
    "status,events",
    [
        # the mount failed once, then worked: the kubelet went on to the image
        (
            waiting("ContainerCreating"),
            [event("FailedMount", NFS_DENIED), event("Pulling", "pulling", "Normal")],
        ),
        # kubelet's usual slow-mount message
        (
            waiting("ContainerCreating"),
            [
                event(
                    "FailedMount",
                    "Unable to attach or mount volumes: unmounted volumes=[home]:"
                    " timed out waiting for the condition",
                )
            ],
        ),
        # the kubelet's own pull rate limit, hit when a whole class starts
        (waiting("ErrImagePull", "pull QPS exceeded"), []),
        # a container runtime under load
        (waiting("CreateContainerError", "context deadline exceeded"), []),
    ],
)
def test_slow_but_healthy_starts_are_not_failed_at_once(status, events):
    found = diagnose(pod(status), events)
    assert found is None or found.transient
    if found is not None and found.cause == "mount":
        assert "file server the file server" not in found.message
