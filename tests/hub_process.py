"""Real JupyterHubs for tests, behind the real configurable-http-proxy.

The plumbing every hub test shares: free ports, the settings every test hub
has (where it listens, the proxy, its state files), a hub in a subprocess
(start, wait for /hub/health, stop) or in this test's event loop, logging
in and the XSRF header. Each test module keeps its own configuration.

Below that, the hub for the CLI's hub API calls (``hub``): JupyterHub's own
MockSpawner (a tiny real single-user server process), with a service token
of the scopes ``course end-term`` and ``users inactive`` document; the
admin token creates users, records activity and starts servers.
"""

from __future__ import annotations

import asyncio
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
from traitlets.config import Config

REPO = Path(__file__).resolve().parents[1]
CHP = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
#: For a test module whose hub needs the proxy.
NEEDS_PROXY = pytest.mark.skipif(
    not CHP.exists(), reason="configurable-http-proxy missing: run `npm ci`"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports() -> tuple[int, int, int]:
    """A hub's ports: public (the proxy), the proxy's API, the hub's own."""
    return free_port(), free_port(), free_port()


def public_url(ports: tuple[int, int, int]) -> str:
    return f"http://127.0.0.1:{ports[0]}"


def base_config(tmp: Path, ports=None, db_url: str = "") -> Config:
    """What every test hub has: it listens on 127.0.0.1 at ``ports``
    (default: free ones), runs the real proxy, and keeps its database
    (default: sqlite), cookie secret and pid file in ``tmp``."""
    ports = ports or free_ports()
    _, api_port, hub_port = ports
    c = Config()
    c.JupyterHub.bind_url = public_url(ports)
    c.JupyterHub.hub_port = hub_port
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{api_port}"
    c.ConfigurableHTTPProxy.command = [str(CHP)]
    c.JupyterHub.db_url = db_url or f"sqlite:///{tmp}/hub.sqlite"
    c.JupyterHub.cookie_secret_file = f"{tmp}/cookie_secret"
    c.JupyterHub.pid_file = f"{tmp}/hub.pid"
    return c


# --- a hub in a subprocess ------------------------------------------------------------
#: Settings for :func:`login`: any user name, the password "pw".
DUMMY_LOGIN = """\
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "pw"
c.Authenticator.allow_all = True
"""


def write_config(tmp: Path, ports, *settings: str, db_url: str = "") -> None:
    """``tmp/jupyterhub_config.py``: :func:`base_config`, then ``settings``
    (the test's own pieces of Python, each dedented)."""
    lines = ["c = get_config()"]
    for section, traits in base_config(tmp, ports, db_url).items():
        lines += [f"c.{section}.{name} = {value!r}" for name, value in traits.items()]
    text = "\n".join([*lines, *(textwrap.dedent(piece) for piece in settings)])
    (tmp / "jupyterhub_config.py").write_text(text)


def start_process(tmp: Path, env: dict | None = None) -> subprocess.Popen:
    """``jupyterhub -f tmp/jupyterhub_config.py`` in its own session, its
    output appended to ``tmp/hub.log``."""
    with open(tmp / "hub.log", "a") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterhub",
                "-f",
                str(tmp / "jupyterhub_config.py"),
            ],
            cwd=tmp,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_healthy(url: str, proc, tmp: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/hub/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (tmp / "hub.log").read_text()
        time.sleep(0.2)
    pytest.fail("hub did not start:\n" + (tmp / "hub.log").read_text())


def stop_process(proc) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def run_hub(
    tmp: Path, *settings: str, db_url: str = "", env=None, timeout: float = 30
) -> tuple[str, subprocess.Popen]:
    """A hub in a subprocess with ``settings``, once /hub/health answers:
    its public URL and its process (for :func:`stop_process`)."""
    ports = free_ports()
    write_config(tmp, ports, *settings, db_url=db_url)
    proc = start_process(tmp, env)
    try:
        wait_healthy(public_url(ports), proc, tmp, timeout)
    except BaseException:
        stop_process(proc)
        raise
    return public_url(ports), proc


# --- a hub in this test's event loop --------------------------------------------------
async def start_app(config: Config):
    from jupyterhub.app import JupyterHub

    app = JupyterHub(config=config)
    await app.initialize([])
    await app.start()
    return app


async def stop_app(app) -> None:
    """Stop what :func:`start_app` started; the event loop goes on."""
    app.http_server.stop()
    for callback in app._periodic_callbacks.values():
        callback.stop()
    await app.cleanup()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)


# --- a user's requests ----------------------------------------------------------------
def xsrf(client) -> dict:
    """The header a cookie-authenticated API request needs."""
    return {"X-XSRFToken": client.cookies.get("_xsrf", "")}


def login_form(client, user: str, password: str) -> dict:
    return {
        "username": user,
        "password": password,
        "_xsrf": xsrf(client)["X-XSRFToken"],
    }


def login(url: str, user: str, password: str = "pw") -> httpx.Client:
    """A client with ``user``'s login cookie (DummyAuthenticator's password)."""
    client = httpx.Client(base_url=url, follow_redirects=True, timeout=20)
    client.get("/hub/login")
    response = client.post("/hub/login", data=login_form(client, user, password))
    assert response.status_code == 200 and "/hub/login" not in str(response.url)
    return client


async def log_in(
    http: httpx.AsyncClient, user: str, password: str = "pw", **headers
) -> httpx.Response:
    """Log ``http`` in as ``user``; the login POST's response."""
    await http.get("/hub/login")
    return await http.post(
        "/hub/login", data=login_form(http, user, password), headers=headers
    )


async def wait_ready(http: httpx.AsyncClient, user: str, timeout=60.0) -> None:
    """Wait for ``user``'s default server, as a client logged in as them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = (await http.get(f"/hub/api/users/{user}", headers=xsrf(http))).json()
        server = model["servers"].get("")
        if server and server["ready"]:
            return
        await asyncio.sleep(0.3)
    pytest.fail(f"{user}'s server was not ready in {timeout} s: {model}")


# --- the hub for the CLI's hub API calls ----------------------------------------------
SERVICE_TOKEN = "aaltohub-ops-token-for-tests-0123456789"
ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef"
#: What the operations service needs (docs/term-lifecycle.md).
SERVICE_SCOPES = [
    "list:users",
    "read:users:activity",
    "read:servers",
    "delete:servers",
]


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


def start_hub(tmp: Path) -> tuple[Hub, subprocess.Popen]:
    if not CHP.exists():
        pytest.skip("configurable-http-proxy missing: run `npm ci`")
    url, proc = run_hub(
        tmp,
        f"""\
        c.JupyterHub.spawner_class = "jupyterhub.tests.mocking.MockSpawner"
        c.JupyterHub.authenticator_class = "dummy"
        c.Authenticator.allow_all = True
        c.JupyterHub.allow_named_servers = True
        c.JupyterHub.load_roles = [
            {{"name": "aaltohub-ops", "scopes": {SERVICE_SCOPES!r},
              "services": ["aaltohub-ops"]}},
            {{"name": "admin", "services": ["admin-svc"]}},
        ]
        c.JupyterHub.services = [
            {{"name": "aaltohub-ops", "api_token": {SERVICE_TOKEN!r}}},
            {{"name": "admin-svc", "api_token": {ADMIN_TOKEN!r}}},
        ]
        """,
        timeout=60,
    )
    return Hub(url, tmp / "hub.log"), proc


_RUNNING: dict = {}


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """One hub for every test module that imports this fixture (each
    import makes its own fixture, so the hub itself is kept here)."""
    if "hub" not in _RUNNING:
        tmp = tmp_path_factory.mktemp("hub")
        running, proc = start_hub(tmp)
        token = tmp / "token"
        token.write_text(SERVICE_TOKEN + "\n")
        token.chmod(0o600)
        running.token_file = str(token)
        _RUNNING["hub"] = running
        atexit.register(stop_process, proc)
    return _RUNNING["hub"]
