"""LocalCourseSpawner: a course server as a local process.

``LocalCourseSpawner`` applies that plan to a local process. Each server
gets its own view of the storage (built by :mod:`aaltohub.local.views`), in
one of two ways:

``namespace`` (the hub runs as root, bubblewrap is installed)
    A bubblewrap sandbox (own mount, pid, ipc and uts namespaces, a private
    /dev and /dev/shm) whose root is a fresh tmpfs holding the system and
    Python directories (read-only) and the plan's mounts as bind mounts at
    the pod's paths: /notebooks, /course, /coursedata,
    /srv/nbgrader/exchange, /etc/aaltohub. Read-only mounts are read-only
    mounts, and the server runs under the user's uid, gid and groups, so
    the storage's permission bits apply as on NFS. The host's own / is
    never changed (see :mod:`aaltohub.local.sandbox`).

``prefix`` (any user)
    A per-server directory of symlinks, ``<servers_dir>/<server>/root``
    with notebooks/, course/, coursedata/, srv/nbgrader/exchange and
    etc/aaltohub/, used as the server's root directory; the plan's paths
    are translated to it. Everything runs as the hub's own uid, so
    read-only mounts and the separation of users are NOT enforced.

In both, the server's stdout and stderr go to ``server.log`` in its
directory under ``servers_dir`` (0600, the hub's; the previous run's is
``server.log.1``), never to the hub's own, and it inherits no other file
descriptor. If the server exits while starting, the user's error message
ends with the last lines of that log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys

from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port
from traitlets import Enum, Integer, List, Unicode, default

from ..spawn import user_error
from ..spawn_events import SpawnEventsMixin
from . import views
from .profiles_form import CourseProfilesMixin
from .sandbox import command, namespaces_work, read_info, sandbox_problem

_SERVER_RE = re.compile(r"[A-Za-z0-9._-]{1,63}")


async def _listening(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1)
    except (TimeoutError, OSError):
        return False
    writer.close()
    return True


class LocalCourseSpawner(SpawnEventsMixin, CourseProfilesMixin, LocalProcessSpawner):
    """A LocalProcessSpawner whose profiles are the user's courses, with
    the course plan applied to a per-server view of a local storage tree."""

    storage_root = Unicode(
        "",
        help="""Local directory that stands in for the campus storage volume:
        plan mounts are its sub-paths (u/NN/user, course/<dir>/files, ...),
        exactly as in a pod.""",
    ).tag(config=True)

    servers_dir = Unicode(
        "",
        help="""Directory for the per-server views (one sub-directory per
        server, removed when it stops, except the server's log,
        server.log, and the previous run's, server.log.1). Keep it outside
        storage_root.""",
    ).tag(config=True)

    isolation = Enum(
        ["auto", "namespace", "prefix"],
        "auto",
        help="""How a server sees its storage: ``namespace`` (root and
        bubblewrap: a sandbox at the pod's paths, running as the user's
        uid), ``prefix`` (symlinks under a per-server directory, running as
        the hub's uid, nothing enforced) or ``auto`` (namespace when the hub
        is root, prefix when it is not; a root hub that cannot sandbox
        refuses to start servers rather than run them as root).""",
    ).tag(config=True)

    readonly_binds = List(
        Unicode(),
        ["/usr", "/opt"],
        help="""Host directories shown read-only, at the same path, inside a
        namespace server. The Python installation (sys.prefix, base prefix
        and sys.path entries) is added automatically; /bin, /lib and friends
        are copied as symlinks when they are symlinks on the host.""",
    ).tag(config=True)

    log_max_bytes = Integer(
        10 * 1024 * 1024,
        help="""Size past which a server's log is cut to its last quarter,
        checked each time the hub polls the server (poll_interval).""",
    ).tag(config=True)

    @default("cmd")
    def _default_cmd(self):
        # The hub's own interpreter: PATH may not include the venv.
        return [sys.executable, "-m", "jupyterhub.singleuser"]

    @default("interrupt_timeout")
    def _default_interrupt(self):
        return 5

    @default("term_timeout")
    def _default_term(self):
        return 5

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._launch: views.Launch | None = None
        self._log_fd: int | None = None
        self._sandbox_pid: int | None = None

    async def start(self):
        return await self.recorded_start(self._start_process)

    async def _start_process(self):
        self._launch = None
        await self.plan_spawn()  # authorize, plan, apply_plan below
        launch = self._launch
        if self.port == 0:
            self.port = random_port()
        cmd = list(self.cmd) + self.get_args()
        if launch.allow_root:
            cmd.append("--ServerApp.allow_root=True")
        self._log_fd = await asyncio.to_thread(views.open_log, launch.log)
        record = self.server_record
        self.log.info(
            "spawn user=%s server=%s course=%s role=%s isolation=%s log=%s"
            " action=start",
            self.user.name,
            self.name or "-",
            record.course or "-",
            record.role,
            record.backend["isolation"],
            launch.log,
        )
        info_r = info_w = None
        if launch.spec is not None:
            info_r, info_w = os.pipe()  # bwrap tells the sandbox's pid here
            cmd = command(launch.spec, cmd, info_fd=info_w)
        # Popen only forks and execs (no preexec_fn); the server's start-up
        # happens in the child. Its stdout and stderr are its own log, and
        # it inherits no other descriptor of the hub's (close_fds). Keep
        # this on the event loop's thread: bwrap's --die-with-parent fires
        # when the thread that started it ends, not only the hub.
        try:
            self.proc = subprocess.Popen(
                cmd,
                env=self.get_env(),
                cwd=launch.cwd,
                umask=launch.umask,
                stdin=subprocess.DEVNULL,
                stdout=self._log_fd,
                stderr=self._log_fd,
                close_fds=True,
                pass_fds=() if info_w is None else (info_w,),
                start_new_session=True,
            )
        except OSError:
            if info_r is not None:
                os.close(info_r)
            raise
        finally:
            if info_w is not None:
                os.close(info_w)
        self.pid = self.proc.pid
        if info_r is not None:
            self._sandbox_pid = await asyncio.wait_for(
                asyncio.to_thread(read_info, info_r), 30
            )
        await self._wait_listening(self.ip or "127.0.0.1", self.port)
        return (self.ip or "127.0.0.1", self.port)

    async def _wait_listening(self, host: str, port: int) -> None:
        """Return once the server listens (JupyterHub then checks its API),
        or fail with its log if it exits first: a sandbox that could not be
        made, a server that crashed. JupyterHub alone would wait for
        http_timeout and then show no reason."""
        host = "127.0.0.1" if host in ("", "0.0.0.0") else host  # noqa: S104
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(self.start_timeout - 1, 1)
        while loop.time() < deadline:
            status = self.proc.poll()
            if status is not None:
                raise await self._start_failed(status)
            if await _listening(host, port):
                return
            await asyncio.sleep(0.1)

    async def _start_failed(self, status: int):
        log = self._launch.log
        tail = await asyncio.to_thread(views.log_tail, log)
        self.log.error(
            "spawn user=%s server=%s action=start outcome=exited status=%s log=%s\n%s",
            self.user.name,
            self.name or "-",
            status,
            log,
            tail,
        )
        await self.stop(now=True)
        self.start_failure_cause = "crash"  # for SpawnEventsMixin's record
        self.start_failure_reason = f"exited with status {status} while starting"
        output = f" Its last output:\n\n{tail}\n\n" if tail else " It wrote nothing. "
        return user_error(
            500,
            f"Your server exited with status {status} while starting.{output}If"
            " that does not say what to fix, ask the hub operator: the whole"
            f" log is {log} on the hub.",
        )

    async def apply_plan(self, plan, course, role) -> dict:
        """Prepare the server's view of the storage (in a thread)."""
        identity = await self.get_identity()
        mode = await self._isolation_mode()
        if not self.storage_root or not self.servers_dir:
            raise user_error(
                500,
                "The hub is misconfigured: LocalCourseSpawner.storage_root and"
                " servers_dir must be set.",
            )
        try:
            launch = await asyncio.to_thread(self._prepare, plan, identity, mode)
        except (OSError, ValueError) as e:
            self.log.error(
                "spawn user=%s action=prepare outcome=failed: %s", self.user.name, e
            )
            raise user_error(
                500,
                f"Your server's storage could not be prepared: {e}. Ask the hub"
                " operator to check the storage directories.",
            ) from e
        self._launch = launch
        return {"isolation": mode, "server_dir": launch.server_dir}

    async def poll(self):
        status = await super().poll()
        fd = self._log_fd
        # fstat of an open file: no disk access, fine on the event loop.
        too_big = fd is not None and os.fstat(fd).st_size > self.log_max_bytes
        if status is None and too_big:
            copy = os.dup(fd)  # clear_state() may close fd meanwhile
            try:
                await asyncio.to_thread(views.cap_log, copy, self.log_max_bytes)
            finally:
                os.close(copy)
        return status

    async def _signal(self, sig):
        # bwrap's pid 1 leads the sandbox's session, with the server in it.
        # Stop signals go to that group: the server shuts down cleanly and
        # bwrap follows it (pid 1 ignores them). Signalling bwrap itself
        # would kill it, and the server with SIGKILL (--die-with-parent).
        if sig and self._sandbox_pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._sandbox_pid, sig)
            if sig != signal.SIGKILL:
                sig = 0
        return await super()._signal(sig)

    async def stop(self, now=False):
        # poll() clears the state once the process is gone: remember first.
        record = self.server_record
        server_dir = record.backend.get("server_dir") if record else None
        await super().stop(now)
        if server_dir and await self.poll() is not None:
            await asyncio.to_thread(views.remove_view, server_dir, self.servers_dir)

    # --- environment ---------------------------------------------------------------
    def user_env(self, env):
        # Users need no local account: identity comes from the plan.
        launch = self._launch
        env["USER"] = env["LOGNAME"] = self.user.name
        env["SHELL"] = "/bin/bash"
        if launch:
            env["HOME"] = launch.home
        return env

    def get_env(self):
        env = super().get_env()
        launch = self._launch
        if launch is None:
            return env
        env.update(launch.env)
        # Informational only: a local process has no enforced limits.
        for name, value in launch.resources.items():
            if value is not None:
                env[name] = str(value)
        env["JUPYTERHUB_ROOT_DIR"] = launch.root_dir
        if launch.default_url:
            env["JUPYTERHUB_DEFAULT_URL"] = launch.default_url
        bindir = os.path.dirname(sys.executable)
        path = env.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
        if bindir not in path.split(os.pathsep):
            env["PATH"] = bindir + os.pathsep + path
        return env

    # --- state -----------------------------------------------------------------------
    def clear_state(self):
        super().clear_state()
        self._launch = None
        self._sandbox_pid = None
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None

    # --- applying the plan (in a thread: file system work) ---------------------------
    async def _isolation_mode(self) -> str:
        if self.isolation == "prefix" or (
            self.isolation == "auto" and os.geteuid() != 0
        ):
            return "prefix"
        if await namespaces_work():
            return "namespace"
        problem = await asyncio.to_thread(sandbox_problem)
        if self.isolation == "namespace":
            raise user_error(
                500,
                "The hub is misconfigured: LocalCourseSpawner.isolation is"
                f" 'namespace', but servers cannot be sandboxed here: {problem}."
                " Fix that, or set isolation to 'auto' or 'prefix'.",
            )
        # Fail closed: as root, an unsandboxed server runs as root, which
        # would give every user root on this machine.
        self.log.error(
            "isolation=auto: the hub runs as root but servers cannot be"
            " sandboxed here (%s); refusing to start them as root",
            problem,
        )
        raise user_error(
            500,
            "The hub is misconfigured: it runs as root, but servers cannot be"
            f" sandboxed here ({problem}), and starting them unsandboxed would"
            " run them as root. Install bubblewrap (apt-get install"
            " bubblewrap), or set c.LocalCourseSpawner.isolation = 'prefix' to"
            " accept unsandboxed servers (never for real users).",
        )

    def _prepare(self, plan, identity, mode: str) -> views.Launch:
        """Blocking: the server's view of the storage (see views.py)."""
        return views.prepare(
            plan,
            identity,
            mode,
            storage_root=self.storage_root,
            server_dir=os.path.join(
                os.path.abspath(self.servers_dir), self._server_key()
            ),
            servers_dir=self.servers_dir,
            files_root=self.files_root,
            readonly_binds=list(self.readonly_binds),
        )

    def _server_key(self) -> str:
        name = self.name or ""
        if name and not _SERVER_RE.fullmatch(name):
            raise ValueError(
                f"the server name {name!r} cannot be used; choose a name of at"
                " most 63 letters, digits, '.', '_' or '-'"
            )
        return f"{self.user.name}@{name}" if name else self.user.name
