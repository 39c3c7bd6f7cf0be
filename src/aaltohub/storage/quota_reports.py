"""Parsers of quota report files, and the Usage value they produce.

Owns the text formats: ``repquota`` (plain and ``-s``, grace columns,
``#1234`` rows) and ``xfs_quota -x -c 'report ...'`` (``-b`` and ``-h``,
user, group and project quotas), turned into :class:`ReportRow` values.
Pure functions, no I/O. :class:`Usage` lives here because the parsers build
it; every quota source returns it, and :mod:`aaltohub.storage.quota`
re-exports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KIB = 1024
_UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


@dataclass(frozen=True)
class Usage:
    """Space used and allowed, in bytes."""

    used: int
    #: The limit users hit first: the soft limit if set, else the hard one.
    #: 0 means no limit.
    limit: int
    hard_limit: int = 0
    #: Remaining grace as the tool printed it ("6days", "[7 days]", "none").
    grace: str = ""
    #: Where the number came from, e.g. "repquota /dev/sdb1".
    source: str = ""

    @property
    def percent(self) -> float | None:
        return 100.0 * self.used / self.limit if self.limit else None

    def over_threshold(self, threshold: float) -> bool:
        """At or above ``threshold`` (a fraction, 0.9 = 90 %) of the limit."""
        return bool(self.limit) and self.used >= threshold * self.limit

    @property
    def over_limit(self) -> bool:
        return bool(self.limit) and self.used >= self.limit

    def to_dict(self) -> dict:
        pct = self.percent
        return {
            "used_bytes": self.used,
            "limit_bytes": self.limit,
            "hard_limit_bytes": self.hard_limit,
            "percent": None if pct is None else round(pct, 1),
            "grace": self.grace,
            "source": self.source,
        }


@dataclass(frozen=True)
class ReportRow:
    kind: str  # user, group, project
    name: str  # as printed: "darstr1" or "#1234"
    filesystem: str  # device (repquota) or "mountpoint device" (xfs_quota)
    usage: Usage


class ReportFormatError(ValueError):
    pass


_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGTPE]?)$")


def _size(token: str, bare_unit: int) -> int:
    """A size token in bytes: ``123`` (times bare_unit), ``9.0G``, ``512K``."""
    m = _SIZE.fullmatch(token)
    if not m:
        raise ReportFormatError(f"not a size: {token!r}")
    number, suffix = m.groups()
    if not suffix:
        return int(float(number) * bare_unit)
    return int(float(number) * KIB ** _UNITS[suffix])


_REPQUOTA_HEAD = re.compile(
    r"^\*\*\* Report for (user|group|project) quotas on device (\S+)"
)
_REPQUOTA_FLAGS = re.compile(r"^[-+]{2}$")
# Remaining grace as repquota prints it: "6days", "23:59", "none" (expired).
_REPQUOTA_GRACE = re.compile(r"^(none|[0-9]+days|[0-9]+:[0-9]{2})$")


def parse_repquota(text: str) -> list[ReportRow]:
    """``repquota [-ugjs] [-p] [-n] (-a | mountpoint)`` output."""
    rows: list[ReportRow] = []
    kind = device = None
    for line in text.splitlines():
        head = _REPQUOTA_HEAD.match(line)
        if head:
            kind, device = head.groups()
            continue
        tokens = line.split()
        if kind is None or len(tokens) < 8 or not _REPQUOTA_FLAGS.fullmatch(tokens[1]):
            continue  # headers, separators, statistics, blank lines
        try:
            # Block columns are 1 KiB blocks, or sizes with K/M/G/T under -s.
            used, soft, hard = (_size(t, KIB) for t in tokens[2:5])
            grace = ""
            if len(tokens) == 10:  # both grace columns (always so under -p)
                grace = tokens[5]
            elif len(tokens) == 9 and _REPQUOTA_GRACE.fullmatch(tokens[5]):
                grace = tokens[5]  # block grace; the inode one is empty
            # An empty grace column prints as spaces, so fields shift; only
            # the block values matter here.
        except ReportFormatError:
            continue
        if grace == "0":
            grace = ""  # -p prints 0 for "no grace running"
        rows.append(
            ReportRow(
                kind,
                tokens[0],
                device,
                Usage(used, soft or hard, hard, grace, f"repquota {device}"),
            )
        )
    return rows


_XFS_HEAD = re.compile(r"^(User|Group|Project) quota on (\S+) \((\S+)\)", re.M)
_XFS_ROW = re.compile(
    r"^(?P<name>\S+)\s+(?P<used>\S+)\s+(?P<soft>\S+)\s+(?P<hard>\S+)\s+"
    r"(?P<warn>[0-9]{2,})\s+(?P<grace>\[[^\]]*\]|[0-9]+:[0-9]{2}:[0-9]{2})"
)


def parse_xfs_quota(text: str, default_kind: str = "user") -> list[ReportRow]:
    """``xfs_quota -x -c 'report [-ugp] [-b] [-h] [-n]'`` output.

    Without ``-h`` the block columns are KiB; with ``-h`` they carry a unit
    (``9.0G``) and a bare number is bytes.
    """
    rows: list[ReportRow] = []
    kind, fs = default_kind, ""
    human = False
    blocks = True
    for line in text.splitlines():
        head = _XFS_HEAD.match(line)
        if head:
            kind, mount, dev = head.group(1).lower(), head.group(2), head.group(3)
            fs = f"{mount} {dev}"
            human, blocks = False, True
            continue
        if "Blocks" in line or "Inodes" in line:
            # The header's first group says what the first columns count.
            blocks = line.find("Blocks") != -1 and (
                "Inodes" not in line or line.find("Blocks") < line.find("Inodes")
            )
            continue
        if line.startswith("---------- "):
            human = len(line.split()[1]) == 33  # -h shortens the rule to 33
            continue
        m = _XFS_ROW.match(line)
        if not m or not blocks:
            continue
        unit = 1 if human else KIB
        try:
            used, soft, hard = (_size(m[k], unit) for k in ("used", "soft", "hard"))
        except ReportFormatError:
            continue
        # "[--------]": no grace running; "[--none--]": over the hard limit;
        # "[7 days]", "[00:59:59]" or "23:59:59": grace left.
        grace = m["grace"].strip("[]").strip("-")
        rows.append(
            ReportRow(
                kind,
                m["name"],
                fs,
                Usage(used, soft or hard, hard, grace, f"xfs_quota {fs}"),
            )
        )
    return rows


def parse_report(text: str, fmt: str = "auto") -> list[ReportRow]:
    """Parse a report in ``fmt`` (repquota, xfs_quota, or auto-detect)."""
    if fmt == "auto":
        if "*** Report for " in text:
            fmt = "repquota"
        elif _XFS_HEAD.search(text):
            fmt = "xfs_quota"
        elif not text.strip():
            return []
        else:
            raise ReportFormatError(
                "not a repquota or xfs_quota report; write the file with"
                " 'repquota -ug MOUNT' or \"xfs_quota -x -c 'report -ug -b' MOUNT\""
            )
    if fmt == "repquota":
        return parse_repquota(text)
    if fmt == "xfs_quota":
        return parse_xfs_quota(text)
    raise ReportFormatError(f"unknown report format {fmt!r}")
