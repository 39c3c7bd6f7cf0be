"""The local backend: one notebook executed in the project's bubblewrap
sandbox (:mod:`aaltohub.local.sandbox`), for the demo and small installs.

The sandbox has no network (its own, empty net namespace), its own pid
namespace, and sees the system's programs read-only plus one read-only
directory: this submission's files and the notebook to execute. The only
writable places are size-limited tmpfs (its working directory and /tmp),
gone with it. Limits are rlimits set by ``prlimit`` inside the sandbox:
address space per process, processes, CPU seconds, file size. The
executed notebook comes back on a pipe, read up to a size limit.

Runs unprivileged: the grader (never root, see :mod:`.runner`) starts
bwrap with a user namespace that maps the run's uid to the grader's own
(:func:`probe` checks that this works here). So RLIMIT_NPROC counts the
grader uid's processes: runs graded at the same time share the limit.
Blocking: the grader's nbgrader calls it, never an event loop.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading

from ..identity import Identity
from ..local import sandbox
from ..plan import Mount, SpawnPlan
from .limits import SCRATCH_BYTES, UID_BASE, UID_SPAN, GradingLimits
from .outcome import EXECUTED, FAILED, TIMED_OUT, RunResult, clean

INPUT = "/grading/in"
WORK = "/grading/work"
#: The executed notebook may be at most this large (outputs included).
MAX_NOTEBOOK = 64 * 2**20
#: A submission's files copied into the sandbox, at most.
MAX_FILES = 512 * 2**20
ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORK,
    "LANG": "C.UTF-8",
    "NBGRADER_EXECUTION": "autograde",
    "JUPYTER_RUNTIME_DIR": "/tmp/runtime",  # noqa: S108 (the sandbox's own tmpfs)
    "IPYTHONDIR": "/tmp/ipython",  # noqa: S108
    "MPLCONFIGDIR": "/tmp/matplotlib",  # noqa: S108
    "JUPYTER_PLATFORM_DIRS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}

#: The sandbox's processes would be root on the host (the user namespace
#: maps them to their starter); the runner never starts nbgrader as root.
ROOT = "refusing to start a grading sandbox as root: run it as the grader uid"


class FilesTooLarge(ValueError):
    pass


def copy_files(source: str, target: str, limit: int = MAX_FILES) -> None:
    """Regular files and directories of ``source`` (never a symlink's
    target) into ``target``, readable by the sandbox's uid."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(source):
        rel = os.path.relpath(dirpath, source)
        os.makedirs(os.path.join(target, rel), 0o755, exist_ok=True)
        dirnames[:] = [
            d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))
        ]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            total += os.path.getsize(path)
            if total > limit:
                raise FilesTooLarge(f"the submission's files exceed {limit >> 20} MiB")
            dest = os.path.join(target, rel, name)
            shutil.copyfile(path, dest)
            os.chmod(dest, 0o644)


def spec_for(
    input_dir: str, limits: GradingLimits, uid: int, private: list[str]
) -> dict:
    """The sandbox of one run: sandbox.build_spec with one read-only mount
    and no network, plus size-limited tmpfs for its working dir and /tmp."""
    plan = SpawnPlan(mounts=[Mount(target=INPUT, sub_path="", read_only=True)])
    plan.uid = plan.gid = uid
    who = Identity(username="grader", uid=uid, gid=uid, name="aaltohub grading")
    spec = sandbox.build_spec(
        plan=plan,
        identity=who,
        sources={INPUT: input_dir},
        files_dir="",
        files_root="",
        readonly_binds=["/usr", "/opt"],
        private=private,
        cwd=WORK,
        share_net=False,
    )
    # The sandbox's own /tmp is a size-limited tmpfs. It takes the place of
    # the empty /tmp that build_spec makes *before* binding Python: a venv
    # below /tmp (a CI clone in /tmp/...) stays visible on top of it.
    scratch = {"kind": "tmpfs", "mode": 0o1777, "size": SCRATCH_BYTES}
    for i, step in enumerate(spec["steps"]):
        if step["kind"] == "dir" and step["path"] == "/tmp":  # noqa: S108
            spec["steps"][i] = {**scratch, "path": "/tmp"}  # noqa: S108
    spec["steps"].append({**scratch, "path": WORK})
    spec["userns"] = True  # started by the unprivileged grader
    spec["groups"] = []
    return spec


def probe() -> str:
    """Why this process cannot start a grading sandbox, or "" if it can
    (the runner asks the grader: :func:`.trusted.problem`)."""
    if os.geteuid() == 0:
        return ROOT
    try:
        with tempfile.TemporaryDirectory(prefix="aaltohub-probe-") as parent:
            os.chmod(parent, 0o755)  # noqa: S103 (only passwd, group and nothing)
            input_dir = os.path.join(parent, "in")
            os.mkdir(input_dir, 0o755)
            spec = spec_for(input_dir, GradingLimits(), UID_BASE, [parent])
            sandbox.save(spec, parent)
            cmd = sandbox.command(spec, limited(GradingLimits(), ["true"]))
            done = subprocess.run(
                cmd, capture_output=True, timeout=60, check=False, env=ENV
            )
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        return str(e)
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip()
        return f"bubblewrap cannot make an unprivileged sandbox here: {error}"
    return ""


def limited(limits: GradingLimits, cmd: list[str]) -> list[str]:
    """``cmd`` under ``prlimit``: run inside the sandbox as the run's uid,
    so the limits bind the worker, its kernel and all their children."""
    prlimit = shutil.which("prlimit") or "/usr/bin/prlimit"
    cpu_seconds = max(1, int(limits.cpu * limits.timeout))
    return [
        prlimit,
        f"--as={limits.memory}",
        f"--nproc={limits.pids}",
        f"--cpu={cpu_seconds}",
        f"--fsize={SCRATCH_BYTES}",
        "--core=0",
        "--nofile=1024",
        "--",
        *cmd,
    ]


def _drain(stream, limit: int, out: list) -> None:
    """Read ``stream`` to EOF keeping at most ``limit`` bytes (a flood of
    output must not fill the grader's memory); out = [bytes, overflowed]."""
    kept, over = bytearray(), False
    while chunk := stream.read(65536):
        if len(kept) + len(chunk) > limit:
            over = True
        else:
            kept += chunk
    out[:] = [bytes(kept), over]


def _run(cmd: list[str], timeout: float) -> tuple[int | None, bytes, bool, bytes]:
    """(exit status or None on timeout, stdout, stdout overflowed, stderr)."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
        start_new_session=True,
    )
    out: list = [b"", False]
    err: list = [b"", False]
    readers = [
        threading.Thread(target=_drain, args=(proc.stdout, MAX_NOTEBOOK, out)),
        threading.Thread(target=_drain, args=(proc.stderr, 65536, err)),
    ]
    for reader in readers:
        reader.start()
    try:
        status: int | None = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        status = None
        proc.kill()  # bwrap: --die-with-parent takes the whole pid namespace
        proc.wait()
    for reader in readers:
        reader.join(timeout=10)
    return status, out[0], out[1], err[0]


def execute(
    notebook: str, files_dir: str, limits: GradingLimits, private=()
) -> RunResult:
    """Execute ``notebook`` (JSON text) with ``files_dir``'s files around it."""
    if os.geteuid() == 0:
        return RunResult(FAILED, reason=ROOT)
    uid = UID_BASE + secrets.randbelow(UID_SPAN)
    with tempfile.TemporaryDirectory(prefix="aaltohub-grade-") as parent:
        input_dir = os.path.join(parent, "in")
        try:
            copy_files(files_dir, os.path.join(input_dir, "files"))
        except FilesTooLarge as e:
            return RunResult(FAILED, reason=str(e))
        os.chmod(input_dir, 0o755)  # noqa: S103 (its parent is 0700: only the sandbox)
        with open(
            os.path.join(input_dir, "notebook.ipynb"), "w", encoding="utf-8"
        ) as f:
            f.write(notebook)
        os.chmod(os.path.join(input_dir, "notebook.ipynb"), 0o644)
        spec = spec_for(input_dir, limits, uid, [parent, files_dir, *private])
        sandbox.save(spec, parent)  # its passwd and group, outside the input
        worker = [sys.executable, "-m", "aaltohub.grading.worker"]
        worker += [
            f"{INPUT}/notebook.ipynb",
            "-",
            str(limits.cell_timeout),
            f"{INPUT}/files",
        ]
        cmd = sandbox.command(spec, limited(limits, worker))
        status, stdout, overflowed, stderr = _run(cmd, limits.timeout)
    return judge(status, stdout, overflowed, stderr, limits)


def judge(status, stdout: bytes, overflowed: bool, stderr: bytes, limits) -> RunResult:
    """The run's result from how the sandbox ended."""
    if status is None:
        return RunResult(TIMED_OUT, reason=f"still running after {limits.timeout} s")
    if overflowed:
        return RunResult(FAILED, reason=f"output larger than {MAX_NOTEBOOK >> 20} MiB")
    if status != 0:
        lines = stderr.decode(errors="replace").strip().splitlines()
        why = clean(lines[-1]) if lines else f"exit status {status}"
        return RunResult(FAILED, reason=why)
    return RunResult(EXECUTED, notebook=stdout.decode(errors="replace"))
