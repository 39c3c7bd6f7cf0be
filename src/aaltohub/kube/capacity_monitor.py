"""Capacity metrics: read the user nodes and pods from the Kubernetes API
now and then, and publish what is allocatable, what user servers request,
and how many more servers of each course fit (``aaltohub.metrics``).

Off by default: z2jh's hub Role may not read nodes (a cluster-scoped
resource), so enabling it goes with deploy/monitoring/capacity-rbac.yaml::

    c.CapacityMonitor.enabled = True

**How it starts.** The first CourseSpawner the hub builds starts it
(:func:`watch`); JupyterHub builds the spawners of every user who has one
at startup, so in practice it starts with the hub. It borrows that
spawner's Kubernetes client, which KubeSpawner already configured
(in-cluster account, ``k8s_api_host``, CA), its namespace and resource
defaults, and the shared course catalog; a ``configure(c)`` in
jupyterhub_config.py would have to build and configure a second client.

**Failure.** Reads are async (kubernetes_asyncio, as KubeSpawner) with a
timeout. If the API cannot be read the metrics keep their last values
(stale), the problem is logged once, and the next success is logged too;
nothing here raises into the hub.
"""

from __future__ import annotations

import asyncio
import json
import time

from kubernetes_asyncio.client.rest import ApiException
from traitlets import Bool, Dict, Float
from traitlets.config import LoggingConfigurable

from .. import metrics
from ..shared import shared_instance
from .capacity import Capacity, Request, course_requests

_RBAC_HINT = (
    "; the hub's service account needs get/list on nodes: apply"
    " deploy/monitoring/capacity-rbac.yaml"
)


class CapacityMonitor(LoggingConfigurable):
    """Reads the user nodes' capacity from the Kubernetes API on an
    interval and sets the ``aaltohub_capacity_*`` metrics."""

    enabled = Bool(
        False,
        help="""Publish the capacity metrics (aaltohub_capacity_allocatable,
        _requested, _free_servers). Needs get/list on nodes for the hub's
        service account (deploy/monitoring/capacity-rbac.yaml); the chart's
        own hub Role does not have it.""",
    ).tag(config=True)

    interval = Float(
        60.0,
        help="""Seconds between two reads of the nodes and pods. Each read
        lists the nodes and the pods of the hub's namespace.""",
    ).tag(config=True)

    timeout = Float(
        10.0,
        help="""Seconds one read may take before it is given up (the metrics
        then keep their last values until a read succeeds).""",
    ).tag(config=True)

    node_selector = Dict(
        {"hub.jupyter.org/node-purpose": "user"},
        help="""Labels of the nodes user servers run on (all must match).
        The default is z2jh's user node label
        (scheduling.userPods.nodeAffinity). Set it to the spawner's
        node_selector if you use one, or to {} to count every node.
        Cordoned nodes are never counted.""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.capacity: Capacity | None = None
        self.updated: float = 0.0  # time.time() of the last good read
        self._task: asyncio.Task | None = None
        self._failing = False
        self._empty_logged = False
        self._problems_logged: set[tuple[str, str]] = set()
        self._api = None
        self._namespace = ""
        self._catalog = None
        self._defaults: dict = {}

    # --- starting ----------------------------------------------------------------
    def attach(self, spawner) -> None:
        """Take the client, namespace, defaults and catalog of the first
        spawner, and start refreshing on the running loop (if any)."""
        if self._api is None:
            self._api = spawner.api
            self._namespace = spawner.namespace
            self._catalog = spawner.catalog
            self._defaults = spawner.resource_defaults()
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # built outside the hub (a CLI, a test): nothing to refresh
        self._task = loop.create_task(self._run(), name="aaltohub-capacity")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # --- reading -------------------------------------------------------------------
    async def read(self) -> Capacity:
        """One read of the nodes and the namespace's pods."""
        return await read_capacity(
            self._api, self._namespace, self.node_selector, self.timeout
        )

    async def refresh(self) -> Capacity:
        """Read now and publish; raises what the read raised."""
        capacity = await asyncio.wait_for(self.read(), self.timeout)
        self.capacity, self.updated = capacity, time.time()
        if not capacity.nodes and not self._empty_logged:
            self._empty_logged = True  # a setting to fix, said once
            self.log.warning(
                "capacity: no schedulable node has the labels %s"
                " (c.CapacityMonitor.node_selector); label the user nodes, or"
                " set it to {} to count every node",
                self.node_selector,
            )
        publish(capacity, self.requests())
        return capacity

    def requests(self) -> dict[str, Request]:
        """One server's requests per course slug ("": no course)."""
        courses = getattr(self._catalog, "courses", {}) or {}
        requests, problems = course_requests(courses, self._defaults)
        for slug, problem in problems.items():
            if (slug, problem) not in self._problems_logged:  # not every minute
                self._problems_logged.add((slug, problem))
                self.log.warning("capacity: course %s skipped: %s", slug, problem)
        return requests

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._note_failure(e)
            else:
                if self._failing:
                    self.log.info("capacity: the Kubernetes API answers again")
                self._failing = False
            await asyncio.sleep(self.interval)

    def _note_failure(self, exc: BaseException) -> None:
        if self._failing:
            return  # logged once per outage
        self._failing = True
        why = repr(exc)
        if isinstance(exc, ApiException):
            why = f"HTTP {exc.status} {exc.reason}"
            if exc.status in (401, 403):
                why += _RBAC_HINT
        elif isinstance(exc, asyncio.TimeoutError | TimeoutError):
            why = f"no answer in {self.timeout:g} s"
        self.log.warning(
            "capacity: cannot read nodes and pods from the Kubernetes API (%s);"
            " the aaltohub_capacity_* metrics keep their last values, retrying"
            " every %g s (logged once until it works again)",
            why,
            self.interval,
        )


async def read_capacity(api, namespace: str, selector: dict, timeout: float):
    """The user nodes (``selector``) and the pods of ``namespace``, read
    with a CoreV1Api of kubernetes_asyncio (the hub's, or the CLI's)."""
    labels = ",".join(f"{k}={v}" for k, v in selector.items())
    kwargs = {"label_selector": labels} if labels else {}
    nodes = await _list(api.list_node, timeout, **kwargs)
    pods = await _list(api.list_namespaced_pod, timeout, namespace)
    return Capacity.of(nodes, pods, selector)


async def _list(method, timeout, *args, **kwargs) -> list[dict]:
    """The items as plain JSON: no client models (a few thousand pods would
    cost their construction and validation every interval), and parsed in a
    thread, as the list may be megabytes."""
    response = await method(
        *args, _preload_content=False, _request_timeout=timeout, **kwargs
    )
    async with response:
        body = await response.read()
    if not 200 <= response.status <= 299:  # unchecked without preloading
        error = ApiException(status=response.status, reason=response.reason)
        error.body = body[:500]
        raise error
    return (await asyncio.to_thread(json.loads, body)).get("items") or []


def publish(capacity: Capacity, requests: dict[str, Request]) -> None:
    """Set the capacity metrics from one read."""
    for gauge, value in (
        (metrics.CAPACITY_ALLOCATABLE, capacity.allocatable),
        (metrics.CAPACITY_REQUESTED, capacity.requested),
    ):
        gauge.labels(resource="cpu").set(value.cpu)
        gauge.labels(resource="memory").set(value.memory)
    # Courses removed from the catalog disappear from the metric: rebuilt
    # in one go on the event loop, so no scrape sees it half-done.
    metrics.CAPACITY_FREE_SERVERS.clear()
    for slug, one in requests.items():
        metrics.CAPACITY_FREE_SERVERS.labels(course=slug).set(
            capacity.free_servers(one)
        )


def watch(spawner) -> CapacityMonitor | None:
    """Start the hub's monitor on a spawner's first construction, if
    ``c.CapacityMonitor.enabled``. Cheap after the first call."""
    monitor = shared_instance(CapacityMonitor, spawner.config)
    if not monitor.enabled:
        return None
    monitor.attach(spawner)
    return monitor
