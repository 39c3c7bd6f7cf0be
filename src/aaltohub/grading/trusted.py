"""How the runner starts a submission's nbgrader: never as root.

The course directory, its ``nbgrader_config.py`` and everything below it
are the instructors' (untrusted: they are not the hub's admins). nbgrader
must load that config, so the process that runs nbgrader is the
*grader*: never root. Run as root (the local backend), the runner starts
it in a bubblewrap mount namespace (:mod:`aaltohub.local.sandbox`) as
the grader uid (``--grader-uid``, else the course directory's owner,
else nobody) with the course directory's group as its only group; it
sees the system and this Python read-only, the course directory and a
private home read-write, and nothing else (no /root, no hub state).
In every case it runs ``python -I`` (no cwd or script directory on
sys.path, no PYTHON* variables, no user site) in its private home with a
clean environment. Its nbgrader then starts each notebook's sandbox
itself, unprivileged, in a user namespace (:mod:`.local`).

Not root, the runner cannot switch uids: the grader is the caller. The
kube backend's grader is the caller too (the operator, whose Kubernetes
credentials it needs to create Jobs): see docs/grading.md for what that
leaves open.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile

from ..identity import Identity
from ..local import sandbox
from ..plan import Mount, SpawnPlan

NOBODY = 65534
#: The environment's only variables kept for the kube backend (its client).
KUBE_ENV = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")


def switching(backend: str) -> bool:
    """Whether the grader is another uid than the caller's: root, local."""
    return os.geteuid() == 0 and backend == "local"


def grader_ids(
    course_dir: str, backend: str, uid: int | None = None
) -> tuple[int, int]:
    """(uid, gid) nbgrader runs as; the caller's own unless switching."""
    if not switching(backend):
        return os.geteuid(), os.getegid()
    info = os.stat(course_dir)
    if info.st_gid == 0:
        raise ValueError(
            f"the course directory {course_dir} belongs to group root; the"
            " grader runs with its group, never as root: chgrp it to the"
            " course's group (and make it group-writable)"
        )
    if uid is None:
        uid = info.st_uid if info.st_uid != 0 else NOBODY
    if uid == 0:
        raise ValueError("the grader uid must not be 0: pass another --grader-uid")
    return uid, info.st_gid


def environment(home: str, backend: str) -> dict[str, str]:
    """A clean environment: this Python's scripts first on PATH (nbgrader's
    gradebook runs ``alembic`` from there), HOME the private home; no
    tokens. The kube backend keeps its client's variables and HOME."""
    scripts = os.path.dirname(sys.executable)
    env = {
        "PATH": os.pathsep.join([scripts, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": home,
        "LANG": "C.UTF-8",
        "USER": "grader",
        "LOGNAME": "grader",
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    if backend.startswith("kube"):
        env.update({k: os.environ[k] for k in KUBE_ENV if k in os.environ})
        env["HOME"] = os.environ.get("HOME", home)  # ~/.kube/config
    return env


def private_home(uid: int, gid: int) -> tempfile.TemporaryDirectory:
    """A fresh 0700 directory of the grader: its cwd, HOME and report."""
    home = tempfile.TemporaryDirectory(prefix="aaltohub-grader-")
    if (uid, gid) != (os.geteuid(), os.getegid()):
        os.chown(home.name, uid, gid)
    return home


def _spec(course_dir: str, home: str, uid: int, gid: int) -> dict:
    plan = SpawnPlan(
        mounts=[
            Mount(target=course_dir, sub_path="", read_only=False),
            Mount(target=home, sub_path="", read_only=False),
        ]
    )
    plan.uid, plan.gid = uid, gid
    who = Identity(username="grader", uid=uid, gid=gid, name="aaltohub grader")
    spec = sandbox.build_spec(
        plan=plan,
        identity=who,
        sources={course_dir: course_dir, home: home},
        files_dir="",
        files_root="",
        readonly_binds=["/usr", "/opt"],
        private=[course_dir, home],
        cwd=home,
    )
    # The host's /etc itself (not the server's symlinks to /.host/etc), so
    # that the notebooks' sandboxes nested in this one can be built the same
    # way; read-only, and the grader needs no passwd entry of its own.
    spec["steps"] = [
        s
        for s in spec["steps"]
        if not s["path"].startswith(("/etc/", sandbox.HOST_ETC))
    ]
    spec["steps"].append({"kind": "bind", "source": "/etc", "path": "/etc", "ro": True})
    # The host's /proc, not one of its own: the kernel lets the nested
    # sandboxes mount their own /proc only where a whole one is visible, and
    # bwrap covers parts of a new one. The grader is not root and in a pid
    # namespace of its own: it sees the host's processes as any local user
    # does, and can signal none of them.
    for step in spec["steps"]:
        if step["kind"] == "proc":
            step.update(kind="bind", source="/proc", ro=False)
    return spec


def command(cmd: list[str], course_dir: str, home: str, ids, backend: str):
    """``cmd`` as the grader: in a mount namespace as ``ids`` (uid, gid)
    if switching, else as is."""
    if not switching(backend):
        return cmd
    uid, gid = ids
    return sandbox.command(_spec(course_dir, home, uid, gid), cmd)


_PROBE = (
    "import sys\n"
    "from aaltohub.grading.local import probe\n"
    "problem = probe()\n"
    "print(problem)\n"
    "sys.exit(1 if problem else 0)\n"
)


@functools.cache  # one probe per grader and course directory, per process
def problem(course_dir: str, ids: tuple[int, int]) -> str:
    """Why the grader (``ids``, as :func:`grader_ids` gave them) cannot
    start the local backend's sandboxes, or "": it tries, as grading does."""
    with private_home(*ids) as home:
        cmd = command(
            [sys.executable, "-I", "-c", _PROBE], course_dir, home, ids, "local"
        )
        try:
            done = subprocess.run(
                cmd,
                cwd=home,
                env=environment(home, "local"),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as e:
            return str(e)
    if done.returncode == 0:
        return ""
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"
