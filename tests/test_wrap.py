"""CourseWrapSpawner: courses on different backends in one hub.

The Kubernetes backend talks to kmock, an emulated API server (no cluster
can run here; tests/kube_cluster.py plays the kubelet). The local backend
runs real processes (a tiny HTTP server stands in for jupyterhub-singleuser).
Everything else is real: the catalog, the identities, the hooks, the plan,
wrapspawner's WrapSpawner and the state JupyterHub keeps across restarts.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from tornado import web

from aaltohub.config_check import check
from aaltohub.kube import CourseSpawner
from aaltohub.local import LocalCourseSpawner
from aaltohub.ops.culling import course_limits
from aaltohub.servers import ServerRecord
from aaltohub.slurm import SlurmCourseSpawner
from aaltohub.wrap import BackendConfigError, CourseWrapSpawner
from kube_cluster import fast, kube_api
from kube_helpers import base_config
from wrap_helpers import (
    begin,
    catalog_with_backends,
    local_settings,
    pre_spawn,
    restarted,
    storage_tree,
    wrapper,
)

#: intro runs on the default backend (kubernetes), exam locally.
COURSE_BACKENDS = {"exam": "local"}


@pytest.fixture
def catalog_dir(tmp_path):
    return catalog_with_backends(tmp_path / "courses", COURSE_BACKENDS)


@pytest.fixture
def config(tmp_path, catalog_dir, users_file):
    c = fast(base_config(catalog_dir, users_file))
    c.SpawnerIdentityMixin.identity_class = "aaltohub.identity.StaticIdentity"
    c.CourseWrapSpawner.general_profiles = c.CourseSpawner.general_profiles
    storage = storage_tree(tmp_path / "storage", catalog_dir, users_file)
    c.CourseWrapSpawner.backends = {
        "kubernetes": {"spawner_class": "course"},
        "local": {
            "spawner_class": "course-local",
            "settings": local_settings(tmp_path, storage),
        },
        # Started in tests/test_slurm.py (fake sbatch); here for the matrix.
        "slurm": {
            "spawner_class": "course-slurm",
            "settings": {"storage_root": str(storage), "exec_prefix": ""},
        },
    }
    return c


@pytest.fixture
async def cluster(tmp_path):
    async with kube_api(tmp_path) as cluster:
        yield cluster


# --- the form and the catalog ---------------------------------------------------------
async def test_form_is_the_catalogs_list_for_this_user(config):
    form = await wrapper(config, "student2").get_options_form()
    assert 'value="intro"' in form and 'value="exam"' in form
    assert "ml-private" not in form and "general-python" in form
    # Nothing in the form says or chooses where a course runs.
    assert "local" not in form and "kubernetes" not in form


async def test_a_course_naming_an_undefined_backend_is_refused_at_load(
    config, catalog_dir
):
    (catalog_dir / "gpu.yaml").write_text("name: GPU course\nbackend: gpu\n")
    spawner = wrapper(config, "student2")
    form = await spawner.get_options_form()
    assert "gpu" not in form
    error = spawner.catalog.errors["gpu"]
    assert "defines no backend 'gpu'" in error
    assert "kubernetes, local, slurm" in error and "remove the key" in error
    with pytest.raises(web.HTTPError) as info:
        await pre_spawn(spawner, {"profile": "gpu"})
    assert info.value.status_code == 403 and spawner.child_spawner is None


def test_validate_checks_backend_names(catalog_dir, capsys):
    from aaltohub.cli import main as cli_main

    assert cli_main(["validate", str(catalog_dir)]) == 1
    assert "defines no backend 'local'" in capsys.readouterr().out
    assert cli_main(["validate", str(catalog_dir), "--backend", "local"]) == 0


async def test_without_the_wrapper_a_course_may_not_name_a_backend(config):
    spawner = CourseSpawner(config=config, _mock=True, user=wrapper(config, "a").user)
    await spawner.catalog.ensure_fresh()
    assert "defines no backend 'local'" in spawner.catalog.errors["exam"]


# --- one hub, two backends, a restart -------------------------------------------------
async def test_two_backends_serve_start_restart_poll_and_stop(cluster, config):
    kube = wrapper(config, "student1")
    kube_start = await begin(kube, {"profile": "intro"})
    local = wrapper(config, "examtaker")
    local_url = await asyncio.wait_for(await begin(local, {"profile": "exam"}), 20)
    assert isinstance(kube.child_spawner, CourseSpawner)
    assert isinstance(local.child_spawner, LocalCourseSpawner)

    pod = await cluster.wait_for_pod("jupyter-student1-intro")
    await cluster.run(pod)
    assert await asyncio.wait_for(kube_start, 10) == "http://10.1.2.3:8888"
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["runAsUser"] == 1001234
    assert {"name": "NB_COURSE", "value": "intro"} in container["env"]
    assert local_url[1] == local.child_spawner.port

    # The local server got the same kind of plan: uid, course, nbgrader.
    server_dir = local.child_spawner.server_record.backend["server_dir"]
    env = json.loads(await _wait_for_file(f"{server_dir}/root/env.json"))
    assert env["NB_UID"] == "1004002" and env["NB_COURSE"] == "exam"
    assert os.path.isfile(f"{server_dir}/root/etc/aaltohub/jupyter/nbgrader_config.py")

    for spawner, course, backend in (
        (kube, "intro", "kubernetes"),
        (local, "exam", "local"),
    ):
        again, state = restarted(config, spawner)
        assert state["backend"] == backend and "child_conf" not in state
        # The record is at the top level too, where the culler reads it.
        assert ServerRecord.from_state(state).course == course
        assert course_limits({"state": state}) != (None, None)
        assert type(again.child_spawner) is type(spawner.child_spawner)
        assert again.server_record.course == course
        assert await again.poll() is None  # found running again
        # A restarted hub would not be the server's parent; this test
        # process is, so it reaps the local server once it exits.
        reaper = asyncio.ensure_future(_reap(spawner.child_spawner))
        await again.stop()
        await reaper
        assert await again.poll() is not None
    assert cluster.pod("jupyter-student1-intro") is None
    assert local.child_spawner.proc.poll() is not None


async def _reap(child) -> None:
    proc = getattr(child, "proc", None)
    while proc is not None and proc.poll() is None:
        await asyncio.sleep(0.05)


async def _wait_for_file(path: str, timeout: float = 10) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not os.path.exists(path) or not os.path.getsize(path):
        assert loop.time() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.05)
    return open(path).read()


async def test_progress_waits_for_the_child_then_follows_it(config):
    spawner = wrapper(config, "student1")
    assert [e async for e in spawner.progress()] == []  # no spawn pending
    spawner._spawn_pending = True  # as JupyterHub marks a spawn (its flag)
    events = asyncio.ensure_future(_collect(spawner.progress()))
    await asyncio.sleep(0.3)
    assert not events.done()  # the page asked before the child exists
    await pre_spawn(spawner, {"profile": "exam"})
    spawner._spawn_pending = False
    messages = await asyncio.wait_for(events, 5)
    assert messages and all("message" in m for m in messages)


async def _collect(events) -> list:
    return [e async for e in events]


async def test_a_state_naming_a_removed_backend_is_treated_as_stopped(config, caplog):
    spawner = wrapper(config, "student1")
    state = {"backend": "gone", "child_state": {"pod_name": "x"}}
    spawner.load_state(state)
    assert spawner.child_spawner is None
    assert await spawner.poll() is not None
    assert "no longer defines" in caplog.text


async def test_general_profiles_run_on_the_backend_they_name(config):
    profiles = config.CourseWrapSpawner.general_profiles
    config.CourseWrapSpawner.general_profiles = [{**profiles[0], "backend": "local"}]
    spawner = wrapper(config, "student2")
    await spawner.prepare_child()
    assert isinstance(spawner.child_spawner, LocalCourseSpawner)
    assert spawner.child_spawner.general_profiles == spawner.general_profiles


async def test_a_backend_whose_own_profiles_shadow_a_course_is_refused(config):
    # KubeSpawner's own profile_list, in a backend's settings, with a
    # course's slug: the child would start it as a plain profile, unchecked.
    config.CourseWrapSpawner.backends["kubernetes"]["settings"] = {
        "profile_list": [{"display_name": "Intro", "slug": "intro"}]
    }
    spawner = wrapper(config, "student2")
    with pytest.raises(web.HTTPError) as info:
        await pre_spawn(spawner, {"profile": "intro"})
    assert info.value.status_code == 500
    assert "reads the environment 'intro' differently" in info.value.jupyterhub_message


# --- the access matrix, on every backend ----------------------------------------------
MATRIX = [
    ("student1", "intro", None),
    ("student1", "ml-private", None),
    ("instructor1", "intro-instructor", None),
    ("examtaker", "exam", None),
    ("student2", "ml-private", 403),
    ("student1", "intro-instructor", 403),
    ("student1", "old", 403),
    ("student2", "no-such-course", 403),
    ("student2", "bad name", 400),
]


@pytest.fixture(params=["kubernetes", "local", "slurm"])
def every_course_on(request, tmp_path, config, catalog_dir):
    """The whole catalog on one backend."""
    for path in catalog_dir.glob("*.yaml"):
        if path.name != "IMAGES.yaml" and not path.name.endswith("-users.yaml"):
            text = "\n".join(
                line
                for line in path.read_text().splitlines()
                if not line.startswith("backend:")
            )
            path.write_text(text + f"\nbackend: {request.param}\n")
    return request.param


@pytest.mark.parametrize(("user", "profile", "status"), MATRIX)
async def test_access_matrix_holds_on_every_backend(
    config, every_course_on, user, profile, status
):
    expected = {
        "kubernetes": CourseSpawner,
        "local": LocalCourseSpawner,
        "slurm": SlurmCourseSpawner,
    }
    for how in ("form", "api"):
        spawner = wrapper(config, user)
        if status is None:
            if how == "form":
                spawner.user_options = await spawner.run_options_from_form(
                    {"profile": [profile]}
                )
                await spawner.prepare_child()
            else:
                await pre_spawn(spawner, {"profile": profile})
            assert type(spawner.child_spawner) is expected[every_course_on]
            assert spawner.backend_name == every_course_on
            continue
        with pytest.raises(web.HTTPError) as info:
            if how == "form":
                await spawner.run_options_from_form({"profile": [profile]})
            else:
                await pre_spawn(spawner, {"profile": profile})
        assert info.value.status_code == status
        assert spawner.child_spawner is None  # nothing built, nothing started


async def test_a_crafted_post_cannot_pick_a_backend(config):
    for options in (
        {"profile": "intro", "backend": "local"},
        {"profile": "intro", "child_class": "aaltohub.local.LocalCourseSpawner"},
        {"profile": "intro", "spawner_class": "local"},
    ):
        spawner = wrapper(config, "student1")
        with pytest.raises(web.HTTPError) as info:
            await pre_spawn(spawner, options)
        assert info.value.status_code == 400 and spawner.child_spawner is None
    # The form only ever yields a profile.
    spawner = wrapper(config, "student1")
    options = await spawner.run_options_from_form(
        {"profile": ["intro"], "backend": ["local"]}
    )
    assert options == {"profile": "intro"}


# --- configuration errors, at load ----------------------------------------------------
def _backends_config(config, backends, default="kubernetes"):
    config.CourseWrapSpawner.backends = backends
    config.CourseWrapSpawner.default_backend = default
    config.JupyterHub.spawner_class = "course-wrap"
    return config


@pytest.mark.parametrize(
    ("backends", "default", "words"),
    [
        (
            {"kubernetes": {"spawner_class": "simple"}},
            "kubernetes",
            "not a course spawner",
        ),
        (
            {"kubernetes": {"spawner_class": "no.such.Class"}},
            "kubernetes",
            "cannot be loaded",
        ),
        (
            {"kubernetes": {"spawner_class": "course", "settings": {"namespce": "x"}}},
            "kubernetes",
            "not an option of CourseSpawner",
        ),
        ({"kubernetes": {"spawner_class": "course"}}, "gpu", "does not define"),
        (
            {"Bad Name": {"spawner_class": "course"}},
            "Bad Name",
            "not a usable backend name",
        ),
        ({"kubernetes": "course"}, "kubernetes", "must be a dict"),
        ({"local": {"spawner_class": "course-local"}}, "local", "'storage_root'"),
    ],
)
def test_backend_problems_stop_the_hub_at_start(config, backends, default, words):
    _backends_config(config, backends, default)
    problems = [str(p) for p in check(config)]
    assert any(words in p for p in problems), problems
    with pytest.raises(BackendConfigError) as info:
        wrapper(config, "student1")
    assert words in str(info.value)


def test_a_good_config_has_no_backend_problems(config):
    config.JupyterHub.spawner_class = "course-wrap"
    assert not [p for p in check(config) if "backends" in p.key]
    assert isinstance(wrapper(config, "student1"), CourseWrapSpawner)
