"""Hub-side pieces of the burst benchmark, imported by its jupyterhub_config.

- ``FarmSpawner``: a plain Spawner whose "server" is the shared mock
  single-user farm (``burst_farm.py``, another process). The hub runs its
  whole spawn path (database, proxy route, waiting for the server to answer
  over HTTP) but no process is started, so the benchmark measures the hub.
- ``BenchCourseSpawner``: the same with aaltohub's course path in front
  (authorize, identity, every hook, the plan); the plan is applied to
  nothing, as the farm has no pods or sandboxes.
- ``PlainAuthenticator`` / ``AaltoAuthenticator``: JupyterHub's dummy
  authenticator and aaltohub's LDAP authenticator, each starting the loop
  lag monitor when the hub starts.
- The loop lag monitor: a task that sleeps 10 ms and appends how late it
  woke up to ``BURST_LAG_FILE`` (``monotonic lag`` per line, flushed once a
  second), so the driver can cut the samples by phase.
"""

from __future__ import annotations

import asyncio
import os
import time

from jupyterhub.auth import DummyAuthenticator
from jupyterhub.spawner import Spawner

from aaltohub.auth import LDAPIdentityAuthenticator
from aaltohub.local.profiles_form import CourseProfilesMixin

_monitor: asyncio.Task | None = None


async def _watch_lag(path: str, interval: float = 0.01) -> None:
    lines: list[str] = []
    flushed = time.monotonic()
    with open(path, "a", buffering=1 << 16) as out:
        while True:
            before = time.monotonic()
            await asyncio.sleep(interval)
            now = time.monotonic()
            lines.append(f"{now:.4f} {now - before - interval:.4f}\n")
            if now - flushed > 1.0:
                out.writelines(lines)
                out.flush()
                lines.clear()
                flushed = now


def start_lag_monitor() -> None:
    global _monitor
    path = os.environ.get("BURST_LAG_FILE")
    if path and _monitor is None:
        _monitor = asyncio.get_running_loop().create_task(_watch_lag(path))


class PlainAuthenticator(DummyAuthenticator):
    def check_allow_config(self):
        super().check_allow_config()
        start_lag_monitor()


class AaltoAuthenticator(LDAPIdentityAuthenticator):
    def check_allow_config(self):
        super().check_allow_config()
        start_lag_monitor()


class FarmSpawner(Spawner):
    """A server that is the farm: started at once, answering over HTTP."""

    _running = False

    async def start(self):
        self._running = True
        path = os.environ.get("BURST_STARTS_FILE")
        if path:  # one line per start, to find servers started twice
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, f"{self.user.name}\n".encode())
            os.close(fd)
        return ("127.0.0.1", int(os.environ["BURST_FARM_PORT"]))

    async def poll(self):
        return None if self._running else 0

    async def stop(self, now=False):
        self._running = False


class BenchCourseSpawner(CourseProfilesMixin, FarmSpawner):
    """FarmSpawner with aaltohub's spawn path: plan_spawn runs in full."""

    async def start(self):
        await self.plan_spawn()
        return await super().start()

    async def apply_plan(self, plan, course, role):
        return {}
