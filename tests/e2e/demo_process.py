"""Starting and stopping ``aaltohub demo`` as a user would, from tests.

The demo runs as a subprocess in a session of its own (like a terminal
job), with a fresh state directory; ``finish_demo`` signals it and reports
any process of the run that is still alive afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from aaltohub.demo.runner import free_port, run_processes
from aaltohub.demo.settings import find_proxy
from aaltohub.local.sandbox import namespaces_supported

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "e2e-demo-password"


#: Whether the demo's servers run in namespace mode (root, mount namespaces
#: available): then read-only mounts and user separation are enforced.
ENFORCED = namespaces_supported()
NOT_ENFORCED = (
    "not enforceable here: without root and mount namespaces every demo"
    " server runs under the hub's uid (prefix mode), so read-only mounts and"
    " user separation are not enforced"
)


@dataclass
class DemoRun:
    proc: subprocess.Popen
    url: str
    state: Path
    token: str
    seconds: float
    output: Path

    def stop(self, sig=signal.SIGINT, timeout: float = 60) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(b")", 1)[-1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _run_token(runner_pid: int) -> str:
    """The AALTOHUB_DEMO_RUN token, read from the hub's environment."""
    for pid in _children(runner_pid):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(b"AALTOHUB_DEMO_RUN="):
                return item.split(b"=", 1)[1].decode()
    raise AssertionError("no process of the demo carries AALTOHUB_DEMO_RUN")


def start_demo(name: str, *extra: str, timeout: float = 60) -> DemoRun:
    """Start ``aaltohub demo`` and wait until /hub/health answers."""
    if not find_proxy():
        pytest.fail("configurable-http-proxy is missing: run 'npm ci' first")
    state = Path(tempfile.mkdtemp(prefix=f"aaltohub-e2e-{name}-"))
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    output = ARTIFACTS / f"demo-{name}.out"
    cmd = [sys.executable, "-m", "aaltohub.cli", "demo", "--port", str(port)]
    cmd += ["--state-dir", str(state), "--password", PASSWORD, *extra]
    started = time.monotonic()
    with open(output, "wb") as out:
        # A session of its own, like a terminal's job: signals are ours to send.
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            with urllib.request.urlopen(f"{url}/hub/health", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() - started > timeout:
            proc.kill()
            pytest.fail(f"demo did not start:\n{output.read_text(errors='replace')}")
        time.sleep(0.05)
    seconds = time.monotonic() - started
    return DemoRun(proc, url, state, _run_token(proc.pid), seconds, output)


def finish_demo(run: DemoRun, sig=signal.SIGINT) -> tuple[int, list[int]]:
    """Stop the demo; returns (exit status, pids of the run still alive)."""
    try:
        status = run.stop(sig)
    except subprocess.TimeoutExpired:
        run.proc.kill()
        status = -9
    left = run_processes(run.token)
    log = run.state / "logs/jupyterhub.log"
    if log.exists():
        shutil.copy(log, ARTIFACTS / f"{run.output.stem}-jupyterhub.log")
    shutil.rmtree(run.state, ignore_errors=True)
    return status, left
