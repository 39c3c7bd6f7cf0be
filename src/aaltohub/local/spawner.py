"""LocalCourseSpawner: a course server as a local process.

``LocalCourseSpawner`` applies that plan to a local process. Each server
gets its own view of the storage (built by :mod:`aaltohub.local.views`), in
one of two ways:

``namespace`` (the hub runs as root)
    A private mount namespace whose root is a fresh tmpfs holding the
    system and Python directories (read-only) and the plan's mounts as bind
    mounts at the pod's paths: /notebooks, /course, /coursedata,
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
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port
from traitlets import Enum, List, Unicode, default

from ..spawn import user_error
from . import views
from .profiles_form import CourseProfilesMixin
from .sandbox import MODULE as sandbox_module
from .sandbox import namespaces_work, read_status

_SERVER_RE = re.compile(r"[A-Za-z0-9._-]{1,63}")


class LocalCourseSpawner(CourseProfilesMixin, LocalProcessSpawner):
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
        server, removed when it stops). Keep it outside storage_root.""",
    ).tag(config=True)

    isolation = Enum(
        ["auto", "namespace", "prefix"],
        "auto",
        help="""How a server sees its storage: ``namespace`` (root only: a
        private mount namespace at the pod's paths, running as the user's
        uid), ``prefix`` (symlinks under a per-server directory, running as
        the hub's uid, nothing enforced) or ``auto`` (namespace when the hub
        is root and mount namespaces work, else prefix).""",
    ).tag(config=True)

    readonly_binds = List(
        Unicode(),
        ["/usr", "/opt"],
        help="""Host directories shown read-only, at the same path, inside a
        namespace server. The Python installation (sys.prefix, base prefix
        and sys.path entries) is added automatically; /bin, /lib and friends
        are copied as symlinks when they are symlinks on the host.""",
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

    async def start(self):
        self._launch = None
        await self.plan_spawn()  # authorize, plan, apply_plan below
        launch = self._launch
        record = self.server_record
        if self.port == 0:
            self.port = random_port()
        env = self.get_env()
        cmd = list(self.cmd) + self.get_args()
        if launch.allow_root:
            cmd.append("--ServerApp.allow_root=True")
        umask, cwd = launch.umask, launch.cwd
        pass_fds: tuple[int, ...] = ()
        status_r = status_w = None
        if launch.spec:
            # The sandbox writes why it failed to this pipe; exec closes it.
            status_r, status_w = os.pipe()
            pass_fds = (status_w,)
            sandbox = [sys.executable, "-m", sandbox_module]
            cmd = [*sandbox, f"--status-fd={status_w}", launch.spec, *cmd]

        def preexec():
            os.umask(umask)

        self.log.info(
            "spawn user=%s server=%s course=%s role=%s isolation=%s action=start",
            self.user.name,
            self.name or "-",
            record.course or "-",
            record.role,
            record.backend["isolation"],
        )
        # Popen only forks and execs; the server's own start-up happens in
        # the child, so this does not hold up the event loop.
        try:
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=cwd,
                preexec_fn=preexec,
                start_new_session=True,
                pass_fds=pass_fds,
            )
        finally:
            if status_w is not None:
                os.close(status_w)
        self.pid = self.proc.pid
        if status_r is not None:
            error = await asyncio.wait_for(asyncio.to_thread(read_status, status_r), 30)
            if not error and self.proc.poll() is not None:
                error = f"its process exited with status {self.proc.returncode}"
            if error:
                await self.stop(now=True)
                raise user_error(
                    500,
                    f"Your server could not be started: {error}. The hub operator"
                    " can find the details in the hub log.",
                )
        return (self.ip or "127.0.0.1", self.port)

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

    # --- applying the plan (in a thread: file system work) ---------------------------
    async def _isolation_mode(self) -> str:
        if self.isolation != "auto":
            return self.isolation
        if os.geteuid() != 0:
            return "prefix"
        works = await namespaces_work()
        if not works:
            self.log.warning(
                "isolation=auto: mount namespaces do not work here; servers run"
                " as root in prefix mode, with NO read-only or user separation"
            )
        return "namespace" if works else "prefix"

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
