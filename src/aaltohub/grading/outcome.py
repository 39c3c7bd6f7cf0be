"""What one isolated run gives back, and how its reasons are shown.

Pure data shared by the backends, the nbgrader preprocessor and the
runner. Every text in it may come from student code, so :func:`clean`
makes it safe to print on an instructor's terminal.
"""

from __future__ import annotations

from dataclasses import dataclass

EXECUTED = "executed"
FAILED = "failed"
TIMED_OUT = "timed out"

#: Errors in a graded notebook's outputs that mean a limit was hit.
LIMIT_ERRORS = {
    "MemoryError": "memory limit",
    "BlockingIOError": "process limit (or a blocking call)",
    "CellTimeoutError": "cell time limit",
    "DeadKernelError": "the kernel died",
    "PermissionError": "a file outside the submission's scratch",
    "ConnectionRefusedError": "no network",
}


def clean(text: str, limit: int = 300) -> str:
    """``text`` as one printable line of at most ``limit`` characters:
    control characters (terminal escapes) become spaces."""
    printable = "".join(c if c.isprintable() else " " for c in str(text))
    line = " ".join(printable.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(frozen=True)
class RunResult:
    """One isolated execution: its status, the executed notebook's JSON
    (only when executed), and why it failed, in words."""

    status: str
    notebook: str | None = None
    reason: str = ""

    def to_dict(self) -> dict:
        return {"status": self.status, "reason": clean(self.reason)}
