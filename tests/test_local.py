"""LocalCourseSpawner, the demo's sandbox, state, authenticator and runner.

No hub runs here (tests/e2e/ has the real one); the spawner is built
offline as in test_kube.py, with the same catalog, users and hooks.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from jupyterhub.objects import Hub
from tornado import web
from traitlets.config import Config

from aaltohub.demo.auth import DemoAuthenticator, check_password, hash_password
from aaltohub.demo.runner import run_processes, sweep
from aaltohub.demo.settings import DemoConfigError, StatePaths, configure
from aaltohub.demo.state import lay_out_storage, prepare
from aaltohub.local import LocalCourseSpawner, profile_form
from aaltohub.local.views import translate, translate_env, translate_text
from kube_helpers import MockUser, base_config, make_spawner

AS_ROOT = os.geteuid() == 0


@pytest.fixture
def storage(tmp_path, catalog_dir, users_file):
    """A demo-style storage tree for the shared test catalog and users."""
    import yaml

    from aaltohub.catalog import CourseCatalog
    from aaltohub.identity.static import parse_static_users

    root = tmp_path / "storage"
    root.mkdir()
    users = parse_static_users(yaml.safe_load(users_file.read_text()), "users")
    users = {k: v for k, v in users.items() if v.uid >= 1000}
    catalog = CourseCatalog(path=str(catalog_dir)).load()
    lay_out_storage(str(root), catalog, users)
    return root


@pytest.fixture
def config(catalog_dir, users_file, tmp_path, storage):
    c = base_config(catalog_dir, users_file)
    c.LocalCourseSpawner.identity_class = "aaltohub.identity.StaticIdentity"
    c.LocalCourseSpawner.storage_root = str(storage)
    c.LocalCourseSpawner.servers_dir = str(tmp_path / "servers")
    return c


def local_spawner(config, username, admin=False, name=""):
    return LocalCourseSpawner(
        config=config,
        user=MockUser(username, admin),
        hub=Hub(),
        orm_spawner=SimpleNamespace(name=name, server=None, user_options=None),
    )


async def plan_for(spawner, profile):
    choice = await spawner.authorize(profile)
    return await spawner.build_plan(
        choice.course, choice.role, spawner.resource_defaults()
    )


# --- the form ----------------------------------------------------------------------
async def test_form_lists_the_users_courses_and_escapes(config, catalog_dir):
    (catalog_dir / "evil.yaml").write_text(
        'name: "<script>alert(1)</script> & co"\ndescription: "<b>x</b>"\n'
    )
    form = await local_spawner(config, "student2")._options_form()
    assert 'value="intro"' in form and "ml-private" not in form
    assert "<script>" not in form and "&lt;script&gt;alert(1)" in form
    assert "<b>x</b>" not in form
    assert form.count(" checked") == 1


def test_form_escapes_slugs_and_marks_the_default():
    form = profile_form(
        [
            {"slug": 'a" onclick="x', "display_name": "A"},
            {"slug": "b", "display_name": "B", "default": True},
        ]
    )
    assert 'value="a&quot; onclick=&quot;x"' in form
    assert 'value="b" checked' in form
    assert "No course environments" in profile_form([])


@pytest.mark.parametrize(
    ("form", "words"),
    [
        ({}, "no course environment was chosen"),
        ({"profile": [""]}, "no course environment was chosen"),
        ({"profile": ["intro", "old"]}, "more than one"),
        ({"profile": ["<img src=x>"]}, "not a valid name"),
        ({"profile": ["x" * 300]}, "not a valid name"),
        ({"profile": ["intro\n"]}, "not a valid name"),  # a full match
    ],
)
def test_malformed_form_is_a_400(config, form, words):
    with pytest.raises(web.HTTPError) as info:
        local_spawner(config, "student1").options_from_form(form)
    assert info.value.status_code == 400
    assert words in info.value.jupyterhub_message
    assert "<img" not in info.value.jupyterhub_message


async def test_form_choice_is_authorized_like_course_spawner(config):
    local = local_spawner(config, "student1")
    assert await local.run_options_from_form(
        {"profile": ["intro"], "_xsrf": ["t"]}
    ) == {"profile": "intro"}
    for user, profile in [("student2", "ml-private"), ("student1", "old")]:
        errors = []
        for spawner in (local_spawner(config, user), make_spawner(config, user)):
            with pytest.raises(web.HTTPError) as info:
                await spawner.run_options_from_form({"profile": [profile]})
            errors.append((info.value.status_code, info.value.jupyterhub_message))
        assert errors[0] == errors[1] and errors[0][0] == 403


async def test_api_spawn_of_a_crafted_profile_starts_nothing(config):
    spawner = local_spawner(config, "student1")
    spawner.user_options = {"profile": "intro-instructor"}
    with pytest.raises(web.HTTPError) as info:
        await spawner.start()
    assert info.value.status_code == 403
    assert spawner.proc is None and not os.path.exists(spawner.servers_dir)


async def test_plan_is_the_same_as_in_a_pod(config):
    local = await plan_for(local_spawner(config, "instructor1"), "intro-instructor")
    pod = await plan_for(make_spawner(config, "instructor1"), "intro-instructor")
    assert local.mounts == pod.mounts
    assert local.files == pod.files
    assert (local.uid, local.gid, local.supplemental_gids) == (1002001, 70000, [70001])


# --- the per-server view -------------------------------------------------------------
def _snapshot_host():
    return {p: os.path.lexists(p) for p in ("/notebooks", "/course", "/coursedata")}


async def test_prefix_view_symlinks_files_and_translated_paths(config, storage):
    host = _snapshot_host()
    spawner = local_spawner(config, "student1")
    plan = await plan_for(spawner, "intro")
    identity = await spawner.get_identity()
    launch = spawner._prepare(plan, identity, "prefix")
    root = Path(launch.root_dir)
    assert root == Path(spawner.servers_dir, "student1", "root")
    links = {
        "notebooks": storage / "u/34/student1",
        "coursedata": storage / "course/intro/data",
        "srv/nbgrader/exchange": storage / "exchange/intro",
    }
    for rel, target in links.items():
        assert (root / rel).is_symlink() and os.readlink(root / rel) == str(target)
    assert not (root / "course").exists()  # students get no course files
    nbconfig = (root / "etc/aaltohub/jupyter/nbgrader_config.py").read_text()
    assert f"c.Exchange.root = '{root}/srv/nbgrader/exchange'" in nbconfig
    assert f"c.Exchange.assignment_dir = '{root}/notebooks/'" in nbconfig
    assert launch.env["JUPYTER_CONFIG_PATH"] == f"{root}/etc/aaltohub/jupyter"
    assert launch.env["COURSEDATA"] == f"{root}/coursedata/"
    assert launch.env["NB_COURSE"] == "intro"  # not a path: untouched
    assert launch.home == f"{root}/notebooks" and launch.cwd == str(root)
    assert launch.allow_root is AS_ROOT
    assert _snapshot_host() == host  # nothing outside the state dir


async def test_namespace_spec_binds_plan_mounts_at_pod_paths(config, storage):
    spawner = local_spawner(config, "instructor1")
    plan = await plan_for(spawner, "intro-instructor")
    identity = await spawner.get_identity()
    launch = spawner._prepare(plan, identity, "namespace")
    spec = json.loads(Path(launch.server_dir, "spec.json").read_text())
    assert spec == launch.spec  # what the hub runs, saved for the operator
    binds = {s["path"]: s for s in spec["steps"] if s["kind"] == "bind"}
    assert binds["/course"]["source"] == str(storage / "course/intro/files")
    assert binds["/coursedata"]["ro"] is False  # instructors write course data
    assert binds["/notebooks"]["source"] == str(storage / "u/01/instructor1")
    assert binds["/etc/aaltohub"]["ro"] is True
    assert binds["/usr"]["ro"] is True
    assert (spec["uid"], spec["gid"], spec["groups"]) == (1002001, 70000, [70001])
    assert spec["umask"] == 0o007 and spec["cwd"] == "/notebooks"
    # the storage and server views are never shown whole
    for step in binds.values():
        assert not str(storage).startswith(step["source"] + "/")
    passwd = next(s for s in spec["steps"] if s["path"] == "/etc/passwd")
    line = "instructor1:x:1002001:70000:Ina {Structor}:/notebooks:/bin/bash"
    assert line in passwd["text"] and line in Path(passwd["source"]).read_text()
    kinds = {s["path"]: s["kind"] for s in spec["steps"]}
    assert kinds["/dev"] == "dev" and kinds["/dev/shm"] == "tmpfs"  # not the host's
    assert kinds["/proc"] == "proc" and spec["share_net"] is True
    files = Path(launch.server_dir, "files/jupyter/nbgrader_config.py").read_text()
    assert files == plan.files["jupyter/nbgrader_config.py"]  # byte for byte
    assert launch.root_dir == "/" and launch.env == plan.env


def test_path_translation():
    m = {"/course": "/v/course", "/srv/nbgrader/exchange": "/v/srv/nbgrader/exchange"}
    assert translate("/course/a", m) == "/v/course/a"
    assert translate("/courses", m) == "/courses"  # a prefix, not a path
    assert translate_env("/course:/usr/share", m) == "/v/course:/usr/share"
    assert translate_env("0007", m) == "0007"
    text = "c.X.root = '/course'\nc.Y = '/srv/nbgrader/exchange'\npath = \"/etc/x\"\n"
    assert translate_text(text, m) == (
        "c.X.root = '/v/course'\nc.Y = '/v/srv/nbgrader/exchange'\npath = \"/etc/x\"\n"
    )


# --- demo state, settings, authenticator, runner -------------------------------
def test_demo_state_is_laid_out_like_nfs(tmp_path):
    paths = StatePaths(tmp_path / "state")
    info = prepare(paths, "pw")
    assert info["problems"] == []
    assert sorted(info["courses"].courses) == ["exam", "intro", "ml-private", "old"]
    s = paths.storage

    def mode(rel):
        return stat.S_IMODE((s / rel).stat().st_mode)

    assert mode("u/34/student1") == 0o700
    assert mode("course/intro/files") == 0o2770
    assert mode("course/intro/data") == 0o2775
    assert (
        mode("exchange/intro/intro/inbound") == 0o3773
    )  # sticky: no one replaces another's submission
    assert (s / "course/intro/data/README.md").exists()
    assert mode("course/old/files") & 0o222 == 0  # archived: read-only
    assert stat.S_IMODE(paths.secrets.stat().st_mode) == 0o700
    assert check_password("pw", paths.password_hash.read_text())
    if AS_ROOT:
        assert (s / "u/34/student1").stat().st_uid == 1001234
        assert (s / "course/intro/files").stat().st_gid == 70001


def test_settings_compose_library_classes(tmp_path):
    with pytest.raises(DemoConfigError, match="aaltohub demo"):
        configure(Config(), {"AALTOHUB_DEMO_STATE": str(tmp_path)})
    paths = StatePaths(tmp_path)
    prepare(paths, "pw")
    c = Config()
    env = {"AALTOHUB_DEMO_STATE": str(tmp_path), "AALTOHUB_DEMO_PROXY": "/bin/true"}
    configure(c, env)
    assert c.JupyterHub.spawner_class == "aaltohub.local.LocalCourseSpawner"
    assert c.JupyterHub.authenticator_class == "aaltohub.demo.auth.DemoAuthenticator"
    assert c.LocalCourseSpawner.storage_root == str(paths.storage)
    assert c.Authenticator.admin_users == {"admin1"}
    assert c.Authenticator.enable_auth_state is False  # no JUPYTERHUB_CRYPT_KEY
    deploy = Path(__file__).parents[1] / "deploy/local/jupyterhub_config.py"
    assert "configure(c)" in deploy.read_text()


async def test_demo_authenticator(tmp_path, users_file):
    hashed = tmp_path / "pw.hash"
    hashed.write_text(hash_password("secret"))
    auth = DemoAuthenticator(password_file=str(hashed))
    auth.identity_provider.path = str(users_file)
    assert (
        await auth.authenticate(None, {"username": "student1", "password": "x"}) is None
    )
    ok = await auth.authenticate(None, {"username": "student1", "password": "secret"})
    assert ok == {"name": "student1"}
    with pytest.raises(web.HTTPError, match="not a valid institutional account"):
        await auth.authenticate(object(), {"username": "../x", "password": "secret"})
    with pytest.raises(web.HTTPError, match="mallory was not found"):
        await auth.run_post_auth_hook(object(), {"name": "mallory", "auth_state": None})
    assert (
        not check_password("secret", "md5$1$00$00")
        and "secret" not in hashed.read_text()
    )


def test_sweep_kills_only_this_runs_processes():
    token = os.urandom(6).hex()
    ours = subprocess.Popen(
        ["sleep", "60"], env={**os.environ, "AALTOHUB_DEMO_RUN": token}
    )
    other = subprocess.Popen(["sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while ours.pid not in run_processes(token) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sweep(token) == [ours.pid]
        ours.wait(5)  # the sweep may have reaped it already
        assert run_processes(token) == [] and other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_cli_registers_demo():
    from aaltohub.cli import build_parser

    args = build_parser().parse_args(["demo", "--port", "9000", "--password", "p"])
    assert (args.port, args.password, args.isolation) == (9000, "p", "auto")


async def test_a_root_hub_that_cannot_sandbox_refuses_rather_than_run_as_root(
    config, monkeypatch
):
    import aaltohub.local.spawner as module

    async def no_sandbox():
        return False

    monkeypatch.setattr(module, "namespaces_work", no_sandbox)
    monkeypatch.setattr(module, "sandbox_problem", lambda: "bwrap is not installed")
    monkeypatch.setattr(module.os, "geteuid", lambda: 0)
    spawner = local_spawner(config, "student1")
    with pytest.raises(web.HTTPError) as info:
        await spawner._isolation_mode()
    assert "would run them as root" in info.value.jupyterhub_message
    assert "apt-get install bubblewrap" in info.value.jupyterhub_message
