"""``aaltohub demo`` starts fast and leaves nothing behind when it stops."""

from __future__ import annotations

import json
import os
import signal
import stat
import time

import pytest

from aaltohub.demo.runner import run_processes

from .demo_process import ENFORCED, PASSWORD, finish_demo, start_demo
from .hubclient import Hub

pytestmark = pytest.mark.e2e
START_LIMIT = 15.0


def test_session_demo_started_within_limit(demo):
    print(f"\nwarm-state demo start to /hub/health: {demo.seconds:.2f} s")
    assert demo.seconds < START_LIMIT
    assert "ready in" in demo.output.read_text()


def test_ctrl_c_stops_hub_proxy_servers_and_kernels():
    """A fresh state directory, prefix mode (symlinks, works for any user),
    a running server with a kernel, then SIGINT as from Ctrl-C."""
    run = start_demo("sigint", "--isolation", "prefix")
    try:
        print(f"\ncold-state demo start to /hub/health: {run.seconds:.2f} s")
        assert run.seconds < START_LIMIT
        hub = Hub(run.url, PASSWORD)
        hub.ensure_server("student1", "intro")
        view = hub.run(
            "student1",
            "import os, json; print(json.dumps({'cwd': os.getcwd(),"
            " 'top': sorted(os.listdir('.')), 'cfg': os.environ['JUPYTER_CONFIG_PATH'],"
            " 'data': sorted(os.listdir('coursedata')),"
            " 'nbcfg': open(os.environ['JUPYTER_CONFIG_PATH'] +"
            " '/nbgrader_config.py').read()}))",
        )
        view = json.loads(view)
        # The server's root is the per-server view; plan paths are translated.
        root = view["cwd"]
        assert root.startswith(str(run.state / "servers" / "student1"))
        assert {"notebooks", "coursedata", "srv", "etc"} <= set(view["top"])
        assert "course" not in view["top"]
        assert view["cfg"] == f"{root}/etc/aaltohub/jupyter"
        assert "README.md" in view["data"]
        assert f"c.Exchange.root = '{root}/srv/nbgrader/exchange'" in view["nbcfg"]
        # A kernel left running, as a user closing the browser tab leaves it.
        r = hub.user_api("student1", "POST", "/kernels", json={"name": "python3"})
        assert r.status_code == 201
        pids = run_processes(run.token)
        assert len(pids) >= 4, pids  # hub, proxy, server, kernel
    finally:
        status, left = finish_demo(run, signal.SIGINT)
    assert not left, f"left behind: {left}"
    assert status == 0
    assert "no processes left" in run.output.read_text()


def test_hub_killed_hard_still_leaves_nothing():
    """If JupyterHub itself dies, the runner notices, reports it, and kills
    the orphaned servers by the run's token."""
    run = start_demo("hubkill")
    try:
        hub = Hub(run.url, PASSWORD)
        hub.ensure_server("student2", "intro")
        hub_pid = int((run.state / "jupyterhub.pid").read_text())
        os.kill(hub_pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while run.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run.proc.returncode == 1  # the runner stopped on its own
    finally:
        _, left = finish_demo(run, signal.SIGINT)
    assert not left, f"left behind: {left}"
    out = run.output.read_text()
    assert "JupyterHub exited with status" in out
    assert "left-over process(es) killed" in out


def test_server_view_exists_only_while_the_server_runs(demo, hub):
    """The view goes when the server stops; its log stays, the hub's alone."""
    view = demo.state / "servers" / "student2"
    hub.ensure_server("student2", "intro")
    if ENFORCED:  # namespace mode: bwrap's spec and generated files, no mounts
        assert (view / "spec.json").is_file() and not (view / "root").exists()
    else:
        assert (view / "root").is_dir()
    hub.stop_server("student2")
    assert set(os.listdir(view)) <= {"server.log", "server.log.1"}
    log = (view / "server.log").stat()
    assert stat.S_IMODE(log.st_mode) == 0o600 and log.st_uid == os.geteuid()
    # The server's output is in its own log, not in the hub's.
    assert "ServerApp]" in (view / "server.log").read_text()
    assert "ServerApp]" not in (demo.state / "logs/jupyterhub.log").read_text()
