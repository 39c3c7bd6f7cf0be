"""An emulated Kubernetes cluster for spawner tests and benchmarks.

kmock is not a cluster: no scheduler or kubelet runs. :class:`Cluster`
adds what a real API server adds (uids, resource versions, a Pending
status) and lets a test play the kubelet's part, writing pod status and
posting events. Shared by tests/test_kube_lifecycle.py and
benchmarks/bench_spawn_failures.py.
"""

from __future__ import annotations

import asyncio
import itertools
import textwrap
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace

import aiohttp.web
import attrs
import kmock
import pytest
from jupyterhub.objects import Hub
from jupyterhub.utils import maybe_future
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner
from kubespawner.clients import load_config
from tornado import web
from traitlets.config import Config

from kube_helpers import MockUser

NAMESPACE = "jupyter"
HUB_ACCOUNT = "system:serviceaccount:jupyter:hub"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Refusal:
    """The API answers ``method`` on ``plural`` with an error Status."""

    method: str
    plural: str
    status: int
    message: str
    causes: tuple = ()
    times: int | None = None  # None: always
    name: str = ""  # only for this object (create requests)


class Cluster(kmock.KubernetesEmulator):
    """kmock's emulator with what a real API server adds and the spawner
    relies on: namespace, uid, resourceVersion and creationTimestamp on
    create, a Pending status for new pods, ``watch=True`` understood as a
    watch (the Python client's spelling), and error answers on demand."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.refusals: list[Refusal] = []
        self.versions = itertools.count(1)

    def refuse(self, method, plural, status, message, causes=(), times=None, name=""):
        refusal = Refusal(method, plural, status, message, causes, times, name)
        self.refusals.append(refusal)

    async def _handle(self, request):
        refusal = self._refusal(request)
        if refusal is not None:
            return aiohttp.web.json_response(
                self._status(refusal), status=refusal.status
            )
        if (
            request.action == kmock.action.LIST
            and request.params.get("watch") == "True"
        ):
            watching = attrs.evolve(request, action=kmock.action.WATCH)
            self._requests[self._requests.index(request)] = watching
            request = watching
        if request.resource is not None and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if request.action == kmock.action.CREATE:
                meta.setdefault("namespace", request.namespace)
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", _now())
                if request.resource.plural == "pods":
                    request.data.setdefault("status", {"phase": "Pending"})
            if request.action in (kmock.action.CREATE, kmock.action.UPDATE):
                meta["resourceVersion"] = str(next(self.versions))
        return await super()._handle(request)

    def _refusal(self, request) -> Refusal | None:
        plural = request.resource.plural if request.resource else None
        data = request.data if isinstance(request.data, dict) else {}
        name = request.name or data.get("metadata", {}).get("name")
        for refusal in self.refusals:
            if refusal.method.upper() == str(request.method.value).upper() and (
                refusal.plural == plural
                and refusal.times != 0
                and refusal.name in ("", name)
            ):
                if refusal.times:
                    refusal.times -= 1
                return refusal
        return None

    @staticmethod
    def _status(refusal: Refusal) -> dict:
        reasons = {401: "Unauthorized", 403: "Forbidden", 409: "AlreadyExists"}
        reasons |= {422: "Invalid", 500: "InternalError"}
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "code": refusal.status,
            "reason": reasons.get(refusal.status, "Unknown"),
            "message": refusal.message,
            "details": {"causes": [dict(c) for c in refusal.causes]},
        }

    # --- playing kubelet and scheduler -------------------------------------------
    def pod(self, name: str) -> dict | None:
        for (resource, _, pod_name), obj in self.objects.items():
            if resource.plural == "pods" and pod_name == name and not obj.deleted:
                return obj.raw
        return None

    async def wait_for_pod(self, name: str, timeout=10, replacing=None) -> dict:
        """The pod once created (and if ``replacing``, not that one)."""
        old = (replacing or {}).get("metadata", {}).get("uid")
        deadline = time.monotonic() + timeout
        while (pod := self.pod(name)) is None or pod["metadata"]["uid"] == old:
            if time.monotonic() > deadline:
                raise AssertionError(f"pod {name} was never created")
            await asyncio.sleep(0.05)
        return pod

    async def set_status(self, name: str, status: dict) -> None:
        url = f"/api/v1/namespaces/{NAMESPACE}/pods/{name}"
        async with self.patch(url, json={"status": status}) as response:
            assert response.status == 200, await response.text()

    async def event(self, pod: dict, reason: str, message: str, kind="Warning"):
        body = {
            "metadata": {"name": f"{pod['metadata']['name']}.{uuid.uuid4().hex[:12]}"},
            "involvedObject": {
                "kind": "Pod",
                "namespace": NAMESPACE,
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "count": 1,
            "firstTimestamp": _now(),
            "lastTimestamp": _now(),
            "eventTime": None,
            "source": {"component": "kubelet"},
        }
        url = f"/api/v1/namespaces/{NAMESPACE}/events"
        async with self.post(url, json=body) as response:
            assert response.status in (200, 201), await response.text()

    async def run(self, pod: dict) -> None:
        """The pod is scheduled, pulled and running, as the kubelet says."""
        await self.event(pod, "Scheduled", "Successfully assigned", "Normal")
        await self.set_status(pod["metadata"]["name"], running(pod))


def container_status(pod: dict, state: dict, **more) -> dict:
    image = pod["spec"]["containers"][0]["image"]
    status = {"name": "notebook", "image": image, "imageID": "", "ready": False}
    return {"restartCount": 0, "state": state, **status, **more}


def running(pod: dict) -> dict:
    ready = container_status(pod, {"running": {"startedAt": _now()}}, ready=True)
    return {"phase": "Running", "podIP": "10.1.2.3", "containerStatuses": [ready]}


def waiting(pod: dict, reason: str, message: str = "", **more) -> dict:
    state = {"waiting": {"reason": reason, "message": message}}
    return {
        "phase": "Pending",
        "containerStatuses": [container_status(pod, state, **more)],
    }


def kubeconfig(server: str, directory) -> str:
    path = directory / "kubeconfig"
    path.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: v1
            kind: Config
            clusters:
            - name: kmock
              cluster: {{server: "{server}"}}
            contexts:
            - name: kmock
              context: {{cluster: kmock, user: hub, namespace: {NAMESPACE}}}
            current-context: kmock
            users:
            - name: hub
              user: {{token: not-a-real-token}}
            """
        )
    )
    return str(path)


@asynccontextmanager
async def kube_api(directory, server: str | None = None):
    """A Cluster on a local port (or ``server``, e.g. a closed port), and
    KubeSpawner's client configured from a kubeconfig that points there.
    Reflectors and client settings are undone afterwards."""
    saved = (Configuration.get_default_copy(), kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
    async with Cluster() as cluster, kmock.Server(cluster) as http:
        cluster.resources["v1/pods"] = {}
        cluster.resources["v1/events"] = {}
        url = server or str(http.url).rstrip("/")
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = kubeconfig(url, directory)
        load_config.cache_clear()  # KubeSpawner loads the kubeconfig again
        try:
            yield cluster
        finally:
            for key, reflector in list(KubeSpawner.reflectors.items()):
                await reflector.stop()
                KubeSpawner.reflectors.pop(key, None)
            Configuration.set_default(saved[0])
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = saved[1]
            load_config.cache_clear()


def fast(config: Config) -> Config:
    """Short timeouts, so that a broken fail-fast shows as a slow test."""
    config.CourseSpawner.namespace = NAMESPACE
    config.CourseSpawner.start_timeout = 15
    config.CourseSpawner.k8s_api_request_retry_timeout = 5
    config.CourseSpawner.failure_check_interval = 0.5
    config.CourseSpawner.transient_failure_grace = 2
    config.CourseSpawner.slow_spawn_message_threshold = 0
    return config


def real_spawner(config: Config, username: str, cls=None):
    """A spawner as JupyterHub builds it (not KubeSpawner's _mock)."""
    from aaltohub.kube import CourseSpawner

    spawner = (cls or CourseSpawner)(
        config=config,
        user=MockUser(username),
        hub=Hub(),
        orm_spawner=SimpleNamespace(name="", server=None, user_options=None),
    )
    spawner.api_token = "token-of-" + username
    return spawner


async def begin(spawner, profile: str | None = None) -> asyncio.Future:
    """JupyterHub's spawn sequence up to start()."""
    spawner.user_options = {"profile": profile} if profile else {}
    spawner.clear_state()
    await maybe_future(spawner.run_pre_spawn_hook())
    return spawner.start()


async def failure_of(start: asyncio.Future, timeout: float = 30) -> tuple[str, float]:
    """The message JupyterHub would show, and seconds until it came."""
    began = time.monotonic()
    with pytest.raises(web.HTTPError) as info:
        await asyncio.wait_for(start, timeout)
    return info.value.jupyterhub_message, time.monotonic() - began


# --- fixtures --------------------------------------------------------------------
# --- the pod cannot start ----------------------------------------------------------
NOT_FOUND = (
    "rpc error: code = NotFound desc = failed to pull and unpack image"
    ' "docker.io/example/notebook:5.0": not found'
)
CASES = {
    "image-not-found": (
        lambda p: waiting(p, "ErrImagePull", NOT_FOUND),
        [("Failed", f'Failed to pull image "example/notebook:5.0": {NOT_FOUND}')],
        ["example/notebook:5.0", "does not exist in the registry", "course staff"],
    ),
    "pull-denied": (
        lambda p: waiting(p, "ImagePullBackOff", 'Back-off pulling image "x"'),
        [("Failed", "Failed to pull image: unauthorized: authentication required")],
        ["example/notebook:5.0", "refused access to it"],
    ),
    "invalid-image-name": (
        lambda p: waiting(p, "InvalidImageName", 'couldn\'t parse image name "X"'),
        [],
        ["is not a valid image name"],
    ),
    "crash-loop": (
        lambda p: waiting(
            p,
            "CrashLoopBackOff",
            "back-off 10s restarting failed container",
            restartCount=3,
            lastState={"terminated": {"exitCode": 1, "reason": "Error"}},
        ),
        [("BackOff", "Back-off restarting failed container notebook")],
        ["exit code 1, restarted 3 times", "ModuleNotFoundError: No module named 'x'"],
    ),
    "exited": (
        lambda p: {
            "phase": "Running",
            "podIP": "10.1.2.3",
            "containerStatuses": [
                container_status(p, {"terminated": {"exitCode": 2, "reason": "Error"}})
            ],
        },
        [],
        ["stopped right after starting (exit code 2)", "~/.local"],
    ),
    "oom": (
        lambda p: waiting(
            p,
            "CrashLoopBackOff",
            restartCount=1,
            lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
        ),
        [],
        ["ran out of memory while starting (its limit is 1 GiB)"],
    ),
    "config-error": (
        lambda p: waiting(p, "CreateContainerConfigError", 'secret "token" not found'),
        [],
        ['could not prepare its container (secret "token" not found)'],
    ),
    "evicted": (
        lambda p: {"phase": "Failed", "reason": "Evicted", "message": "low on memory"},
        [],
        ["stopped your server before it was ready (Evicted: low on memory)"],
    ),
}
