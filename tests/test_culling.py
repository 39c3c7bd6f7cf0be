"""Course cull limits as jupyterhub-idle-culler's arbiter applies them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jupyterhub_idle_culler
import pytest

from aaltohub.ops.culling import course_cull_arbiter, course_limits
from kube_helpers import base_config, make_spawner, spawn_manifest

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def server(state=None, started_ago=timedelta(hours=1)):
    """A server model as the hub's REST API returns it (with state)."""
    return {
        "name": "",
        "started": (NOW - started_ago).isoformat().replace("+00:00", "Z"),
        "state": state or {},
    }


@pytest.mark.parametrize("minutes", [0, 59, 60, 61, 600])
def test_without_course_limits_the_arbiter_is_the_cullers_own(minutes):
    # Called as the culler calls its arbiter (keywords only), a server with
    # no course limits is judged exactly as the culler's default would.
    kwargs = dict(
        inactive=timedelta(minutes=minutes), inactive_limit=3600, server=server()
    )
    default = jupyterhub_idle_culler.default_cull_arbiter(**kwargs)
    assert course_cull_arbiter(**kwargs) is default
    assert default is (minutes >= 60)


@pytest.mark.parametrize(
    "state,inactive,started_ago,cull",
    [
        ({}, timedelta(minutes=59), timedelta(hours=1), False),  # hub default
        ({}, timedelta(minutes=61), timedelta(hours=1), True),
        (
            {"aaltohub": {"cull_inactive_timeout": 1800}},
            timedelta(minutes=31),
            timedelta(hours=1),
            True,
        ),
        (
            {"aaltohub": {"cull_inactive_timeout": 7200}},
            timedelta(minutes=90),
            timedelta(hours=1),
            False,
        ),
        ({"aaltohub": {"cull_max_age": 14400}}, timedelta(0), timedelta(hours=5), True),
        (
            {"aaltohub": {"cull_max_age": 14400}},
            timedelta(0),
            timedelta(hours=3),
            False,
        ),
        (
            {"aaltohub": {"cull_inactive_timeout": "junk"}},
            timedelta(minutes=61),
            timedelta(hours=1),
            True,
        ),
        (  # the current, versioned record
            {"aaltohub": {"version": 2, "course": "c", "cull_inactive_timeout": 600}},
            timedelta(minutes=11),
            timedelta(hours=1),
            True,
        ),
    ],
)
def test_course_limits_decide(state, inactive, started_ago, cull):
    decision = course_cull_arbiter(inactive, 3600, server(state, started_ago), now=NOW)
    assert decision is cull


async def test_limits_come_from_the_spawner_state(catalog_dir, users_file):
    spawner = make_spawner(base_config(catalog_dir, users_file), "student1")
    await spawn_manifest(spawner, "ml-private")  # cull: 1800 / 14400
    model = {"name": "", "started": None, "state": spawner.get_state()}
    assert course_limits(model) == (1800, 14400)


def test_deployment_culler_config_installs_the_arbiter():
    from pathlib import Path

    from jupyterhub_idle_culler import IdleCuller

    config_file = (
        Path(__file__).parents[1] / "deploy" / "kubernetes" / "culler_config.py"
    )
    culler = IdleCuller()
    culler.load_config_file(str(config_file))
    assert culler.cull_arbiter_hook is course_cull_arbiter
