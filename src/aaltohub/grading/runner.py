"""Grade collected submissions one by one: which to grade, run, status.

Each submission is one trusted ``nbgrader autograde`` process
(:mod:`.autograde`) whose execute step runs isolated; its exit status and
the isolated run's report give the submission's status: graded, failed
(with the reason) or timed out. A submission whose autograded copy
matches its submitted timestamp is already graded and skipped unless
``force``. Blocking: the ``aaltohub grade`` command calls it.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import trusted
from .limits import GradingLimits
from .outcome import TIMED_OUT, clean

GRADED, FAILED, SKIPPED = "graded", "failed", "skipped"
#: nbgrader's student and assignment ids as this command accepts them.
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
#: nbgrader's own start-up and bookkeeping, on top of the runs' limits.
OVERHEAD = 120
#: The run report's size, at most (a few lines of JSON per notebook).
MAX_REPORT = 1 << 20


@dataclass
class Status:
    """One submission's outcome, as the command prints it."""

    student: str
    status: str
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    score: float | None = None
    max_score: float | None = None

    def to_dict(self) -> dict:
        return {
            "student": self.student,
            "status": self.status,
            "reason": self.reason,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
            "score": self.score,
            "max_score": self.max_score,
        }


def _timestamp(directory: str) -> str | None:
    data = read_regular(os.path.join(directory, "timestamp.txt"), 200)
    return None if data is None else data.decode(errors="replace").strip()


def submissions(course_dir: str, assignment: str, students=()) -> list[str]:
    """Students with a collected submission of ``assignment``, sorted;
    only ``students`` if given (each must have one)."""
    submitted = os.path.join(course_dir, "submitted")
    if students:
        missing = [
            s
            for s in students
            if not ID_RE.fullmatch(s)
            or not os.path.isdir(os.path.join(submitted, s, assignment))
        ]
        if missing:
            raise ValueError(
                f"no collected submission of {assignment} for {', '.join(missing)};"
                " run 'nbgrader collect' first"
            )
        return sorted(set(students))
    try:
        names = os.listdir(submitted)
    except FileNotFoundError:
        return []
    return sorted(
        name
        for name in names
        if ID_RE.fullmatch(name)
        and not os.path.islink(os.path.join(submitted, name))
        and os.path.isdir(os.path.join(submitted, name, assignment))
    )


def is_graded(course_dir: str, assignment: str, student: str) -> bool:
    """An autograded copy of every submitted notebook exists, made from the
    submission collected now (the same timestamp.txt)."""
    graded = os.path.join(course_dir, "autograded", student, assignment)
    submitted = os.path.join(course_dir, "submitted", student, assignment)
    try:
        notebooks = [n for n in os.listdir(submitted) if n.endswith(".ipynb")]
    except OSError:
        return False
    return (
        os.path.isdir(graded)
        and all(os.path.isfile(os.path.join(graded, n)) for n in notebooks)
        and _timestamp(graded) == _timestamp(submitted)
    )


def autograde_command(
    assignment: str, student: str, course_dir: str, limits, backend, report
):
    """The trusted nbgrader of one submission; ``backend`` is ``local`` or
    ``kube:SETTINGS.json``. ``-I``: nothing of the cwd, the environment or
    a user site is imported."""
    backend, _, settings = backend.partition(":")
    extra = [f"--IsolatedExecute.kube_settings={settings}"] if settings else []
    return [
        sys.executable,
        "-I",
        "-m",
        "aaltohub.grading.autograde",
        assignment,
        f"--student={student}",
        f"--course-dir={course_dir}",
        "--force",
        f"--IsolatedExecute.backend={backend}",
        f"--IsolatedExecute.cpu={limits.cpu}",
        f"--IsolatedExecute.memory={limits.memory}",
        f"--IsolatedExecute.pids={limits.pids}",
        f"--IsolatedExecute.timeout={limits.timeout}",
        f"--IsolatedExecute.cell_timeout={limits.cell_timeout}",
        f"--IsolatedExecute.report_path={report}",
        *extra,
    ]


def trusted_env() -> dict[str, str]:
    """The caller's environment with this Python's scripts first on PATH
    (nbgrader runs ``alembic`` from there), for running nbgrader as the
    caller (the tests, the benchmark); grading uses :mod:`.trusted`'s."""
    scripts = os.path.dirname(sys.executable)
    return {**os.environ, "PATH": scripts + os.pathsep + os.environ.get("PATH", "")}


def read_regular(path: str, limit: int) -> bytes | None:
    """At most ``limit`` bytes of ``path`` if it is a regular file, else
    None: the grader (or an instructor) made it, so never follow a link
    nor block on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read(limit)


def _records(report: str) -> list[dict]:
    """The report's JSON lines (written by the grader: untrusted shape)."""
    records = []
    for line in (read_regular(report, MAX_REPORT) or b"").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _nbgrader_error(log: str) -> str:
    """The last error nbgrader logged, for a failure without a report."""
    errors = [line for line in log.splitlines() if "ERROR" in line or "error:" in line]
    return clean(errors[-1] if errors else (log.strip().splitlines() or [""])[-1])


def _status_of(student, returncode, log, records, started) -> Status:
    seconds = time.monotonic() - started
    notes = [n for r in records for n in r.get("notes", [])]
    failures = [r for r in records if r.get("status") != "executed"]
    if returncode == 0 and not failures:
        scores = [r for r in records if "score" in r] or [{}]
        return Status(
            student,
            GRADED,
            notes=notes,
            seconds=seconds,
            score=scores[-1].get("score"),
            max_score=scores[-1].get("max_score"),
        )
    if failures:
        first = failures[0]
        status = TIMED_OUT if first["status"] == TIMED_OUT else FAILED
        where = f"{first.get('notebook')}: " if first.get("notebook") else ""
        return Status(
            student, status, where + clean(first.get("reason", "")), notes, seconds
        )
    return Status(student, FAILED, _nbgrader_error(log), notes, seconds)


def grade_one(
    course_dir, assignment, student, limits: GradingLimits, backend, grader_uid=None
) -> Status:
    """Autograde one submission; never raises for the submission's sake."""
    started = time.monotonic()
    notebooks = len(
        [
            n
            for n in os.listdir(
                os.path.join(course_dir, "submitted", student, assignment)
            )
            if n.endswith(".ipynb")
        ]
    )
    deadline = limits.timeout * max(1, notebooks) + OVERHEAD
    ids = trusted.grader_ids(course_dir, backend, grader_uid)
    with trusted.private_home(*ids) as home:
        report = os.path.join(home, "report.jsonl")
        cmd = autograde_command(
            assignment, student, course_dir, limits, backend, report
        )
        try:
            done = subprocess.run(
                trusted.command(cmd, course_dir, home, ids, backend),
                cwd=home,
                env=trusted.environment(home, backend),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=deadline,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Status(
                student, TIMED_OUT, f"nbgrader still running after {deadline} s"
            )
        records = _records(report)
    return _status_of(
        student, done.returncode, done.stderr + done.stdout, records, started
    )


def grade(
    course_dir: str,
    assignment: str,
    *,
    students=(),
    limits: GradingLimits,
    backend: str = "local",
    force: bool = False,
    jobs: int = 1,
    grader_uid: int | None = None,
    on_status: Callable[[int, int, Status], None] = lambda i, n, s: None,
) -> list[Status]:
    """Grade ``assignment``'s submissions (all, or ``students``), ``jobs``
    at a time, as the grader (:mod:`.trusted`); ``on_status`` hears of
    each as it ends (one at a time)."""
    if not ID_RE.fullmatch(assignment):
        raise ValueError(f"{assignment!r} is not an nbgrader assignment name")
    trusted.grader_ids(course_dir, backend, grader_uid)  # refuse early
    names = submissions(course_dir, assignment, students)
    done: dict[str, Status] = {}
    lock = threading.Lock()

    def one(student: str) -> None:
        if not force and is_graded(course_dir, assignment, student):
            status = Status(student, SKIPPED, "already graded (use --force to regrade)")
        else:
            status = grade_one(
                course_dir, assignment, student, limits, backend, grader_uid
            )
        with lock:
            done[student] = status
            on_status(len(done), len(names), status)

    # Threads only wait for processes: each submission is its own nbgrader.
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(one, student) for student in names]:
            future.result()
    return [done[student] for student in names]
