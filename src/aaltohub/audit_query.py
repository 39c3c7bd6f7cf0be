"""Reading the audit log back: the records of a file and its rotated files,
filtered, for ``aaltohub audit``.

Records are read oldest first (``audit.log.N`` ... ``audit.log.1``,
``audit.log``). A line that is not a record (a torn write, an edited file,
another program's output) is counted and skipped, never fatal: an audit
trail with one bad line must still answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .audit import FIELDS, rotated_files

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO time (``2026-11-26T10:00``, ``2026-11-26``; UTC unless it says
    otherwise) or a time ago (``90s``, ``30m``, ``2h``, ``3d``, ``1w``).
    Raises ValueError with the accepted forms."""
    text = text.strip()
    now = now or datetime.now(UTC)
    relative = _RELATIVE.fullmatch(text)
    if relative:
        seconds = float(relative.group(1)) * _UNITS[relative.group(2)]
        return now - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give an ISO time such as"
            " 2026-11-26T10:00 (UTC) or a time ago such as 30m, 2h, 3d"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def record_time(record: dict) -> datetime | None:
    try:
        when = datetime.fromisoformat(
            str(record.get("time", "")).replace("Z", "+00:00")
        )
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass
class Query:
    """What ``aaltohub audit`` asks for; empty fields match everything."""

    user: str = ""  # the actor or the target (a server "alice/x" is alice's)
    course: str = ""
    action: str = ""
    outcome: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, record: dict) -> bool:
        if self.user and not _is_user(record, self.user):
            return False
        for name in ("course", "action", "outcome"):
            wanted = getattr(self, name)
            if wanted and record.get(name) != wanted:
                return False
        if self.since or self.until:
            when = record_time(record)
            if when is None:
                return False
            if self.since and when < self.since:
                return False
            if self.until and when > self.until:
                return False
        return True


def _is_user(record: dict, user: str) -> bool:
    target = str(record.get("target", ""))
    return (
        record.get("actor") == user or target == user or target.startswith(user + "/")
    )


@dataclass
class Reader:
    """Reads records of one log and its rotated files; counts bad lines."""

    path: str
    corrupt: int = 0
    files: list[Path] = field(default_factory=list)

    def records(self, query: Query | None = None) -> Iterator[dict]:
        self.files = rotated_files(self.path)
        for path in self.files:
            yield from self._read(path, query)

    def _read(self, path: Path, query: Query | None) -> Iterator[dict]:
        try:
            handle = path.open(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return  # rotated away while we read
        with handle:
            for line in handle:
                if not line.strip():
                    continue
                record = _parse(line)
                if record is None:
                    self.corrupt += 1
                elif query is None or query.matches(record):
                    yield record


def _parse(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("action"), str):
        return None
    return {k: str(record.get(k) or "") for k in FIELDS}


#: Columns of the table, with the widest a column may get.
_COLUMNS = (
    ("time", 24),
    ("actor", 20),
    ("action", 12),
    ("target", 36),
    ("course", 16),
    ("outcome", 8),
    ("reason", 60),
)


def format_table(records: list[dict]) -> str:
    """A plain-text table, one line per record (long values are cut)."""

    def cell(value: str, width: int) -> str:
        # Records hold untrusted text (a failed login's typed username):
        # no escape sequence, carriage return or newline reaches the terminal.
        value = "".join(c if c.isprintable() else "\ufffd" for c in str(value))
        return value if len(value) <= width else value[: width - 1] + "…"

    rows = [[cell(r[name], width) for name, width in _COLUMNS] for r in records]
    header = [name for name, _ in _COLUMNS]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)
