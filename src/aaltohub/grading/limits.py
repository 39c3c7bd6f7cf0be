"""The course file's ``grading:`` section: limits of one isolated run.

Course files are untrusted input, so every value is bounded: a course may
lower a limit freely and raise it only up to ``MAXIMUM``. A missing key
takes the safe default. Pure: no I/O, no nbgrader.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..course_values import CourseError, memory, memory_bytes, number, reject_unknown

KEYS = ("cpu", "memory", "pids", "timeout", "cell_timeout")
#: Size of a run's writable scratch (working directory, /tmp), bytes, each;
#: also its largest file (RLIMIT_FSIZE locally). Both backends use it.
SCRATCH_BYTES = 256 * 2**20
#: Unused uids a run takes its own from (random, one per run; both backends).
UID_BASE, UID_SPAN = 2_000_000_000, 10_000_000


@dataclass(frozen=True)
class GradingLimits:
    """What one submission's isolated run may use."""

    #: CPU cores (Kubernetes limit; locally, CPU seconds = cpu * timeout).
    cpu: float = 1.0
    #: Memory in bytes (a cgroup or RLIMIT_AS locally, the Job's limit).
    memory: int = 1024 * 2**20
    #: Processes and threads (RLIMIT_NPROC of the run's own uid; pids cgroup).
    pids: int = 128
    #: Wall-clock seconds for the whole submission; then it is killed.
    timeout: int = 300
    #: Seconds one cell may run (nbgrader's ``Execute.timeout``).
    cell_timeout: int = 60


DEFAULT = GradingLimits()
#: The most a course file may ask for; a deployer changes these in code.
MAXIMUM = GradingLimits(
    cpu=4.0, memory=8 * 2**30, pids=1024, timeout=3600, cell_timeout=3600
)
_MINIMUM = GradingLimits(cpu=0.1, memory=64 * 2**20, pids=16, timeout=5, cell_timeout=1)


def _bounded(name: str, value, where: str):
    low, high = getattr(_MINIMUM, name), getattr(MAXIMUM, name)
    if not low <= value <= high:
        raise CourseError(f"{where}: '{name}' must be between {low} and {high}")
    return value


def parse_grading(value, key: str = "grading") -> GradingLimits:
    """The validated ``grading:`` mapping of a course file."""
    if value is None:
        return DEFAULT
    if not isinstance(value, dict):
        raise CourseError(f"key '{key}' must be a mapping of {list(KEYS)}")
    reject_unknown(value, KEYS, key)
    where = f"key '{key}'"
    out = {}
    for name in ("cpu", "pids", "timeout", "cell_timeout"):
        given = number(value.get(name), where, name)
        if given is not None:
            given = float(given) if name == "cpu" else int(given)
            out[name] = _bounded(name, given, where)
    size = memory(value.get("memory"), where, "memory")
    if size is not None:
        out["memory"] = _bounded("memory", memory_bytes(size), where)
    return GradingLimits(**out)
