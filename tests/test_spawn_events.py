"""A hub's events as audit records and metrics, through a real JupyterHub.

The hub runs in this test's process (so a "restart" is a second JupyterHub
app on the same database, with the metric families emptied as in a new
process), behind the real configurable-http-proxy, with LocalCourseSpawner
starting a real JupyterLab server (isolation "prefix"). The idle culler is
a real JupyterHub service token doing what jupyterhub-idle-culler does. No
Kubernetes API is involved; the kube failure causes are tested with kmock
in test_kube_failures.py.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import pytest_asyncio
import yaml
from tornado.web import GZipContentEncoding
from traitlets.config import Config

from aaltohub import metrics
from aaltohub.audit import audit_log
from aaltohub.demo.auth import write_password_hash
from aaltohub.web import hub_events
from hub_process import (
    NEEDS_PROXY,
    REPO,
    base_config,
    free_ports,
    log_in,
    start_app,
    stop_app,
    wait_ready,
    xsrf,
)

PASSWORD = "hub-events-password"
CULLER_TOKEN = "culler-token-0123456789abcdef"

pytestmark = [NEEDS_PROXY, pytest.mark.asyncio(loop_scope="module")]


def hub_config(tmp: Path, ports: tuple[int, int, int]) -> Config:
    c = base_config(tmp, ports)
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.authenticate_prometheus = False
    c.JupyterHub.cleanup_servers = False  # servers outlive a hub restart
    c.JupyterHub.authenticator_class = "aaltohub.demo.auth.DemoAuthenticator"
    c.DemoAuthenticator.password_file = str(tmp / "pw.hash")
    c.Authenticator.admin_users = {"admin1"}
    c.JupyterHub.services = [
        {"name": "jupyterhub-idle-culler", "api_token": CULLER_TOKEN}
    ]
    c.JupyterHub.load_roles = [
        {
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "admin:servers"],
            "services": ["jupyterhub-idle-culler"],
        }
    ]
    c.JupyterHub.spawner_class = "aaltohub.local.LocalCourseSpawner"
    c.LocalCourseSpawner.identity_class = "aaltohub.identity.StaticIdentity"
    c.DemoAuthenticator.identity_class = "aaltohub.identity.StaticIdentity"
    c.LocalCourseSpawner.storage_root = str(tmp / "storage")
    c.LocalCourseSpawner.servers_dir = str(tmp / "servers")
    c.LocalCourseSpawner.isolation = "prefix"
    c.LocalCourseSpawner.start_timeout = 60
    c.LocalCourseSpawner.http_timeout = 60
    c.StaticIdentity.path = str(tmp / "users.yaml")
    c.CourseCatalog.path = str(tmp / "courses")
    c.AuditLog.destination = "file"
    c.AuditLog.path = str(tmp / "audit.log")
    hub_events.configure(c)
    return c


def prepare(tmp: Path) -> None:
    from aaltohub.catalog import CourseCatalog
    from aaltohub.demo.state import lay_out_storage
    from aaltohub.identity.static import parse_static_users
    from conftest import USERS, write_catalog

    catalog = write_catalog(tmp / "courses")
    (tmp / "users.yaml").write_text(USERS)
    (tmp / "storage").mkdir()
    known = parse_static_users(yaml.safe_load(USERS), "users")
    lay_out_storage(
        str(tmp / "storage"),
        CourseCatalog(path=str(catalog)).load(),
        {k: v for k, v in known.items() if v.uid >= 1000},
    )
    write_password_hash(str(tmp / "pw.hash"), PASSWORD)


class Hubs:
    """The hub of this module, which a test may restart."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.ports = free_ports()
        self.app = None

    async def start(self):
        # A fresh Config object: a new process's shared instances.
        self.app = await start_app(hub_config(self.tmp, self.ports))

    async def stop(self, cleanup_servers=False):
        self.app.cleanup_servers = cleanup_servers
        await stop_app(self.app)

    @property
    def url(self) -> str:
        return self.app.bind_url.rstrip("/")

    @property
    def log(self):
        return audit_log(self.app.tornado_settings["config"])

    def records(self, **match) -> list[dict]:
        return self.log.recent(**match)

    async def metrics(self) -> str:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            return (await client.get("/hub/metrics")).text


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hubs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hubevents")
    prepare(tmp)
    hubs = Hubs(tmp)
    await hubs.start()
    try:
        yield hubs
    finally:
        await hubs.stop(cleanup_servers=True)


@asynccontextmanager
async def client(hubs, user: str, password=PASSWORD, **headers):
    async with httpx.AsyncClient(base_url=hubs.url, timeout=30) as http:
        http.login_status = (await log_in(http, user, password, **headers)).status_code
        # The login sets a new _xsrf cookie: API calls with the cookie send it.
        http.headers.update(xsrf(http))
        yield http


def value(text: str, name: str, **labels) -> float:
    # prometheus_client writes the labels sorted by name
    want = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    for line in text.splitlines():
        if line.startswith(name + want + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- logins and logouts ---------------------------------------------------------------
async def test_login_records_carry_the_proxys_request_id(hubs):
    async with client(hubs, "student2", "wrong-" + PASSWORD) as http:
        assert http.login_status == 403
    async with client(
        hubs, "student2", **{"X-Request-Id": "req-from-proxy-42"}
    ) as http:
        assert http.login_status == 302
        assert (await http.get("/hub/logout")).status_code < 400
    # Another user's requests with the same header: their own ids.
    async with client(hubs, "student1", **{"X-Request-Id": "req-from-proxy-42"}):
        pass
    failed, ok = hubs.records(action="login", actor="student2")[-2:]
    other = hubs.records(action="login", actor="student1")[-1]
    assert (failed["outcome"], failed["reason"]) == ("failed", "bad credentials")
    assert ok["outcome"] == "ok" and ok["request_id"].startswith("req-from-proxy-42.")
    assert other["request_id"].startswith("req-from-proxy-42.")
    assert other["request_id"] != ok["request_id"]
    assert failed["request_id"] and failed["request_id"] != ok["request_id"]
    logout = hubs.records(action="logout")[-1]
    assert (logout["actor"], logout["target"]) == ("student2", "student2")
    hubs.log.flush()
    assert "wrong-" + PASSWORD not in (hubs.tmp / "audit.log").read_text()


# --- spawns ----------------------------------------------------------------------
async def test_a_refused_spawn_says_why(hubs):
    before = value(
        await hubs.metrics(),
        "aaltohub_spawn_failures_total",
        course="ml-private",
        cause="refused",
    )
    async with client(hubs, "student2") as http:
        response = await http.post(
            "/hub/api/users/student2/server", json={"profile": "ml-private"}
        )
    assert response.status_code == 403
    record = hubs.records(action="spawn", actor="student2")[-1]
    assert record["outcome"] == "refused" and record["course"] == "ml-private"
    assert "may not use this course environment" in record["reason"]
    assert record["target"] == "student2"
    after = value(
        await hubs.metrics(),
        "aaltohub_spawn_failures_total",
        course="ml-private",
        cause="refused",
    )
    assert after == before + 1


DOWN = "The directory did not answer; try again soon."


async def test_a_directory_outage_at_spawn_is_a_failure_not_a_refusal(
    hubs, monkeypatch
):
    from aaltohub.identity.base import IdentityUnavailable
    from aaltohub.local import LocalCourseSpawner

    async def down(*args, **kwargs):
        raise IdentityUnavailable(DOWN)

    async def count(cause):
        text = await hubs.metrics()
        return value(
            text, "aaltohub_spawn_failures_total", course="ml-private", cause=cause
        )

    before = {cause: await count(cause) for cause in ("directory", "refused")}
    fails = len(hubs.records(action="server-fail", actor="student2"))
    async with client(hubs, "student2") as http:
        # JupyterHub makes a new spawner object for the spawn: patch its class.
        monkeypatch.setattr(LocalCourseSpawner, "get_viewer", down)
        response = await http.post(
            "/hub/api/users/student2/server", json={"profile": "ml-private"}
        )
        monkeypatch.undo()
    assert response.status_code == 503, response.text
    record = hubs.records(action="spawn", actor="student2")[-1]
    assert (record["outcome"], record["course"]) == ("failed", "ml-private")
    assert record["reason"] == f"directory: {DOWN}"
    assert await count("directory") == before["directory"] + 1
    assert await count("refused") == before["refused"]  # so the alert sees it
    # Counted once: no second record (cause "other") from the start.
    assert len(hubs.records(action="server-fail", actor="student2")) == fails


async def test_every_cause_counted_is_a_declared_one():
    from aaltohub.kube.starting import METRIC_CAUSES

    assert set(METRIC_CAUSES.values()) <= set(metrics.FAILURE_CAUSES)
    counter = metrics.SPAWN_FAILURES.labels(course="t-causes", cause="other")
    before = counter._value.get()
    assert metrics.count_spawn_failure("t-causes", "made-up") == "other"
    assert metrics.count_spawn_failure("t-causes", "image") == "image"
    assert counter._value.get() == before + 1


async def test_start_restart_and_cull_keep_running_servers_right(hubs):
    running = {"course": "intro", "role": "student"}
    before = value(await hubs.metrics(), "aaltohub_running_servers", **running)
    async with client(hubs, "student1") as http:
        response = await http.post(
            "/hub/api/users/student1/server", json={"profile": "intro"}
        )
        assert response.status_code in (201, 202), response.text
        await wait_ready(http, "student1")
    spawn = hubs.records(action="spawn", actor="student1")[-1]
    start = hubs.records(action="server-start", actor="student1")[-1]
    assert (spawn["course"], spawn["outcome"]) == ("intro", "ok")
    assert (start["course"], start["target"], start["reason"]) == (
        "intro",
        "student1",
        "role student",
    )
    assert start["request_id"] == spawn["request_id"] != ""  # one request
    text = await hubs.metrics()
    assert value(text, "aaltohub_running_servers", **running) == before + 1
    assert value(text, "aaltohub_pending_spawns", course="intro") == 0
    assert (
        value(
            text,
            "aaltohub_spawn_duration_seconds_count",
            course="intro",
            outcome="success",
        )
        >= 1
    )

    # A restart: the new hub process counts the server it finds running.
    server = hubs.app.users["student1"].spawner.proc
    await hubs.stop()
    metrics.RUNNING_SERVERS.clear()  # as in a new process
    await hubs.start()
    # The server is still this process's child: reap it once it exits, as
    # init would for a server whose hub process is gone.
    reaper = asyncio.ensure_future(reap(server))
    text = await hubs.metrics()
    assert 'aaltohub_running_servers{course="intro",role="student"} 1.0' in text

    # The idle culler stops it: a cull, not a user's stop.
    culls = value(text, "aaltohub_culls_total", course="intro")
    async with httpx.AsyncClient(base_url=hubs.url, timeout=60) as http:
        response = await http.delete(
            "/hub/api/users/student1/server",
            headers={"Authorization": f"token {CULLER_TOKEN}"},
        )
    assert response.status_code in (202, 204)
    await wait_for(lambda: hubs.records(action="cull"))
    cull = hubs.records(action="cull")[-1]
    assert (cull["actor"], cull["target"], cull["course"]) == (
        "jupyterhub-idle-culler",
        "student1",
        "intro",
    )
    admin = hubs.records(action="admin-api", actor="jupyterhub-idle-culler")[-1]
    assert admin["target"] == "DELETE /hub/api/users/student1/server"
    assert admin["request_id"] == cull["request_id"]
    await asyncio.wait_for(reaper, 30)
    text = await hubs.metrics()
    assert 'aaltohub_running_servers{course="intro",role="student"} 0.0' in text
    assert value(text, "aaltohub_culls_total", course="intro") == culls + 1


async def reap(proc) -> None:
    while proc.poll() is None:
        await asyncio.sleep(0.1)


async def wait_for(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


# --- the admin API --------------------------------------------------------------------
async def test_admin_api_actions_are_recorded_and_users_own_are_not(hubs):
    async with client(hubs, "admin1") as http:
        assert (await http.post("/hub/api/users/newcomer")).status_code == 201
        assert (await http.post("/hub/api/users/newcomer")).status_code == 409
        now = {"last_activity": "2026-11-26T00:00:00Z"}  # routine, not an action
        activity = await http.post("/hub/api/users/admin1/activity", json=now)
        assert activity.status_code < 300
    async with client(hubs, "student2") as http:
        assert (await http.post("/hub/api/users/someone")).status_code == 403
    created, refused = hubs.records(action="admin-api", actor="admin1")[-2:]
    assert created["target"] == "POST /hub/api/users/newcomer"
    assert (created["outcome"], created["reason"]) == ("ok", "HTTP 201")
    assert (refused["outcome"], refused["reason"]) == ("failed", "HTTP 409")
    assert not hubs.records(action="admin-api", actor="student2")


# --- where the request hooks are installed ------------------------------------------
async def test_a_request_id_is_never_only_what_the_client_sent():
    ours = hub_events.request_id("")
    assert len(ours) == 32 and ours != hub_events.request_id("")
    given = hub_events.request_id("abc-1234")
    assert given.startswith("abc-1234.") and len(given) == 9 + 32
    for bad in ("short", "a\r\nX-Evil: 1 abcdef", "x" * 200):
        assert "." not in hub_events.request_id(bad)  # not a token: ours only


async def test_configure_keeps_the_deployers_settings_and_is_idempotent():
    c = Config()
    c.JupyterHub.tornado_settings = {"compress_response": True, "slow_spawn_timeout": 3}
    hub_events.configure(c)
    hub_events.configure(c)
    settings = c.JupyterHub.tornado_settings
    assert settings["slow_spawn_timeout"] == 3
    assert settings["transforms"][0] is hub_events.RequestContextTransform
    assert GZipContentEncoding in settings["transforms"]  # as tornado would add
    assert len(settings["transforms"]) == 2
    assert settings["log_function"].aaltohub_audit


async def test_the_deployment_and_the_demo_install_the_audit_log(tmp_path):
    from aaltohub.demo.runner import Demo
    from aaltohub.demo.settings import StatePaths, configure
    from aaltohub.demo.state import prepare as prepare_demo

    values = yaml.safe_load((REPO / "deploy/kubernetes/values.yaml").read_text())
    c = Config()
    exec(
        values["hub"]["extraConfig"]["aaltohub-audit"], {"c": c}
    )  # the chart execs it so
    assert c.AuditLog.destination == "stdout"
    assert (
        hub_events.RequestContextTransform
        in c.JupyterHub.tornado_settings["transforms"]
    )

    paths = StatePaths(tmp_path)
    prepare_demo(paths, "pw")
    c = Config()
    configure(c, {"AALTOHUB_DEMO_STATE": str(tmp_path), "AALTOHUB_DEMO_PROXY": "x"})
    assert c.AuditLog.destination == "file"
    assert c.AuditLog.path == str(tmp_path / "logs" / "audit.log")
    assert "log_function" in c.JupyterHub.tornado_settings
    demo = Demo(8000, tmp_path, password="pw")
    demo.info = {"users": {}, "courses": SimpleNamespace(courses={})}
    assert f"audit:    {tmp_path / 'logs' / 'audit.log'}" in demo.banner(1.0)
