"""The Kubernetes backend: one Job per notebook run.

Order matters: the Job is created suspended, its NetworkPolicy is created
owned by it (``ownerReferences``), and only then is the Job resumed, so
its pod never runs without the policy, and the policy is garbage-collected
only after the Job and its pod are gone. The grader polls the Job and its
pod, and tells a finished run from one over its time limit
(``DeadlineExceeded``) or killed for memory (``OOMKilled``). The Job is
always deleted (foreground: its pod first).

The run's input and output directories live on the course storage,
which the grader has mounted (``storage_dir``) and the Job mounts by
``subPath`` of ``volume``; the grader writes the input, then reads the
executed notebook back from the output, up to a size limit.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field

from . import jobs
from .limits import UID_BASE, UID_SPAN, GradingLimits
from .local import MAX_NOTEBOOK, FilesTooLarge, copy_files
from .outcome import EXECUTED, FAILED, TIMED_OUT, RunResult, clean
from .runner import read_regular


@dataclass
class KubeSettings:
    """Where and how the Jobs run (the deployer's, never a course's)."""

    namespace: str
    image: str
    #: The course storage's volume source, as in a pod spec.
    volume: dict = field(default_factory=dict)
    #: The grader's path of the directory that ``volume_path`` is on the volume.
    storage_dir: str = ""
    volume_path: str = ""
    #: Seconds a pod may take to start (image pull) on top of the time limit.
    start_grace: int = 300
    poll: float = 1.0


def _terminated(pod) -> dict:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = (status.get("state") or {}).get("terminated")
        if state:
            return state
    return {}


def judge(job: dict, pods: list[dict], limits: GradingLimits) -> RunResult | None:
    """The run's end from the Job and its pods; None while it runs."""
    for pod in pods:
        ended = _terminated(pod)
        if ended.get("reason") == "OOMKilled":
            return RunResult(
                FAILED, reason=f"memory limit ({limits.memory >> 20} MiB): OOMKilled"
            )
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return RunResult(EXECUTED)
        if condition.get("type") == "Failed":
            if condition.get("reason") == "DeadlineExceeded":
                return RunResult(
                    TIMED_OUT, reason=f"still running after {limits.timeout} s"
                )
            ended = next((_terminated(p) for p in pods if _terminated(p)), {})
            why = (
                ended.get("message") or ended.get("reason") or condition.get("message")
            )
            code = ended.get("exitCode")
            detail = f"exit code {code}: " if code is not None else ""
            return RunResult(FAILED, reason=clean(detail + (why or "the Job failed")))
    return None


async def run_job(
    api_client, settings: KubeSettings, job: dict, policy: dict, limits
) -> RunResult:
    """Create, watch and delete one Job; ``api_client`` is a
    kubernetes_asyncio ApiClient."""
    from kubernetes_asyncio import client

    batch, net, core = (
        client.BatchV1Api(api_client),
        client.NetworkingV1Api(api_client),
        client.CoreV1Api(api_client),
    )
    ns, name = settings.namespace, job["metadata"]["name"]
    job["spec"]["suspend"] = True
    created = await batch.create_namespaced_job(ns, job)
    try:
        policy["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": name,
                "uid": created.metadata.uid,
            }
        ]
        await net.create_namespaced_network_policy(ns, policy)
        await batch.patch_namespaced_job(name, ns, {"spec": {"suspend": False}})
        deadline = time.monotonic() + limits.timeout + settings.start_grace
        selector = f"{jobs.RUN_LABEL}={name}"
        while time.monotonic() < deadline:
            now = api_client.sanitize_for_serialization(
                await batch.read_namespaced_job(name, ns)
            )
            listed = await core.list_namespaced_pod(ns, label_selector=selector)
            pods = api_client.sanitize_for_serialization(listed).get("items", [])
            result = judge(now, pods, limits)
            if result is not None:
                return result
            await asyncio.sleep(settings.poll)
        return RunResult(
            TIMED_OUT, reason=f"not finished {limits.timeout} s after it started"
        )
    finally:
        await batch.delete_namespaced_job(name, ns, propagation_policy="Foreground")


def _read_output(path: str) -> str | None:
    """The Job's output notebook, if it is a regular file of at most
    MAX_NOTEBOOK bytes: the Job wrote that path, so never a link (to a
    host file) nor a FIFO (which would block this read until the deadline)."""
    data = read_regular(path, MAX_NOTEBOOK + 1)
    if data is None or len(data) > MAX_NOTEBOOK:
        return None
    return data.decode(errors="replace")


async def _with_client(settings, job, policy, limits) -> RunResult:
    from kubernetes_asyncio import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        await config.load_kube_config()
    async with client.ApiClient() as api:
        return await run_job(api, settings, job, policy, limits)


def execute(
    notebook: str,
    files_dir: str,
    limits: GradingLimits,
    settings: KubeSettings,
    label="",
) -> RunResult:
    """Run one notebook as a Job; blocking (its own event loop)."""
    run = f"run-{secrets.token_hex(8)}"
    host = os.path.join(settings.storage_dir, ".aaltohub-grading", run)
    on_volume = os.path.join(settings.volume_path, ".aaltohub-grading", run)
    try:
        os.makedirs(os.path.join(host, "out"), 0o700)
        try:
            copy_files(files_dir, os.path.join(host, "in", "files"))
        except FilesTooLarge as e:
            return RunResult(FAILED, reason=str(e))
        with open(
            os.path.join(host, "in", "notebook.ipynb"), "w", encoding="utf-8"
        ) as f:
            f.write(notebook)
        for path in (host, os.path.join(host, "in")):
            os.chmod(path, 0o755)  # noqa: S103 (the Job's uid reads it)
        os.chmod(os.path.join(host, "out"), 0o777)  # noqa: S103 (only this run's)
        name = jobs.run_name(label or "course", run, "", run)
        manifest = jobs.job(
            name=name,
            namespace=settings.namespace,
            image=settings.image,
            limits=limits,
            volume=settings.volume,
            input_path=f"{on_volume}/in",
            output_path=f"{on_volume}/out",
            uid=UID_BASE + secrets.randbelow(UID_SPAN),
        )
        policy = jobs.network_policy(name=name, namespace=settings.namespace)
        result = asyncio.run(_with_client(settings, manifest, policy, limits))
        if result.status != EXECUTED:
            return result
        text = _read_output(os.path.join(host, "out", "notebook.ipynb"))
        if text is None:
            return RunResult(FAILED, reason="the Job left no (or too large a) notebook")
        return RunResult(EXECUTED, notebook=text)
    finally:
        shutil.rmtree(host, ignore_errors=True)
