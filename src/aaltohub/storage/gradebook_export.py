"""Export a course's nbgrader gradebook to CSV with nbgrader's own ``export``.

nbgrader reads ``nbgrader_config.py`` from the course directory, which
instructors write: it is Python, and this runs as root. So the export never
looks at the course directory: the gradebook (a regular file, links
refused) is copied into a private temporary directory, and nbgrader runs
there with that directory as its course root and a private Jupyter config
directory, with a timeout and an argument list (no shell). The CSV is then
put in place under a fresh name and renamed. Blocking: CLI only.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

GRADEBOOK = "gradebook.db"
EXPORT_NAME = "gradebook-export.csv"
TIMEOUT = 600


class ExportError(Exception):
    """nbgrader export failed; str() has its output."""


def nbgrader_command() -> list[str]:
    script = Path(sys.executable).parent / "nbgrader"
    if script.exists():
        return [str(script)]
    found = shutil.which("nbgrader")
    if found:
        return [found]
    raise ExportError(
        "nbgrader is not installed here: pip install nbgrader (or aaltohub[nbgrader])"
    )


def needs_export(files_dir: str) -> bool:
    """True when there is a gradebook and no export newer than it."""
    db = os.path.join(files_dir, GRADEBOOK)
    out = os.path.join(files_dir, EXPORT_NAME)
    if not os.path.isfile(db) or os.path.islink(db):
        return False
    try:
        return os.stat(out).st_mtime < os.stat(db).st_mtime
    except FileNotFoundError:
        return True


def _copy_gradebook(db: str, work: str) -> str:
    """Copy the gradebook (a regular file, not a link) into ``work``."""
    # O_NONBLOCK: a FIFO planted under the gradebook's name must not hang us.
    fd = os.open(db, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(src.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            raise ExportError(f"{db} is not a plain file (a link or a special file)")
        os.set_blocking(src.fileno(), True)
        copy = os.path.join(work, GRADEBOOK)
        with open(copy, "xb") as out:
            shutil.copyfileobj(src, out)
    return copy


def export_gradebook(files_dir: str, course_id: str, gid: int | None) -> str:
    """Write ``files_dir/gradebook-export.csv`` (mode 0640, course group);
    return its path."""
    with tempfile.TemporaryDirectory(prefix="aaltohub-export-") as work:
        try:
            db = _copy_gradebook(os.path.join(files_dir, GRADEBOOK), work)
        except OSError as e:
            raise ExportError(f"cannot read the gradebook: {e}") from None
        csv = os.path.join(work, "grades.csv")
        argv = [
            *nbgrader_command(),
            "export",
            f"--to={csv}",
            f"--CourseDirectory.root={work}",
            f"--CourseDirectory.course_id={course_id}",
            f"--CourseDirectory.db_url=sqlite:///{db}",
        ]
        # No JUPYTER_CONFIG_PATH and a private config dir: only the
        # deployer's system-wide Jupyter config is read, never the course's.
        env = {
            # nbgrader runs alembic from its own environment
            "PATH": os.pathsep.join([os.path.dirname(argv[0]), os.defpath]),
            "HOME": work,
            "JUPYTER_CONFIG_DIR": work,
            "JUPYTER_DATA_DIR": work,
            "JUPYTER_RUNTIME_DIR": work,
            "LANG": "C.UTF-8",
        }
        try:
            proc = subprocess.run(
                argv,
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ExportError(f"nbgrader export took over {TIMEOUT} s") from None
        if proc.returncode != 0 or not os.path.isfile(csv):
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise ExportError("nbgrader export failed: " + " | ".join(tail))
        return _install(csv, files_dir, gid)


def _install(csv: str, files_dir: str, gid: int | None) -> str:
    # Instructors can write in files_dir: a fresh O_EXCL name, never a
    # name they might have planted as a link; mode and group set on the
    # open descriptor (the name may be swapped for a link meanwhile), then
    # a rename over dest.
    fd, tmp = tempfile.mkstemp(dir=files_dir, prefix=".gradebook-export-")
    try:
        with os.fdopen(fd, "wb") as out, open(csv, "rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fchmod(out.fileno(), 0o640)
            if os.geteuid() == 0 and gid is not None:
                os.fchown(out.fileno(), 0, gid)
        dest = os.path.join(files_dir, EXPORT_NAME)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
