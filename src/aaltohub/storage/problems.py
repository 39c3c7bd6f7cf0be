"""What ``aaltohub course check`` and ``fix`` report: one Problem per
thing wrong on storage, and the Result of a run."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Problem:
    """One thing wrong on storage; ``str()`` is the one-line report."""

    path: str
    #: missing, mode, owner, group, access, symlink, not-a-directory,
    #: hard-link, submission, error
    kind: str
    message: str
    fixable: bool = True

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "kind": self.kind,
            "message": self.message,
            "fixable": self.fixable,
        }


@dataclass
class Result:
    problems: list[Problem] = field(default_factory=list)
    #: What fix/create did (or, in a dry run, would do), one line each.
    actions: list[str] = field(default_factory=list)
    #: Problems a fix could not repair.
    unfixed: list[Problem] = field(default_factory=list)
    scanned: int = 0

    def extend(self, other: Result) -> None:
        self.problems += other.problems
        self.actions += other.actions
        self.unfixed += other.unfixed
        self.scanned += other.scanned


def octal(bits: int) -> str:
    """Permission bits as operators write them: 2770."""
    return f"{bits:04o}"


def bits_problems(path: str, perm: int, bad: int, rule_why: str) -> list[Problem]:
    labels = []
    if bad & 0o004:
        labels.append("world-readable")
    if bad & 0o002:
        labels.append("world-writable")
    if bad & 0o001 and not bad & 0o006:
        labels.append("accessible to others")
    if bad & 0o220:
        labels.append("writable")
    why = f"; {rule_why}" if rule_why else ""
    return [Problem(path, "access", f"{x} (mode {octal(perm)}){why}") for x in labels]
