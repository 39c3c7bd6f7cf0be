"""The Kubernetes deployment config, composed for real: LDAP login against a
real slapd, identity through auth_state, home provisioning on a real
directory, a quota report, and a pod manifest valid for Kubernetes."""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import kubernetes_validate
import pytest
from traitlets.config import PyFileConfigLoader

from kube_helpers import make_spawner, spawn_manifest, to_dict
from ldap_server import SERVICE_DN, SERVICE_PW

pytest_plugins = ["ldap_server"]

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"


@pytest.fixture
def deploy_config(slapd, tmp_path, monkeypatch):
    courses = tmp_path / "courses"
    courses.mkdir()
    (courses / "cs101.yaml").write_text(
        textwrap.dedent(
            """\
            name: Programming 1
            gid: 70101
            datadir: true
            instructor_groups: [teachers]
            students: [bob]
            """
        )
    )
    storage = tmp_path / "storage"
    storage.mkdir()
    report = tmp_path / "report.txt"
    report.write_text(
        (Path(__file__).parent / "data" / "quota" / "repquota-ug.txt").read_text()
    )
    for name, value in {
        "LDAP_URLS": slapd.url,
        "LDAP_USER_BASE": "ou=people,dc=example,dc=org",
        "LDAP_GROUP_BASE": "ou=groups,dc=example,dc=org",
        "LDAP_BIND_DN": SERVICE_DN,
        "LDAP_BIND_PASSWORD": SERVICE_PW,
        "LDAP_GROUP_MEMBERSHIP": "posixGroup",
        "COURSE_DIR": str(courses),
        "HOME_PROVISIONER": "local",
        "STORAGE_ROOT": str(storage),
        "QUOTA_REPORT": str(report),
        "HUB_ADMINS": "carol",
    }.items():
        monkeypatch.setenv(name, value)
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(DEPLOY)).load_config()
    config.CourseSpawner.image = "example/notebook:base"
    # the course culler is a hub service allowed to read spawner state
    [culler] = config.JupyterHub.services
    assert "jupyterhub_idle_culler" in culler["command"]
    assert "admin:server_state" in config.JupyterHub.load_roles[0]["scopes"]
    return config, storage


async def test_deploy_config_login_to_valid_pod(deploy_config):
    from aaltohub.auth import LDAPIdentityAuthenticator

    config, storage = deploy_config
    authenticator = LDAPIdentityAuthenticator(config=config)
    user = await authenticator.get_authenticated_user(
        None, {"username": "Alice", "password": "alice-pw"}
    )
    assert user["name"] == "alice"
    identity = user["auth_state"]["identity"]
    assert identity["uid"] == 10001 and "teachers" in identity["groups"]

    spawner = make_spawner(config, "alice")
    await spawner.run_auth_state_hook(user["auth_state"])
    profiles = [p["slug"] for p in await spawner.course_profiles()]
    assert profiles == ["general-python", "cs101", "cs101-instructor"]

    pod = to_dict(await spawn_manifest(spawner, "cs101-instructor"))
    kubernetes_validate.validate(pod, kubernetes_validate.utils.latest_version(), True)
    mounts = {
        m["mountPath"]: m.get("readOnly")
        for m in pod["spec"]["containers"][0]["volumeMounts"]
    }
    assert mounts["/course"] is False and mounts["/m/shareddata"] is True
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["NB_UID"] == "10001" and env["TZ"]
    # alice is over her soft limit in the storage's repquota report
    assert env["AALTOHUB_QUOTA_PERCENT"] == "102"
    assert env["AALTOHUB_QUOTA_NOTICE"].startswith("/etc/aaltohub/")

    home = storage / "u" / "01" / "alice"  # made before the first start
    info = home.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700
    if os.geteuid() == 0:
        assert info.st_uid == 10001


async def test_deploy_config_student_is_refused_instructor_variant(deploy_config):
    from tornado import web

    config, _ = deploy_config
    spawner = make_spawner(config, "bob")
    spawner.user_options = {"profile": "cs101-instructor"}
    with pytest.raises(web.HTTPError) as info:
        await spawner.run_pre_spawn_hook()
    assert info.value.status_code == 403
