"""Quota sources: how full a user's home and a course's directories are.

* :class:`ReportFileQuota` reads a report the storage side writes, e.g. from
  cron on the NFS server::

      repquota -ug /export > /export/.quota/report.tmp && mv ... report.txt
      xfs_quota -x -c 'report -ug -b' /export > ... (or 'report -h')

  Both tools' formats are parsed (plain and human-readable units, grace
  columns, ``#1234`` rows for ids without a name; the parsers are in
  :mod:`.quota_reports`). The file is parsed in a thread and again only
  when its mtime or size changes.
* :class:`StatvfsQuota` asks the file system of a per-user volume (each home
  its own filesystem, e.g. a PVC or an NFS export per user).
* :class:`NoQuota` knows nothing, so nobody is warned.

Every source is async and does its file I/O in threads with a timeout: a
hung NFS mount must not stall the hub.
"""

from __future__ import annotations

import asyncio
import glob
import os
import time
from concurrent.futures import ThreadPoolExecutor

from traitlets import Enum, Float, Unicode
from traitlets.config import LoggingConfigurable

from .. import metrics
from ..course import COURSE_GROUP_TEMPLATE, Course
from ..identity.base import Identity
from .paths import uid_last2digits
from .quota_reports import (
    KIB,
    ReportFormatError,
    ReportRow,
    Usage,
    parse_report,
    parse_repquota,
    parse_xfs_quota,
)

__all__ = [
    "FREE_SPACE_HELP",
    "KIB",
    "STALE_REPORT_AFTER",
    "NoQuota",
    "QuotaSource",
    "ReportFileQuota",
    "ReportFormatError",
    "ReportRow",
    "StatvfsQuota",
    "Usage",
    "human_bytes",
    "parse_report",
    "parse_repquota",
    "parse_xfs_quota",
    "warning_message",
]

#: A quota report older than this (seconds) is stale: the storage side has
#: probably stopped writing it.
STALE_REPORT_AFTER = 2 * 86400.0

FREE_SPACE_HELP = (
    "To free space, start your server (that still works), open a terminal and"
    " run  du -h --max-depth=1 ~ | sort -h  to see what is big. Then delete what"
    " you no longer need: old data sets and outputs, ~/.cache, pip and conda"
    " caches (pip cache purge; conda clean -a), and"
    " ~/.local/share/Trash. Download anything you want to keep first."
)


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'; binary units as the quota tools use them."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def warning_message(usage: Usage, what: str = "Your home directory") -> str:
    """One sentence for users: how full, and what happens."""
    used, limit = human_bytes(usage.used), human_bytes(usage.limit)
    if usage.over_limit:
        return (
            f"{what} is over its quota ({used} used of {limit}): saving files"
            " will fail until you free space."
        )
    return f"{what} is {usage.percent:.0f} % full ({used} of {limit})."


# --- sources ---
class QuotaSource(LoggingConfigurable):
    """Base class. All methods are async and never block the event loop."""

    async def usage(self, identity: Identity) -> Usage | None:
        """Usage of the user's home, or None if unknown."""
        return None

    async def usage_for_name(self, username: str) -> Usage | None:
        """Usage by username alone, for when no identity is at hand (the
        hub's pages after a restart). Sources that need a uid return None."""
        return None

    async def course_usage(self, course: Course, group: str = "") -> Usage | None:
        """Usage of a course's directories (group or project quota).
        ``group`` is the course group's name as the hub knows it."""
        return None

    async def all_usage(self, kind: str = "user") -> dict[str, Usage]:
        """Everything the source knows, by name; for admin reports."""
        return {}


class NoQuota(QuotaSource):
    """No quota information: nobody is warned."""


class ReportFileQuota(QuotaSource):
    """Usage from a repquota / xfs_quota report file written by the storage."""

    user_report = Unicode(
        "",
        help="""Report file with user quotas, as the hub sees it (e.g.
        ``/mnt/jupyter/.quota/report.txt``). Write it atomically (to a
        temporary name, then ``mv``) so the hub never reads half a file.""",
    ).tag(config=True)

    course_report = Unicode(
        "",
        help="""Report file with group or project quotas for course
        directories. Empty: look in ``user_report`` (``repquota -ug`` and
        ``report -ug`` put both in one file).""",
    ).tag(config=True)

    format = Enum(
        ["auto", "repquota", "xfs_quota"],
        default_value="auto",
        help="Format of the report files; ``auto`` recognises both tools.",
    ).tag(config=True)

    filesystem = Unicode(
        "",
        help="""Only use rows for this device or mount point (e.g.
        ``/dev/sdb1`` or ``/export``) when the report covers several file
        systems. Empty: all; the fullest row wins.""",
    ).tag(config=True)

    course_kind = Enum(
        ["group", "project"],
        default_value="group",
        help="""Which quota limits course directories: ``group`` (matched by
        ``#<gid>`` or ``course_name_template``) or ``project`` (xfs project
        quota, matched by ``course_name_template``).""",
    ).tag(config=True)

    course_name_template = Unicode(
        "{group}",
        help="""Name of a course's group or project in the report. Fields:
        ``{group}`` (the course group's name as the hub knows it, from
        ``c.CourseCatalog.instructor_group_template``), ``{slug}``,
        ``{coursedir_slug}`` and ``{gid}``.""",
    ).tag(config=True)

    check_interval = Float(
        30.0,
        help="""Seconds between checks of the report file for changes. The
        file is parsed again only when its mtime or size changed.""",
    ).tag(config=True)

    max_age = Float(
        STALE_REPORT_AFTER,
        help="""Ignore a report older than this many seconds (the storage
        side stopped writing it) rather than warn on stale numbers.
        0: never too old.""",
    ).tag(config=True)

    timeout = Float(
        10.0, help="Seconds to wait for reading the report before giving up."
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # path -> (stamp, index, checked_at)
        self._cache: dict[str, tuple[tuple, dict, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._stale_logged: set[tuple[str, tuple]] = set()
        #: The warning threshold (a fraction) the hub's QuotaPolicy uses, set
        #: by the hub (web.quota): then each new user report is counted in
        #: aaltohub_quota_users_over_threshold.
        self.warn_threshold: float | None = None

    # --- loading ----------------------------------------------------------------
    def _count_over(self, index: dict) -> None:
        """Users of a freshly parsed user report at or over the threshold:
        every user row of the report, not only users of this hub."""
        threshold = self.warn_threshold
        if threshold is None:
            return
        over = sum(
            1
            for (kind, name), usages in index.items()
            if kind == "user"
            and self._pick(index, kind, (name,)).over_threshold(threshold)
        )
        metrics.QUOTA_USERS_OVER_THRESHOLD.set(over)

    def _read(self, path: str, old_stamp):
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == old_stamp:
            return stamp, None
        with open(path, encoding="utf-8", errors="replace") as f:
            rows = parse_report(f.read(), self.format)
        index: dict[tuple[str, str], list[Usage]] = {}
        for row in rows:
            if self.filesystem and self.filesystem not in row.filesystem.split():
                continue
            index.setdefault((row.kind, row.name), []).append(row.usage)
        if path == self.user_report:
            self._count_over(index)  # in the reading thread: one pass
        return stamp, index

    async def _index(self, path: str) -> dict | None:
        if not path:
            return None
        cached = self._cache.get(path)
        now = time.monotonic()
        if cached and now - cached[2] < self.check_interval:
            return self._fresh(path, cached)
        lock = self._locks.setdefault(path, asyncio.Lock())
        async with lock:
            cached = self._cache.get(path)
            if cached and time.monotonic() - cached[2] < self.check_interval:
                return self._fresh(path, cached)
            try:
                stamp, index = await asyncio.wait_for(
                    asyncio.to_thread(self._read, path, cached[0] if cached else None),
                    self.timeout,
                )
            except (OSError, TimeoutError, ReportFormatError) as e:
                self.log.warning("quota report=%s outcome=unreadable error=%s", path, e)
                if cached:  # keep the last good numbers; try again later
                    self._cache[path] = (cached[0], cached[1], time.monotonic())
                    return self._fresh(path, cached)
                return None
            if index is None:
                index = cached[1]
            entry = (stamp, index, time.monotonic())
            self._cache[path] = entry
            return self._fresh(path, entry)

    def _fresh(self, path, entry) -> dict | None:
        stamp = entry[0]
        age = time.time() - stamp[0] / 1e9
        if path == self.user_report:
            metrics.QUOTA_REPORT_AGE.set(age)
        if self.max_age and age > self.max_age:
            if (path, stamp) not in self._stale_logged:  # once per file version
                self._stale_logged.add((path, stamp))
                self.log.warning(
                    "quota report=%s outcome=stale age=%.0fs; is the storage side"
                    " still writing it?",
                    path,
                    age,
                )
            return None
        return entry[1]

    @staticmethod
    def _pick(index: dict | None, kind: str, names) -> Usage | None:
        if not index:
            return None
        found = [u for n in names for u in index.get((kind, n), ())]
        if not found:
            return None
        return max(found, key=lambda u: (u.percent or 0, u.used))

    # --- queries ------------------------------------------------------------------
    async def usage(self, identity: Identity) -> Usage | None:
        index = await self._index(self.user_report)
        return self._pick(index, "user", (identity.username, f"#{identity.uid}"))

    async def usage_for_name(self, username: str) -> Usage | None:
        return self._pick(await self._index(self.user_report), "user", (username,))

    async def course_usage(self, course: Course, group: str = "") -> Usage | None:
        index = await self._index(self.course_report or self.user_report)
        names = [
            self.course_name_template.format(
                group=group or COURSE_GROUP_TEMPLATE.format(slug=course.slug),
                slug=course.slug,
                coursedir_slug=course.directory,
                gid=course.gid,
            )
        ]
        if self.course_kind == "group" and course.gid is not None:
            names.append(f"#{course.gid}")
        return self._pick(index, self.course_kind, names)

    async def all_usage(self, kind: str = "user") -> dict[str, Usage]:
        path = (
            self.user_report
            if kind == "user"
            else (self.course_report or self.user_report)
        )
        index = await self._index(path) or {}
        out = {}
        for (k, name), _ in index.items():
            if k == kind:
                out[name] = self._pick(index, k, (name,))
        return out


class StatvfsQuota(QuotaSource):
    """Usage of per-user volumes: the file system *is* the quota."""

    path_template = Unicode(
        "",
        help="""Where the hub sees a user's volume, e.g.
        ``/mnt/homes/{username}``. Fields: ``{username}``, ``{uid}``,
        ``{uid_last2digits}``.""",
    ).tag(config=True)

    course_path_template = Unicode(
        "",
        help="""Where the hub sees a course's volume, e.g.
        ``/mnt/course/{coursedir_slug}``; empty: no course usage. Fields:
        ``{slug}``, ``{coursedir_slug}``.""",
    ).tag(config=True)

    timeout = Float(
        5.0, help="Seconds to wait for statvfs (NFS can hang) before giving up."
    ).tag(config=True)

    _pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        # Own small pool: calls stuck on a dead NFS server must not take
        # the default executor's threads from the rest of the hub.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(4, thread_name_prefix="statvfs")
        return self._pool

    @staticmethod
    def _statvfs(path: str) -> Usage:
        st = os.statvfs(path)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        # What a user can still write is f_bavail (root's reserve excluded).
        limit = used + st.f_bavail * st.f_frsize
        return Usage(used, limit, limit, source=f"statvfs {path}")

    async def _usage(self, path: str) -> Usage | None:
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._executor(), self._statvfs, path),
                self.timeout,
            )
        except FileNotFoundError:
            return None
        except (OSError, TimeoutError) as e:
            self.log.warning("quota path=%s outcome=unavailable error=%r", path, e)
            return None

    async def usage(self, identity: Identity) -> Usage | None:
        if not self.path_template:
            return None
        return await self._usage(
            self.path_template.format(
                username=identity.username,
                uid=identity.uid,
                uid_last2digits=uid_last2digits(identity.uid),
            )
        )

    async def course_usage(self, course: Course, group: str = "") -> Usage | None:
        if not self.course_path_template:
            return None
        return await self._usage(
            self.course_path_template.format(
                slug=course.slug, coursedir_slug=course.directory
            )
        )

    async def all_usage(self, kind: str = "user") -> dict[str, Usage]:
        template = self.path_template if kind == "user" else self.course_path_template
        if not template:
            return {}
        fields = ("username", "uid", "uid_last2digits", "slug", "coursedir_slug")
        pattern = template.format(**dict.fromkeys(fields, "*"))
        paths = await asyncio.to_thread(glob.glob, pattern)
        out = {}
        for path in sorted(paths):
            usage = await self._usage(path)
            if usage is not None:
                out[os.path.basename(path)] = usage
        return out
