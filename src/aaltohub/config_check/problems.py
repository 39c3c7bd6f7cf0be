"""What a configuration check reports: a :class:`Problem` and its severity.

Every check in this package returns :class:`Problem` values (the key, what
is wrong, the fix) so that ``aaltohub check-config`` and the hub's start
print the same words; :class:`ConfigProblems` is what the hub raises when
any of them is an error. ``NAME_FIX`` and ``TRAIT_FIX`` are the fixes that
several checks share (a class that cannot be loaded, a setting traitlets
refuses).
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration: the key, what, and the fix."""

    key: str
    message: str
    fix: str
    severity: str = ERROR

    def __str__(self) -> str:
        return f"{self.key} {self.message}. Fix: {self.fix}"


class ConfigProblems(ValueError):
    """The hub's configuration has errors; the message lists each one."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"the hub's configuration has {len(problems)} error(s); fix them and"
            f" restart (`aaltohub check-config` shows the same list):\n{lines}"
        )


NAME_FIX = (
    "use an installed entry-point name (e.g. 'course', 'aaltohub-ldap') or a"
    " full import path, and check the package is installed in the hub image"
)
TRAIT_FIX = "correct the value named in the message"
