"""The Kubernetes backend of ``aaltohub grade``: the Job and NetworkPolicy
validate against the Kubernetes schema and isolate the run; their
lifecycle runs against kmock (an emulated API server: no pod runs, the
test plays the Job controller and the kubelet), including a Job over its
time limit and a pod killed for memory."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import kubernetes_validate
import nbformat
import pytest
from kubernetes_asyncio import client, config

sys.path.insert(0, str(Path(__file__).parent))
from aaltohub.course import build_course
from aaltohub.grading import jobs, kube
from aaltohub.grading.kube import KubeSettings, run_job
from aaltohub.grading.limits import GradingLimits
from aaltohub.grading.outcome import EXECUTED, FAILED, TIMED_OUT
from kube_cluster import NAMESPACE, kube_api

K8S_VERSION = kubernetes_validate.utils.latest_version()
LIMITS = GradingLimits(
    cpu=0.5, memory=512 * 2**20, pids=64, timeout=30, cell_timeout=10
)
VOLUME = {"nfs": {"server": "nfs.example.org", "path": "/export/courses"}}


def manifests(limits=LIMITS):
    name = jobs.run_name("course101", "ps1", "student1", "attempt-1")
    job = jobs.job(
        name=name,
        namespace=NAMESPACE,
        image="registry.example.org/notebook:2026",
        limits=limits,
        volume=VOLUME,
        input_path="course101/.aaltohub-grading/run-1/in",
        output_path="course101/.aaltohub-grading/run-1/out",
        uid=2_000_000_123,
    )
    return job, jobs.network_policy(name=name, namespace=NAMESPACE)


def test_the_manifests_validate_and_isolate_the_run():
    job, policy = manifests()
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] != 0
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"] == {
        "cpu": "0.5",
        "memory": str(512 * 2**20),
    }
    assert job["spec"]["activeDeadlineSeconds"] == 30
    assert job["spec"]["backoffLimit"] == 0
    assert "--nproc=64" in container["command"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[jobs.INPUT]["readOnly"] is True
    assert mounts[jobs.INPUT]["subPath"].endswith("/run-1/in")
    assert mounts[jobs.OUTPUT]["subPath"].endswith("/run-1/out")
    # Nothing of the course but this run's directories: no gradebook, no source.
    assert {m.get("subPath") for m in mounts.values()} == {
        "course101/.aaltohub-grading/run-1/in",
        "course101/.aaltohub-grading/run-1/out",
        None,
    }
    assert not any("gradebook" in str(v) or "source" in str(v) for v in mounts.values())
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        jobs.RUN_LABEL: job["metadata"]["name"]
    }
    assert (
        job["spec"]["template"]["metadata"]["labels"][jobs.RUN_LABEL]
        == (job["metadata"]["name"])
    )
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == policy["spec"]["egress"] == []
    assert "student1" not in job["metadata"]["name"]  # names show cluster-wide


def test_course_limits_reach_the_job_and_are_bounded():
    course = build_course(
        "c", {"grading": {"memory": "2G", "timeout": 120, "pids": 32}}
    )
    job, _ = manifests(course.grading)
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    assert job["spec"]["activeDeadlineSeconds"] == 120
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][
        "memory"
    ] == str(2 * 2**30)
    with pytest.raises(ValueError, match="'memory' must be between"):
        build_course("c", {"grading": {"memory": "1T"}})
    with pytest.raises(ValueError, match=r"grading\.cpus' is unknown"):
        build_course("c", {"grading": {"cpus": 2}})


async def _controller(cluster, job_status: dict, pod_status: dict | None, work=None):
    """Play the Job controller and kubelet: once the Job is resumed (and
    only if its NetworkPolicy exists by then), a pod and the end state."""
    base = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
    while True:
        found = [
            o.raw
            for (r, _, _), o in cluster.objects.items()
            if r.plural == "jobs" and not o.deleted
        ]
        if found and found[0]["spec"].get("suspend") is False:
            break
        if found:
            assert found[0]["spec"]["suspend"] is True  # created suspended
        await asyncio.sleep(0.05)
    job = found[0]
    name = job["metadata"]["name"]
    policies = [
        o.raw
        for (r, _, _), o in cluster.objects.items()
        if r.plural == "networkpolicies" and not o.deleted
    ]
    assert [p["metadata"]["name"] for p in policies] == [name]
    assert (
        policies[0]["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    )
    if pod_status is not None:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{name}-abcde", "labels": {jobs.RUN_LABEL: name}},
            "spec": job["spec"]["template"]["spec"],
        }
        async with cluster.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=pod) as r:
            assert r.status in (200, 201), await r.text()
        await cluster.set_status(f"{name}-abcde", pod_status)
    if work is not None:
        work(job)
    async with cluster.patch(f"{base}/{name}", json={"status": job_status}) as r:
        assert r.status == 200, await r.text()
    return name


def _terminated(reason, code):
    state = {"terminated": {"reason": reason, "exitCode": code}}
    return {
        "phase": "Failed" if code else "Succeeded",
        "containerStatuses": [
            {
                "name": "grade",
                "image": "x",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": state,
            }
        ],
    }


def _condition(kind, reason=""):
    return {"conditions": [{"type": kind, "status": "True", "reason": reason}]}


@pytest.mark.parametrize(
    ("job_status", "pod_status", "status", "reason"),
    [
        (_condition("Complete"), _terminated("Completed", 0), EXECUTED, ""),
        (_condition("Failed", "DeadlineExceeded"), None, TIMED_OUT, "after 30 s"),
        (
            _condition("Failed", "BackoffLimitExceeded"),
            _terminated("OOMKilled", 137),
            FAILED,
            "memory limit (512 MiB): OOMKilled",
        ),
        (
            _condition("Failed", "BackoffLimitExceeded"),
            _terminated("Error", 3),
            FAILED,
            "exit code 3",
        ),
    ],
    ids=["completes", "times-out", "oom-killed", "fails"],
)
async def test_job_lifecycle(tmp_path, job_status, pod_status, status, reason):
    async with kube_api(tmp_path) as cluster:
        cluster.resources["batch/v1/jobs"] = {}
        cluster.resources["networking.k8s.io/v1/networkpolicies"] = {}
        await config.load_kube_config(config_file=str(tmp_path / "kubeconfig"))
        settings = KubeSettings(namespace=NAMESPACE, image="x", poll=0.05)
        job, policy = manifests()
        async with client.ApiClient() as api:
            controller = asyncio.create_task(
                _controller(cluster, job_status, pod_status)
            )
            result = await asyncio.wait_for(
                run_job(api, settings, job, policy, LIMITS), 20
            )
            name = await controller
    assert result.status == status
    assert reason in result.reason
    deleted = [
        k for k, o in cluster.objects.items() if k[0].plural == "jobs" and o.deleted
    ]
    assert [k[2] for k in deleted] == [name]  # the Job is always deleted


async def test_a_notebook_goes_out_as_a_job_and_its_outputs_come_back(tmp_path):
    """kube.execute end to end: the run's input on the course storage, the
    Job mounting exactly that, the executed notebook read back, the run's
    directory removed."""
    course_dir = tmp_path / "storage" / "courses" / "c1"  # the grader's mount
    course_dir.mkdir(parents=True)
    build = tmp_path / "build"  # nbgrader's autograded/STUDENT/ASSIGNMENT
    build.mkdir()
    (build / "data.txt").write_text("21\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(21)")])
    settings = KubeSettings(
        namespace=NAMESPACE,
        image="registry.example.org/notebook:2026",
        volume=VOLUME,
        storage_dir=str(course_dir),
        volume_path="courses/c1",
        poll=0.05,
    )

    def kubelet(job):
        mounts = job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        sub = {m["mountPath"]: m["subPath"] for m in mounts if "subPath" in m}
        seen = course_dir / sub[jobs.INPUT].removeprefix("courses/c1/")
        assert (seen / "files" / "data.txt").read_text() == "21\n"
        sent = nbformat.read(seen / "notebook.ipynb", as_version=4)
        sent.cells[0].outputs = [
            nbformat.v4.new_output("stream", name="stdout", text="21\n")
        ]
        out = course_dir / sub[jobs.OUTPUT].removeprefix("courses/c1/")
        nbformat.write(sent, out / "notebook.ipynb")

    async with kube_api(tmp_path) as cluster:
        cluster.resources["batch/v1/jobs"] = {}
        cluster.resources["networking.k8s.io/v1/networkpolicies"] = {}
        done = _condition("Complete")
        controller = asyncio.create_task(_controller(cluster, done, None, kubelet))
        result = await asyncio.wait_for(
            asyncio.to_thread(
                kube.execute, nbformat.writes(nb), str(build), LIMITS, settings
            ),
            30,
        )
        await controller
    assert result.status == EXECUTED, result
    back = nbformat.reads(result.notebook, as_version=4)
    assert back.cells[0].outputs[0]["text"] == "21\n"
    assert list((course_dir / ".aaltohub-grading").iterdir()) == []
