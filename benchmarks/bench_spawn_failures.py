"""Benchmark: how soon a failed spawn is reported, CourseSpawner against plain
KubeSpawner, on kmock (an emulated Kubernetes API; no cluster, no kubelet).

For each cause, the benchmark plays the kubelet or scheduler: once the
spawner has created its pod, it writes the pod status and events a real
cluster would, and times from that write until the spawn fails, as
JupyterHub waits for it (``asyncio.wait_for(start(), start_timeout)``).
Both spawners run with the same KubeSpawner config, concurrently, in the
same run, on the same emulated API. CourseSpawner runs with its defaults
(``failure_check_interval`` 1 s, ``transient_failure_grace`` 30 s) and the
deploy's ``start_timeout`` of 300 s; the baseline with a short
``start_timeout`` (20 s) so the run stays short: in the deploy it would
wait 300 s. API errors fail at once in both; the table shows the length
of the message the user gets.

Run:  .tox/py/bin/python benchmarks/bench_spawn_failures.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from jupyterhub.utils import maybe_future  # noqa: E402
from kubespawner import KubeSpawner  # noqa: E402
from tornado import web  # noqa: E402
from traitlets.config import Config  # noqa: E402

from aaltohub.kube import CourseSpawner  # noqa: E402
from kube_cluster import (  # noqa: E402
    CASES,
    HUB_ACCOUNT,
    NAMESPACE,
    kube_api,
    real_spawner,
    waiting,
)

BASELINE_TIMEOUT = 20
DEPLOY_TIMEOUT = 300
LOG = b"Traceback (most recent call last):\nModuleNotFoundError: No module named 'x'\n"
MOUNT = (
    'MountVolume.SetUp failed for volume "home" : mount failed: exit status 32\n'
    "Output: mount.nfs: access denied by server while mounting"
    " nfs.example.org:/export/home"
)
NO_ROOM = "0/3 nodes are available: 3 Insufficient memory. preemption: not helpful"
NO_NODE = (
    "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
)

#: cause -> (pod status or None, events) the kubelet/scheduler reports.
POD_CAUSES = {name: (status, events) for name, (status, events, _) in CASES.items()}
POD_CAUSES |= {
    "mount": (lambda p: waiting(p, "ContainerCreating"), [("FailedMount", MOUNT)]),
    "no-node (NotTriggerScaleUp)": (
        None,
        [
            ("FailedScheduling", NO_NODE),
            ("NotTriggerScaleUp", "pod didn't trigger scale-up: 1 max node group size"),
        ],
    ),
    "no-room (transient, 30 s grace)": (None, [("FailedScheduling", NO_ROOM)]),
}
API_CAUSES = {
    "403 create (RBAC)": (
        403,
        f'pods is forbidden: User "{HUB_ACCOUNT}" cannot create resource "pods" in'
        ' API group "" in the namespace "jupyter"',
    ),
    "422 invalid manifest": (
        422,
        'Pod "x" is invalid: spec.containers[0].image: Required value',
    ),
    "500 API server": (500, "etcdserver: request timed out"),
}


def config() -> Config:
    c = Config()
    c.KubeSpawner.namespace = NAMESPACE
    c.KubeSpawner.image = "example/notebook:5.0"
    c.KubeSpawner.mem_limit = "1G"
    c.KubeSpawner.start_timeout = BASELINE_TIMEOUT
    c.CourseSpawner.start_timeout = DEPLOY_TIMEOUT
    return c


async def report(cluster, pod: dict, status, events) -> float:
    """Write what the cluster would; returns when the cause was reported."""
    for reason, message in events:  # the kubelet's events come first
        await cluster.event(pod, reason, message)
    if status is not None:
        await cluster.set_status(pod["metadata"]["name"], status(pod))
    return time.monotonic()


async def spawn(cluster, cls, user: str, cause=None) -> tuple[float, str]:
    """Seconds from the report (or from start(), for API errors) until the
    spawn fails as JupyterHub sees it, and the message the user gets."""
    spawner = real_spawner(config(), user, cls)
    spawner.user_options = {}
    await maybe_future(spawner.run_pre_spawn_hook())
    began = time.monotonic()
    start = spawner.start()
    reported = began
    if cause is not None:
        cluster[f"get /api/v1/namespaces/{NAMESPACE}/pods/jupyter-{user}/log"] << LOG
        pod = await cluster.wait_for_pod(spawner.pod_name, timeout=60)
        reported = await report(cluster, pod, *cause)
    try:
        await asyncio.wait_for(start, spawner.start_timeout - (reported - began))
        message = "(started)"
    except TimeoutError:
        message = "Timeout"  # what JupyterHub shows after start_timeout
    except web.HTTPError as e:
        message = getattr(e, "jupyterhub_message", str(e))
    except Exception as e:
        message = str(e)  # KubeSpawner: the ApiException, headers and body
    return time.monotonic() - reported, message


async def one_round(cluster, round_: int) -> list[tuple]:
    jobs = {}
    for i, (name, cause) in enumerate(POD_CAUSES.items()):
        for tag, cls in (("c", CourseSpawner), ("k", KubeSpawner)):
            jobs[(name, tag)] = spawn(cluster, cls, f"{tag}{round_}p{i}", cause)
    for i, (name, (status, said)) in enumerate(API_CAUSES.items()):
        for tag, cls in (("c", CourseSpawner), ("k", KubeSpawner)):
            user = f"{tag}{round_}a{i}"
            cluster.refuse("post", "pods", status, said, name=f"jupyter-{user}")
            jobs[(name, tag)] = spawn(cluster, cls, user)
    results = await asyncio.gather(*jobs.values())
    return [(*key, *result) for key, result in zip(jobs, results, strict=True)]


async def fresh_round(round_: int) -> list[tuple]:
    """One round on a new emulated API: kmock keeps every request and
    object, and would slow later rounds down."""
    with tempfile.TemporaryDirectory() as tmp:
        async with kube_api(Path(tmp)) as cluster:
            return await one_round(cluster, round_)


def main(rounds: int) -> None:
    logging.basicConfig(level=logging.CRITICAL)  # the spawners' own logs
    samples: dict = {}
    messages: dict = {}
    for round_ in range(rounds):
        for name, tag, seconds, message in asyncio.run(fresh_round(round_)):
            samples.setdefault((name, tag), []).append(seconds)
            messages[(name, tag)] = message
        print(f"round {round_ + 1}/{rounds} done", file=sys.stderr)
    print_tables(samples, messages, rounds)


def print_tables(samples: dict, messages: dict, rounds: int) -> None:
    def median(name, tag):
        return statistics.median(samples[(name, tag)])

    print(f"median of {rounds} rounds, seconds from the cause being reported")
    print(f"{'cause':34} {'CourseSpawner':>13} {'KubeSpawner':>12} {'ratio':>7}")
    for name in POD_CAUSES:
        ours, base = median(name, "c"), median(name, "k")
        print(f"{name:34} {ours:13.2f} {base:12.2f} {ours / base:7.3f}")
        print(f"    user sees: {messages[(name, 'c')]!r}")
        print(f"    baseline:  {messages[(name, 'k')]!r}")
    print(f"\n{'API error':34} {'seconds':>13} {'message chars (ours / KubeSpawner)'}")
    for name in API_CAUSES:
        ours, base = messages[(name, "c")], messages[(name, "k")]
        took = median(name, "c")
        print(f"{name:34} {took:13.2f} {len(ours):5d} / {len(base)}")
        print(f"    user sees: {ours!r}")
    print(
        f"\nbaseline start_timeout {BASELINE_TIMEOUT} s here; with the deploy's"
        f" {DEPLOY_TIMEOUT} s, KubeSpawner reports every pod cause after"
        f" ~{DEPLOY_TIMEOUT} s (ratio ÷ {DEPLOY_TIMEOUT // BASELINE_TIMEOUT})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args().rounds)
