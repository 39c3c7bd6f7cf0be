"""Capacity: Kubernetes quantities, requests, per-node fit (pure), and the
monitor that reads nodes and pods from the API and sets the metrics.

The API is kmock (tests/kube_cluster.py), the one mocked part: there is no
API server here. Nodes and pods are posted to it as a real cluster would
list them."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from prometheus_client import REGISTRY
from traitlets.config import Config

from aaltohub.kube.capacity import (
    Capacity,
    Request,
    parse_quantity,
    pod_request,
    server_request,
    spawner_bytes,
)
from aaltohub.kube.capacity_monitor import CapacityMonitor
from aaltohub.shared import shared_instance
from kube_cluster import NAMESPACE, fast, kube_api, real_spawner
from kube_helpers import base_config

GI = 1024**3
USER = {"hub.jupyter.org/node-purpose": "user"}


# --- quantities --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("3920m", 3.92),
        ("100m", 0.1),
        ("0.5", 0.5),
        (".5", 0.5),
        ("2.", 2),
        ("250u", 250e-6),
        ("5n", 5e-9),
        ("12k", 12_000),
        ("129M", 129_000_000),
        ("1G", 1_000_000_000),
        ("2T", 2e12),
        ("128974848", 128974848),
        ("129e6", 129_000_000),
        ("1E", 1e18),  # E alone is exa...
        ("1E3", 1000),  # ...and with digits an exponent, as in the API
        ("1e3", 1000),
        ("12E-3", 0.012),
        ("64Ki", 64 * 1024),
        ("123Mi", 123 * 1024**2),
        ("15Gi", 15 * GI),
        ("1Ti", 1024**4),
        ("1Pi", 1024**5),
        ("1Ei", 1024**6),
        ("+1Gi", GI),
        ("-100m", -0.1),
        (4, 4),
        (0.25, 0.25),
    ],
)
def test_quantities_parse_as_kubernetes_does(text, value):
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "Gi", "1gi", "1 Gi", "1KiB", "1.2.3", "x", "1e"])
def test_bad_quantities_are_refused(text):
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 0),
        (1000, 1000),
        ("512M", 512 * 1024**2),  # JupyterHub's M is 1024-based, unlike the API's
        ("1G", GI),
        ("1.5G", 1.5 * GI),
        ("10K", 10 * 1024),
    ],
)
def test_spawner_sizes_are_read_as_kubespawner_reads_them(value, expected):
    assert spawner_bytes(value) == expected


def test_kubernetes_sizes_are_not_spawner_sizes():
    # JupyterHub refuses "2Gi" for mem_guarantee, and so do course files
    with pytest.raises(ValueError, match="not a memory size"):
        spawner_bytes("2Gi")


def test_a_server_requests_its_limit_when_no_guarantee_is_set():
    assert server_request({"cpu_limit": 2, "mem_limit": "2G"}) == Request(2, 2 * GI)
    assert server_request(
        {"cpu_limit": 2, "cpu_guarantee": 0.5, "mem_limit": "2G", "mem_guarantee": "1G"}
    ) == Request(0.5, GI)
    assert server_request({}) == Request(0, 0)


def test_pod_requests_count_init_containers_and_overhead():
    pod = {
        "spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                {"resources": {"requests": {"cpu": "200m"}}},
                {},
            ],
            "initContainers": [
                {"resources": {"requests": {"cpu": "1", "memory": "512Mi"}}}
            ],
            "overhead": {"memory": "10Mi"},
        }
    }
    request = pod_request(pod)
    assert request.cpu == pytest.approx(1.0)  # the init container is larger
    assert request.memory == GI + 10 * 1024**2


# --- per-node fit ------------------------------------------------------------------
def node(name, cpu="4", memory="8Gi", pods="110", labels=USER, **spec):
    return {
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}},
    }


def pod(name, on, cpu="0", memory="0", component="singleuser-server", phase="Running"):
    return {
        "metadata": {"name": name, "labels": {"component": component}},
        "spec": {
            "nodeName": on,
            "containers": [
                {
                    "name": "notebook",
                    "image": "example/notebook:base",
                    "resources": {"requests": {"cpu": cpu, "memory": memory}},
                }
            ],
        },
        "status": {"phase": phase},
    }


def test_servers_fit_per_node_not_in_the_total():
    # 3 GiB free on each of two nodes: 6 GiB in total, but a 2 GiB server
    # fits once per node, so 2 more, not 3.
    nodes = [node("a", memory="4Gi"), node("b", memory="4Gi")]
    pods = [pod("x", "a", memory="1Gi"), pod("y", "b", memory="1Gi")]
    capacity = Capacity.of(nodes, pods, USER)
    assert capacity.free_servers(Request(0.1, 2 * GI)) == 2
    assert capacity.allocatable == Request(8, 8 * GI)
    assert capacity.requested == Request(0, 2 * GI)


def test_cpu_memory_and_pod_slots_all_limit_the_fit():
    capacity = Capacity.of([node("a", cpu="2", memory="64Gi", pods="5")], [], USER)
    assert capacity.free_servers(Request(0.5, GI)) == 4  # cpu: 2 / 0.5
    assert capacity.free_servers(Request(0.1, 16 * GI)) == 4  # memory
    assert capacity.free_servers(Request(0.01, 1)) == 5  # pod slots
    assert capacity.free_servers(Request(0, 0)) == 5
    assert capacity.free_servers(Request(4, GI)) == 0


def test_only_schedulable_user_nodes_and_live_pods_count():
    nodes = [
        node("user-1", memory="4Gi"),
        node("core-1", memory="64Gi", labels={"hub.jupyter.org/node-purpose": "core"}),
        node("user-2", memory="64Gi", unschedulable=True),  # cordoned
    ]
    pods = [
        pod("hub", "user-1", memory="1Gi", component="hub"),  # not a user server
        pod("done", "user-1", memory="2Gi", phase="Succeeded"),
        pod("placeholder", "user-1", memory="2Gi", component="user-placeholder"),
        pod("elsewhere", "core-1", memory="1Gi"),
    ]
    capacity = Capacity.of(nodes, pods, USER)
    assert [n.name for n in capacity.nodes] == ["user-1"]
    # the hub pod takes room; placeholders give way; finished pods hold nothing
    assert capacity.free_servers(Request(0, GI)) == 3
    assert capacity.requested == Request(0, 0)
    assert Capacity.of(nodes, pods, {}).free_servers(Request(0, GI)) == 3 + 63


# --- the monitor, against kmock -----------------------------------------------------
async def add(cluster, path, body):
    async with cluster.post(path, json=body) as response:
        assert response.status in (200, 201), await response.text()


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels)


@pytest.fixture
def config(tmp_path):
    catalog = tmp_path / "courses"
    catalog.mkdir()
    (catalog / "big.yaml").write_text(
        "name: Big data\nresources: {student: {cpu_guarantee: 1, mem_guarantee: 3G}}\n"
    )
    (catalog / "small.yaml").write_text("name: Small\n")
    users = tmp_path / "users.yaml"
    users.write_text("users:\n  alice: {uid: 1001234, gid: 70000}\n")
    c = fast(base_config(catalog, users))
    c.KubeSpawner.cpu_guarantee = 0.5
    c.KubeSpawner.mem_guarantee = "1G"
    c.CapacityMonitor.enabled = True
    c.CapacityMonitor.interval = 0.05
    c.CapacityMonitor.timeout = 2
    return c


async def started(config: Config, username="alice") -> CapacityMonitor:
    spawner = real_spawner(config, username)
    await spawner.catalog.ensure_fresh()
    monitor = shared_instance(CapacityMonitor, config)
    assert monitor._task is not None, "the first spawner starts the monitor"
    return monitor


async def test_monitor_publishes_capacity_from_the_api(tmp_path, config):
    async with kube_api(tmp_path) as cluster:
        cluster.resources["v1/nodes"] = {}
        await add(cluster, "/api/v1/nodes", node("user-1", cpu="4", memory="8Gi"))
        await add(cluster, "/api/v1/nodes", node("user-2", cpu="4", memory="8Gi"))
        await add(cluster, "/api/v1/nodes", node("core", labels={}, memory="64Gi"))
        running = pod("jupyter-bob", "user-1", cpu="500m", memory="2Gi")
        await add(cluster, f"/api/v1/namespaces/{NAMESPACE}/pods", running)
        monitor = await started(config)
        try:
            capacity = await monitor.refresh()
        finally:
            monitor.stop()
    assert [n.name for n in capacity.nodes] == ["user-1", "user-2"]
    assert sample("aaltohub_capacity_allocatable", resource="cpu") == 8
    assert sample("aaltohub_capacity_allocatable", resource="memory") == 16 * GI
    assert sample("aaltohub_capacity_requested", resource="cpu") == 0.5
    assert sample("aaltohub_capacity_requested", resource="memory") == 2 * GI
    # big: 1 cpu, 3 GiB -> user-1 has 6 GiB left (2), user-2 8 GiB (2)
    assert sample("aaltohub_capacity_free_servers", course="big") == 4
    # small: the spawner's 0.5 cpu, 1 GiB -> user-1: min(3.5 / 0.5, 6 GiB / 1)
    # = 6 (memory binds there), user-2: min(8, 8) = 8
    assert sample("aaltohub_capacity_free_servers", course="small") == 6 + 8
    assert sample("aaltohub_capacity_free_servers", course="") == 14


async def until(condition, seconds: float = 20.0) -> None:
    """Wait for ``condition()`` (a loaded CI machine is slow, never wrong)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never became true")


async def test_api_down_leaves_the_metrics_stale_and_logs_once(
    tmp_path, config, caplog
):
    caplog.set_level(logging.INFO)
    async with kube_api(tmp_path) as cluster:
        cluster.resources["v1/nodes"] = {}
        await add(cluster, "/api/v1/nodes", node("user-1", cpu="2", memory="4Gi"))
        monitor = await started(config)
        try:
            await monitor.refresh()
            before = sample("aaltohub_capacity_free_servers", course="small")
            cluster.refuse("GET", "nodes", 403, 'nodes is forbidden: User "hub"')
            await until(lambda: monitor._failing)
            await asyncio.sleep(0.3)  # more failing refreshes: still said once
            assert not monitor._task.done()
            after = sample("aaltohub_capacity_free_servers", course="small")
            cluster.refusals.clear()
            for _ in range(100):
                await asyncio.sleep(0.05)
                if not monitor._failing:
                    break
        finally:
            monitor.stop()
    assert before == after == 4  # stale, not dropped
    warnings = [
        r.getMessage() for r in caplog.records if "cannot read" in r.getMessage()
    ]
    assert len(warnings) == 1, warnings
    assert "HTTP 403" in warnings[0] and "capacity-rbac.yaml" in warnings[0]
    assert any("answers again" in r.getMessage() for r in caplog.records)


async def test_no_matching_node_is_said_once(tmp_path, config, caplog):
    async with kube_api(tmp_path) as cluster:
        cluster.resources["v1/nodes"] = {}
        await add(cluster, "/api/v1/nodes", node("unlabelled", labels={}))
        monitor = await started(config)
        try:
            await monitor.refresh()
            await monitor.refresh()
        finally:
            monitor.stop()
    said = [
        r.getMessage() for r in caplog.records if "no schedulable" in r.getMessage()
    ]
    assert len(said) == 1 and "set it to {}" in said[0]
    assert sample("aaltohub_capacity_free_servers", course="small") == 0


async def test_unreachable_api_never_reaches_the_hub(tmp_path, config, caplog):
    async with kube_api(tmp_path, server="http://127.0.0.1:9"):
        monitor = await started(config)
        try:
            with pytest.raises(Exception):  # noqa: B017
                await monitor.refresh()  # a direct call raises...
            await until(
                lambda: any("cannot read" in r.getMessage() for r in caplog.records)
            )
            await asyncio.sleep(0.3)  # more failing refreshes
            assert not monitor._task.done()  # ...the refresher does not stop
        finally:
            monitor.stop()
    assert sum("cannot read" in r.getMessage() for r in caplog.records) == 1


async def test_the_monitor_is_off_unless_enabled(tmp_path, config):
    config.CapacityMonitor.enabled = False
    real_spawner(config, "alice")
    assert shared_instance(CapacityMonitor, config)._task is None


def test_resource_keys_are_the_course_files_keys():
    from dataclasses import fields

    from aaltohub.course import Resources
    from aaltohub.kube.capacity import RESOURCE_KEYS

    assert set(RESOURCE_KEYS) == {f.name for f in fields(Resources)}


# --- aaltohub capacity (the same numbers on demand) ----------------------------------
def cli(*argv):
    from aaltohub.cli import build_parser

    return build_parser().parse_args(["capacity", *argv])


async def test_capacity_command_prints_what_fits(tmp_path, config, capsys):
    from aaltohub.commands import capacity as command

    courses = config.CourseCatalog.path
    async with kube_api(tmp_path) as cluster:
        cluster.resources["v1/nodes"] = {}
        await add(cluster, "/api/v1/nodes", node("user-1", cpu="4", memory="8Gi"))
        running = pod("jupyter-bob", "user-1", cpu="1", memory="2Gi")
        await add(cluster, f"/api/v1/namespaces/{NAMESPACE}/pods", running)
        args = cli("--namespace", NAMESPACE, "--catalog", courses, "--json")
        # the command runs its own event loop, as from a shell
        status = await asyncio.to_thread(command.run, args)
        out = capsys.readouterr().out
        args = cli("--namespace", NAMESPACE, "--mem-guarantee", "1G")
        assert await asyncio.to_thread(command.run, args) == 0
        text = capsys.readouterr().out
        cluster.refuse("GET", "nodes", 403, "nodes is forbidden")
        assert await asyncio.to_thread(command.run, args) == 1
        err = capsys.readouterr().err
    assert status == 0
    fits = {k: v["fit"] for k, v in json.loads(out)["free_servers"].items()}
    # 3 cpu and 6 GiB left: big (1 cpu, 3 GiB) 2; small (0.1 cpu, 512 MiB) 12
    assert fits == {"": 12, "big": 2, "small": 12}
    assert "user-1" in text and "(no course)" in text
    assert "HTTP 403" in err and "capacity-rbac.yaml" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--namespace", "jhub", "--node-selector", "novalue"], "KEY=VALUE"),
        (["--namespace", "jhub", "--mem-guarantee", "lots"], "--mem-guarantee"),
        (["--namespace", ""], "--namespace"),
    ],
)
def test_capacity_command_checks_its_options(argv, message, capsys):
    from aaltohub.commands import capacity as command

    assert command.run(cli(*argv)) == 2
    assert message in capsys.readouterr().err


def test_course_requests_use_the_student_resources_over_the_defaults():
    from types import SimpleNamespace

    from aaltohub.course import Resources
    from aaltohub.kube.capacity import course_requests

    def course(**roles):
        return SimpleNamespace(resources=roles)

    courses = {
        "plain": course(),
        "big": course(student=Resources(mem_guarantee="4G")),
        "staff": course(instructor=Resources(cpu_guarantee=8)),  # students: defaults
        "limit": course(student=Resources(mem_limit="3G")),  # guarantee wins
        "bad": course(student=Resources(mem_guarantee="2X")),
    }
    defaults = {"cpu_guarantee": 0.5, "mem_guarantee": "1G", "mem_limit": "2G"}
    requests, problems = course_requests(courses, defaults)
    assert requests[""] == requests["plain"] == Request(0.5, GI)
    assert requests["big"] == Request(0.5, 4 * GI)
    assert requests["staff"] == requests["limit"] == Request(0.5, GI)
    assert "bad" not in requests and "not a memory size" in problems["bad"]
