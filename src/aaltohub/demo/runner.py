"""Run the demo hub and make sure nothing of it outlives ``aaltohub demo``.

The hub runs in its own session, so a terminal's Ctrl-C reaches only this
process, which then stops the hub in order: SIGTERM lets JupyterHub stop
every server and the proxy itself. Whatever is still alive after that (a
hub killed hard, a server that ignored the signals, a kernel) carries this
run's ``AALTOHUB_DEMO_RUN`` token in its environment and is killed by it;
this process is also a child subreaper, so orphans come back to it to be
reaped rather than to init.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

from ..local.sandbox import namespaces_supported, sandbox_problem
from .settings import ADMIN_USERS, ENV_PREFIX, PROXY_MISSING, StatePaths, find_proxy
from .state import new_password, prepare, reset_servers_dir

PR_SET_CHILD_SUBREAPER = 36
START_TIMEOUT = 60.0
STOP_TIMEOUT = 25.0


class DemoError(RuntimeError):
    """The demo cannot start; str() names the fix."""


def config_file() -> str:
    """deploy/local/jupyterhub_config.py in a checkout, else the packaged copy."""
    here = Path(__file__).resolve()
    checkout = here.parents[3] / "deploy/local/jupyterhub_config.py"
    if checkout.is_file():
        return str(checkout)
    return str(resources.files("aaltohub.demo").joinpath("jupyterhub_config.py"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_port(port: int) -> None:
    with socket.socket() as s:
        # As the proxy will: connections in TIME_WAIT must not count as "in use".
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise DemoError(
                f"port {port} is already in use; choose another with --port"
            ) from None


def run_processes(token: str) -> list[int]:
    """Pids of live processes whose environment holds this run's token."""
    needle = f"{ENV_PREFIX}RUN={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                zombie = f.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
        except OSError:
            continue  # gone, or not ours to read
        if needle in env and not zombie:
            found.append(int(entry))
    return found


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def sweep(token: str, timeout: float = 5.0) -> list[int]:
    """Kill what is left of this run; returns the pids that were killed."""
    killed = run_processes(token)
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while run_processes(token) and time.monotonic() < deadline:
        _reap()
        time.sleep(0.05)
    _reap()
    return killed


def _become_subreaper() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the token sweep still finds leftovers


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 (http://127.0.0.1)
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _say(text: str, stream=None) -> None:
    """Print, but never let a closed terminal or pipe stop the shutdown."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=stream or sys.stdout, flush=True)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Demo:
    """One run of the demo hub."""

    def __init__(self, port, state_dir, password=None, isolation="auto", verbose=False):
        self.port = port
        self.paths = StatePaths(Path(state_dir).resolve())
        self.generated = password is None
        self.password = password or new_password()
        self.isolation = isolation
        self.verbose = verbose
        self.token = secrets.token_hex(8)
        self.hub: subprocess.Popen | None = None
        self._stop_signal: int | None = None

    def environment(self, proxy: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                ENV_PREFIX + "STATE": str(self.paths.root),
                ENV_PREFIX + "PORT": str(self.port),
                ENV_PREFIX + "HUB_PORT": str(free_port()),
                ENV_PREFIX + "PROXY_API_PORT": str(free_port()),
                ENV_PREFIX + "PROXY": proxy,
                ENV_PREFIX + "ISOLATION": self.isolation,
                ENV_PREFIX + "RUN": self.token,
                "JUPYTERHUB_CRYPT_KEY": self.paths.crypt_key.read_text().strip(),
            }
        )
        return env

    def start(self) -> float:
        """Prepare the state, start the hub, wait until it serves; returns
        the seconds it took."""
        started = time.monotonic()
        proxy = find_proxy()
        if not proxy:
            raise DemoError(PROXY_MISSING)
        check_port(self.port)
        info = prepare(self.paths, self.password)
        reset_servers_dir(self.paths)
        for problem in info["problems"]:
            _say(f"warning: {problem}", sys.stderr)
        self.info = info
        _become_subreaper()
        log = None if self.verbose else open(self.paths.hub_log, "ab")  # noqa: SIM115
        cmd = [sys.executable, "-m", "jupyterhub", "-f", config_file()]
        self.hub = subprocess.Popen(
            cmd,
            env=self.environment(proxy),
            cwd=str(self.paths.root),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
        )
        if log:
            log.close()
        health = f"http://127.0.0.1:{self.port}/hub/health"
        while not _healthy(health):
            if self.hub.poll() is not None:
                raise DemoError(
                    f"JupyterHub exited with status {self.hub.returncode} while"
                    f" starting. Last lines of {self.paths.hub_log}:\n"
                    + _tail(self.paths.hub_log)
                )
            if self._stop_signal is not None:
                return time.monotonic() - started
            if time.monotonic() - started > START_TIMEOUT:
                raise DemoError(
                    f"the hub did not answer {health} within {START_TIMEOUT:g} s;"
                    f" see {self.paths.hub_log}"
                )
            time.sleep(0.1)
        return time.monotonic() - started

    def _on_signal(self, signum, frame) -> None:
        self._stop_signal = signum

    def wait(self) -> None:
        while self._stop_signal is None and self.hub.poll() is None:
            time.sleep(0.2)

    def stop(self) -> list[int]:
        """Stop the hub (and through it every server and the proxy), then
        kill whatever is left; returns the pids that had to be killed."""
        hub = self.hub
        if hub is not None and hub.poll() is None:
            hub.send_signal(signal.SIGTERM)
            try:
                hub.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(hub.pid, signal.SIGKILL)
                hub.wait()
        return sweep(self.token)

    def isolation_note(self) -> str:
        mode = self.isolation
        if mode == "auto":
            as_root = os.geteuid() == 0
            mode = "namespace" if as_root and namespaces_supported() else "prefix"
        if mode == "namespace":
            return "bubblewrap sandboxes, each as its user (enforced)"
        why = f" ({sandbox_problem()})" if self.isolation == "auto" else ""
        return (
            f"prefix mode{why}, all as this account: read-only data and user"
            " separation are NOT enforced (run as root with bubblewrap"
            " installed for that; docs/demo.md)"
        )

    def banner(self, seconds: float) -> str:
        users = self.info["users"]
        catalog = self.info["courses"]
        courses = sorted(catalog.courses.values(), key=lambda c: c.slug)

        def role(name):
            if name in ADMIN_USERS:
                return " (admin)"
            teaches = [c.slug for c in courses if name in c.instructors]
            return f" (teaches {', '.join(teaches)})" if teaches else ""

        lines = [
            f"aaltohub demo: http://127.0.0.1:{self.port}/  (ready in {seconds:.1f} s)",
            "  users:    " + ", ".join(n + role(n) for n in users),
            "  password: "
            + (
                f"{self.password}   (generated; choose one with --password)"
                if self.generated
                else "the one given with --password"
            ),
            "  courses:  "
            + ", ".join(
                c.slug
                + (" (archived)" if c.archive else " (private)" if c.private else "")
                for c in courses
            ),
            "  servers:  " + self.isolation_note(),
            f"  state:    {self.paths.root}",
            f"  hub log:  {self.paths.hub_log}" if not self.verbose else "",
            f"  audit:    {self.paths.audit_log}   (aaltohub audit --file ...)",
            "Press Ctrl-C to stop.",
        ]
        return "\n".join(line for line in lines if line)


def run(
    port=8000, state_dir="demo-state", password=None, isolation="auto", verbose=False
):
    """The ``aaltohub demo`` command: start, serve until a signal, stop."""
    demo = Demo(port, state_dir, password, isolation, verbose)
    # Signals only set a flag: a second Ctrl-C must not cut the shutdown short.
    old = {
        s: signal.signal(s, demo._on_signal) for s in (signal.SIGINT, signal.SIGTERM)
    }
    status = 0
    try:
        seconds = demo.start()
        if demo._stop_signal is None:
            _say(demo.banner(seconds))
            demo.wait()
        if demo._stop_signal is None and demo.hub.returncode:
            _say(
                f"error: JupyterHub exited with status {demo.hub.returncode}; see"
                f" {demo.paths.hub_log}\n" + _tail(demo.paths.hub_log),
                sys.stderr,
            )
            status = 1
    except (DemoError, OSError, ValueError) as e:
        _say(f"error: {e}", sys.stderr)
        status = 2
    finally:
        _say("Stopping the demo ...", sys.stderr)
        killed = demo.stop()
        leftovers = run_processes(demo.token)
        for s, handler in old.items():
            signal.signal(s, handler)
    if leftovers:
        _say(f"warning: processes still running: {leftovers}", sys.stderr)
        return status or 1
    note = f" ({len(killed)} left-over process(es) killed)" if killed else ""
    _say(f"Demo stopped; no processes left{note}.", sys.stderr)
    return status
