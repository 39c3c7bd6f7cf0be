"""Checks shared by the course file's own keys and its kubespawner_override:
the error type, short value display, numbers and memory sizes."""

from __future__ import annotations

import difflib
import re
import reprlib

# A memory quantity as Kubernetes and KubeSpawner accept it: 512M, 2Gi, 1.5G.
#: Memory sizes in course files, read as JupyterHub reads mem_limit and
#: mem_guarantee (its ByteSpecification): a byte count, or a number with
#: K, M, G or T, each a power of 1024. Kubernetes' "512Mi" is refused here,
#: because JupyterHub would refuse it at every spawn of the course.
MEM_RE = re.compile(r"[0-9]+(\.[0-9]+)?[KMGT]")
MEM_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}

# Values in messages are shortened: a course file may hold a huge or deeply
# nested value, and the full repr() would flood the log (or recurse too deep).
SHORT_REPR = reprlib.Repr()
SHORT_REPR.maxstring = SHORT_REPR.maxother = 60
SHORT_REPR.maxlevel = 3


def show(value) -> str:
    """A value, shortened for a message (it may be huge or deeply nested)."""
    return SHORT_REPR.repr(value)


class CourseError(ValueError):
    """A course file is invalid; str() is the operator-facing message.

    ``problems`` lists each problem found (validation goes on after the
    first, so an editor sees every mistake in one run).
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


def combine(where: str, problems: list[str]) -> CourseError:
    """One CourseError for all ``problems`` of one file, on one line:
    ``course file x.yaml: P`` for one, numbered for several."""
    if len(problems) == 1:
        return CourseError(f"{where}: {problems[0]}", problems)
    listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
    return CourseError(f"{where}: {len(problems)} problems: {listed}", problems)


def number(value, key, what):
    if value is None:
        return None
    # 0 <= value < inf also refuses NaN and infinity (int(inf) would raise).
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value < float("inf")
    ):
        raise CourseError(f"{key}: '{what}' must be a non-negative number")
    return value


def memory(value, key, what):
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and MEM_RE.fullmatch(value):
        return value
    hint = ""
    if isinstance(value, str) and re.fullmatch(r"[0-9.]+[KMGT]i", value):
        hint = f" (write {value[:-1]}: JupyterHub's sizes are already powers of 1024)"
    raise CourseError(
        f"{key}: '{what}' must be bytes or a size such as 2G or 512M{hint}"
    )


def memory_bytes(value: str | int) -> int:
    """A size accepted by :func:`memory`, in bytes (1G = 2**30)."""
    if isinstance(value, int):
        return value
    return int(float(value[:-1]) * MEM_UNITS[value[-1]])


def unknown_key(key, allowed, where: str) -> str:
    """The message for a key not in ``allowed``, with a guess."""
    hint = difflib.get_close_matches(str(key), list(allowed), n=1)
    suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
    return f"key '{where + '.' if where else ''}{key}' is unknown{suggestion}"


def reject_unknown(data: dict, allowed, where: str) -> None:
    """CourseError naming the first key not in ``allowed``, with a guess."""
    for key in data:
        if key not in allowed:
            raise CourseError(unknown_key(key, allowed, where))
