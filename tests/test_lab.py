"""aaltohub.web.lab: the notices as JupyterLab's news, in a real server.

A real jupyter-server with JupyterLab 4 and the extension, started the way
the demo starts single-user servers (the extension and the settings
directory on the command line). The hub's announcements endpoint is a stub
here (tests/e2e/test_notices.py asks the real hub): it answers only the
server's own token and records what was asked.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse
from urllib.request import Request, urlopen

import pytest

pytest.importorskip("jupyterlab")

from aaltohub.web import lab

ROOT = Path(__file__).parents[1]
SINGLEUSER = ROOT / "src" / "aaltohub" / "web" / "singleuser"
TOKEN = "server-token-1"
# Installed extensions this test does not need: a faster start.
NOT_NEEDED = [
    "nbgrader.server_extensions.assignment_list",
    "nbgrader.server_extensions.course_list",
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.validate_assignment",
    "jupyter_lsp",
    "notebook",
]


def test_the_image_ships_the_packages_own_files():
    # built from the repository root: the package's files, never copies
    dockerfile = (ROOT / "images" / "notebook" / "Dockerfile").read_text()
    for source in (
        "src/aaltohub/web/lab.py",
        "src/aaltohub/web/singleuser/notices.sh",
        "src/aaltohub/web/singleuser/lab-settings/overrides.d/aaltohub.json",
        "images/notebook/aaltohub-user.sh",
        "images/notebook/aaltohub-groups.sh",
    ):
        assert f"COPY --chmod=0644 {source} " in dockerfile
        assert (ROOT / source).is_file()
    assert Path(lab.__file__).resolve() == (ROOT / "src/aaltohub/web/lab.py").resolve()
    assert '"jpserver_extensions": {"aaltohub_lab": true}' in dockerfile


# --- the quota notice ---------------------------------------------------------
def test_quota_notice_from_the_spawns_notice_file(tmp_path):
    notice = tmp_path / "quota-warning.txt"
    notice.write_text(
        "Your home directory is 95 % full (9.5 GiB of 10.0 GiB).\n\n"
        "The course directory of Intro is 92 % full (92 GiB of 100 GiB).\n\n"
        "To free space, delete things.\n"
    )
    env = {"AALTOHUB_QUOTA_NOTICE": str(notice), "AALTOHUB_QUOTA_PERCENT": "95"}
    item = lab.quota_notice(env)
    assert item["type"] == "warning"
    assert item["message"] == (
        "Your home directory is 95 % full (9.5 GiB of 10.0 GiB). The course"
        " directory of Intro is 92 % full (92 GiB of 100 GiB). " + lab.TERMINAL_HINT
    )
    assert item["options"]["data"]["tags"] == ["news"]
    # the same warning keeps its id (a hidden one stays hidden) ...
    assert lab.quota_notice(env)["options"] == item["options"]
    # ... a different one gets a new id and shows again
    notice.write_text("Your home directory is 99 % full.\n\nHelp.\n")
    assert lab.quota_notice(env)["options"] != item["options"]


def test_quota_notice_without_the_file_and_over_the_limit(tmp_path):
    env = {
        "AALTOHUB_QUOTA_NOTICE": str(tmp_path / "gone"),
        "AALTOHUB_QUOTA_PERCENT": "104",
    }
    item = lab.quota_notice(env)
    assert item["type"] == "error"
    assert item["message"].startswith("Your home directory is 104 % full.")
    assert lab.quota_notice({}) is None
    assert lab.quota_notice({"AALTOHUB_QUOTA_PERCENT": "95; rm -rf"}) is None


# --- a real server ------------------------------------------------------------
class StubHub(BaseHTTPRequestHandler):
    asked: list = []
    answer: list = []

    def do_GET(self):
        url = urlparse(self.path)
        StubHub.asked.append((url.path, parse_qs(url.query)))
        if self.headers.get("Authorization") != f"token {TOKEN}":
            self.send_response(403)
            self.end_headers()
            return
        body = json.dumps({"announcements": StubHub.answer}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def stub_hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    StubHub.asked, StubHub.answer = [], []
    yield f"http://127.0.0.1:{server.server_port}/hub/api"
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str = "lab-token") -> dict:
    request = Request(url, headers={"Authorization": f"token {token}"})
    with urlopen(request, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory, stub_hub):
    tmp_path = tmp_path_factory.mktemp("lab")
    notice = tmp_path / "quota-warning.txt"
    notice.write_text("Your home directory is 95 % full.\n\nDelete things.\n")
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTERHUB_API_URL": stub_hub,
        "JUPYTERHUB_API_TOKEN": TOKEN,
        "JUPYTERHUB_SERVER_NAME": "gpu 1",
        "AALTOHUB_QUOTA_NOTICE": str(notice),
        "AALTOHUB_QUOTA_PERCENT": "95",
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyter_server",
        f"--port={port}",
        "--ip=127.0.0.1",
        "--no-browser",
        "--allow-root",  # CI runs the suite as root
        "--IdentityProvider.token=lab-token",
        f"--ServerApp.root_dir={tmp_path}",
        "--ServerApp.jpserver_extensions=aaltohub.web.lab=True",
        *(f"--ServerApp.jpserver_extensions={e}=False" for e in NOT_NEEDED),
        f"--LabApp.app_settings_dir={SINGLEUSER / 'lab-settings'}",
    ]
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            get(f"{url}/api/status")
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                pytest.fail((tmp_path / "server.log").read_text(errors="replace"))
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_jupyterlabs_news_are_the_quota_warning_and_the_hubs_notices(server):
    StubHub.answer = [
        {"id": "a1", "text": "Maintenance <b>tonight</b>", "course": ""},
        {"id": "a2", "text": "Lab moved", "course": "intro"},
    ]
    news = get(f"{server}/lab/api/news")["news"]
    assert [(n["type"], n["message"]) for n in news] == [
        ("warning", "Your home directory is 95 % full. " + lab.TERMINAL_HINT),
        ("info", "Maintenance <b>tonight</b>"),  # JupyterLab shows it as text
        ("info", "intro: Lab moved"),
    ]
    # the hub was asked with the server's own token, for this server
    assert StubHub.asked == [("/hub/api/aaltohub/announcements", {"server": ["gpu 1"]})]
    # and JupyterLab fetches news without asking the user first
    plugin = "@jupyterlab/apputils-extension:notification"
    defaults = get(f"{server}/lab/api/settings/{plugin}")["schema"]["properties"]
    assert defaults["fetchNews"]["default"] == "true"
    assert defaults["checkForUpdates"]["default"] is False


def test_a_hub_that_is_away_or_refuses_gives_no_notices(stub_hub):
    log = _Log()
    away = {
        "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",
        "JUPYTERHUB_API_TOKEN": "x",
    }
    assert asyncio.run(lab.hub_notices(away, log)) == []
    refused = {"JUPYTERHUB_API_URL": stub_hub, "JUPYTERHUB_API_TOKEN": "not-ours"}
    StubHub.answer = [{"id": "a1", "text": "never shown"}]
    assert asyncio.run(lab.hub_notices(refused, log)) == []
    assert len(log.lines) == 2  # each logged, JupyterLab still gets its answer
    assert asyncio.run(lab.hub_notices({}, log)) == []  # not under a hub


def test_the_news_need_a_login(server):
    with pytest.raises(OSError) as e:
        get(f"{server}/lab/api/news", token="wrong")
    assert "403" in str(e.value)


class _Log:
    def __init__(self):
        self.lines = []

    def warning(self, *args):
        self.lines.append(args)
