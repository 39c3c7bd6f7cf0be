"""A real JupyterHub in a subprocess, for the CLI's hub API calls.

The hub runs JupyterHub's own MockSpawner (a tiny real single-user server
process) behind the real configurable-http-proxy, with a service token of
the scopes ``course end-term`` and ``users inactive`` document; the admin
token creates users, records activity and starts servers.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
CHP = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
SERVICE_TOKEN = "aaltohub-ops-token-for-tests-0123456789"
ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef"
#: What the operations service needs (docs/term-lifecycle.md).
SERVICE_SCOPES = [
    "list:users",
    "read:users:activity",
    "read:servers",
    "delete:servers",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hub:
    def __init__(self, url: str, log: Path):
        self.url = url
        self.api = url + "/hub/api"
        self.log = log
        self.admin = httpx.Client(
            base_url=self.api,
            headers={"Authorization": f"token {ADMIN_TOKEN}"},
            timeout=20,
        )

    def user(self, name: str, last_activity: str | None = None) -> None:
        r = self.admin.post(f"/users/{name}")
        assert r.status_code in (201, 409), r.text
        if last_activity:
            r = self.admin.post(
                f"/users/{name}/activity", json={"last_activity": last_activity}
            )
            assert r.status_code == 200, r.text

    def start(self, name: str, profile: str, server: str = "") -> None:
        path = f"/users/{name}/servers/{server}" if server else f"/users/{name}/server"
        r = self.admin.post(path, json={"profile": profile})
        assert r.status_code in (201, 202), r.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.servers(name).get(server, {}).get("ready"):
                return
            time.sleep(0.1)
        pytest.fail(f"server {name}/{server} did not start:\n{self.log.read_text()}")

    def servers(self, name: str) -> dict:
        return self.admin.get(f"/users/{name}").json().get("servers") or {}

    def wait_stopped(self, name: str, server: str = "") -> bool:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if server not in self.servers(name):
                return True
            time.sleep(0.1)
        return False


def start_hub(tmp: Path):
    if not CHP.exists():
        pytest.skip("configurable-http-proxy missing: run `npm ci`")
    port, api_port, hub_port = free_port(), free_port(), free_port()
    (tmp / "jupyterhub_config.py").write_text(
        textwrap.dedent(
            f"""\
            c = get_config()
            c.JupyterHub.spawner_class = "jupyterhub.tests.mocking.MockSpawner"
            c.JupyterHub.authenticator_class = "dummy"
            c.Authenticator.allow_all = True
            c.JupyterHub.allow_named_servers = True
            c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
            c.JupyterHub.hub_port = {hub_port}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
            c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
            c.JupyterHub.db_url = "sqlite:///{tmp}/hub.sqlite"
            c.JupyterHub.cookie_secret_file = "{tmp}/cookie_secret"
            c.JupyterHub.pid_file = "{tmp}/hub.pid"
            c.JupyterHub.load_roles = [
                {{"name": "aaltohub-ops", "scopes": {SERVICE_SCOPES!r},
                  "services": ["aaltohub-ops"]}},
                {{"name": "admin", "services": ["admin-svc"]}},
            ]
            c.JupyterHub.services = [
                {{"name": "aaltohub-ops", "api_token": {SERVICE_TOKEN!r}}},
                {{"name": "admin-svc", "api_token": {ADMIN_TOKEN!r}}},
            ]
            """
        )
    )
    log_path = tmp / "hub.log"
    log = open(log_path, "w")  # noqa: SIM115 (closed by stop_hub)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(tmp / "jupyterhub_config.py")],
        cwd=tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/hub/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log_path.read_text()
        time.sleep(0.2)
    else:
        pytest.fail("hub did not start:\n" + log_path.read_text())
    return Hub(url, log_path), (proc, log)


def stop_hub(handle) -> None:
    proc, log = handle
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


_RUNNING: dict = {}


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """One hub for every test module that imports this fixture (each
    import makes its own fixture, so the hub itself is kept here)."""
    if "hub" not in _RUNNING:
        tmp = tmp_path_factory.mktemp("hub")
        running, handle = start_hub(tmp)
        token = tmp / "token"
        token.write_text(SERVICE_TOKEN + "\n")
        token.chmod(0o600)
        running.token_file = str(token)
        _RUNNING["hub"] = running
        atexit.register(stop_hub, handle)
    return _RUNNING["hub"]
