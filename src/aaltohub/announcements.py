"""Announcements: hub-wide and per-course notices, with an optional expiry.

One JSON file holds them (``c.Announcements.path``, on the hub's volume).
``aaltohub announce`` writes it from the hub pod; the hub re-reads it when
its modification time changes, so a notice shows without a restart. Writes
take an exclusive lock and replace the file atomically, so two admins
announcing at once lose nothing and a reader never sees half a file.

The text is shown as plain text (escaped) everywhere: an announcement
cannot inject markup into the hub's pages.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from .shared import shared_instance

#: Environment variable the CLI reads for the store's path.
PATH_ENV = "AALTOHUB_ANNOUNCEMENTS"

MAX_TEXT = 1000


class AnnouncementError(ValueError):
    """A bad announcement or store; the message names the fix."""


@dataclass(frozen=True)
class Announcement:
    id: str
    text: str
    course: str = ""  # "" for hub-wide
    created: str = ""  # ISO 8601 UTC
    until: str = ""  # ISO 8601 UTC, "" for no expiry
    author: str = ""

    def expired(self, now: datetime | None = None) -> bool:
        if not self.until:
            return False
        return parse_time(self.until) <= (now or datetime.now(UTC))

    def applies_to(self, course: str | None) -> bool:
        """Hub-wide notices apply everywhere; a course's only to it."""
        return not self.course or self.course == (course or "")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; a time without a zone is taken as UTC."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise AnnouncementError(
            f"{text!r} is not a time; use ISO 8601, e.g. 2026-12-01T18:00"
            " or 2026-12-01T18:00+02:00"
        ) from e
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class AnnouncementStore:
    """The announcements file: read, add, clear."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._cache: tuple[float, list[Announcement]] | None = None

    # --- reading -------------------------------------------------------------------
    def all(self) -> list[Announcement]:
        """Every announcement in the file, expired ones included, oldest first.
        Re-read only when the file's modification time changes."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        if self._cache is not None and self._cache[0] == mtime:
            return list(self._cache[1])
        items = self._read()
        self._cache = (mtime, items)
        return list(items)

    def active(
        self, course: str | None = None, now: datetime | None = None
    ) -> list[Announcement]:
        """Unexpired notices for ``course`` (hub-wide ones included);
        with ``course=None``, the hub-wide ones only."""
        return [a for a in self.all() if not a.expired(now) and a.applies_to(course)]

    def _read(self) -> list[Announcement]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "[]")
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            raise AnnouncementError(
                f"{self.path} is not a readable announcements file ({e});"
                " move it aside and announce again"
            ) from e
        known = {f for f in Announcement.__dataclass_fields__}
        return [
            Announcement(**{k: str(v) for k, v in item.items() if k in known})
            for item in data
            if isinstance(item, dict) and item.get("id") and item.get("text")
        ]

    # --- writing -------------------------------------------------------------------
    def add(
        self,
        text: str,
        course: str = "",
        until: str | datetime | None = None,
        author: str = "",
        now: datetime | None = None,
    ) -> Announcement:
        text = (text or "").strip()
        if not text:
            raise AnnouncementError("an announcement needs a text")
        if len(text) > MAX_TEXT:
            raise AnnouncementError(
                f"the text has {len(text)} characters; keep it under {MAX_TEXT}"
                " and link to a longer page"
            )
        now = now or datetime.now(UTC)
        until_text = ""
        if until:
            when = until if isinstance(until, datetime) else parse_time(until)
            if when <= now:
                raise AnnouncementError(f"--until {iso(when)} is already past")
            until_text = iso(when)
        item = Announcement(
            id=secrets.token_hex(4),
            text=text,
            course=course or "",
            created=iso(now),
            until=until_text,
            author=author,
        )
        with self._locked() as items:
            items.append(item)
        return item

    def clear(self, announcement_id: str) -> Announcement:
        with self._locked() as items:
            for i, item in enumerate(items):
                if item.id == announcement_id:
                    return items.pop(i)
        raise AnnouncementError(
            f"no announcement {announcement_id!r}; `aaltohub announce --list`"
            " shows their ids"
        )

    def prune(self, now: datetime | None = None) -> list[Announcement]:
        """Remove expired announcements; return them."""
        removed: list[Announcement] = []
        with self._locked() as items:
            kept = [a for a in items if not a.expired(now)]
            removed = [a for a in items if a.expired(now)]
            items[:] = kept
        return removed

    @contextmanager
    def _locked(self):
        """Hold the lock, yield the list to change, then write it atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                items = self._read()
                yield items
                self._write(items)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, items: list[Announcement]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".announcements-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump([asdict(a) for a in items], f, indent=1, ensure_ascii=False)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._cache = None


class Announcements(LoggingConfigurable):
    """The hub's announcements file. One per hub config: :func:`announcements`."""

    path = Unicode(
        "",
        help=f"""The announcements file, on the hub's volume, e.g.
        /srv/jupyterhub/announcements.json. Empty: no announcements. The CLI
        (``aaltohub announce``) reads ${PATH_ENV} or its --file option, so
        set both to the same path.""",
    ).tag(config=True)

    @property
    def store(self) -> AnnouncementStore | None:
        if not self.path:
            return None
        if getattr(self, "_store", None) is None or self._store.path != Path(self.path):
            self._store = AnnouncementStore(self.path)
        return self._store

    def active(self, course: str | None = None) -> list[Announcement]:
        """Notices to show; a broken file is logged and shows none."""
        store = self.store
        if store is None:
            return []
        try:
            return store.active(course)
        except AnnouncementError as e:
            self.log.error("announcements: %s", e)
            return []


def announcements(config) -> Announcements:
    """The one Announcements of this hub config."""
    return shared_instance(Announcements, config)
