"""``aaltohub quota report``: who is over the warning threshold."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from ..storage.quota import (
    STALE_REPORT_AFTER,
    ReportFileQuota,
    ReportFormatError,
    StatvfsQuota,
    Usage,
    human_bytes,
    parse_report,
)
from ..storage.quota_policy import DEFAULT_THRESHOLD


def register(sub) -> None:
    p = sub.add_parser(
        "quota",
        help="storage usage: list users or courses over the warning threshold",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = actions.add_parser(
        "report",
        help="list users (or groups, projects) at or above a threshold",
        description="Read a repquota or xfs_quota report (or stat per-user"
        " volumes) and list who is at or above the threshold, fullest first.",
    )
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--report",
        metavar="FILE",
        help="report file written by the storage side (repquota or xfs_quota)",
    )
    src.add_argument(
        "--statvfs",
        metavar="TEMPLATE",
        help="per-user volumes, e.g. '/mnt/homes/{username}'",
    )
    r.add_argument(
        "--format",
        choices=["auto", "repquota", "xfs_quota"],
        default="auto",
        help="report format (default: recognise it)",
    )
    r.add_argument(
        "--kind",
        choices=["user", "group", "project"],
        default="user",
        help="which quotas to list (default: user)",
    )
    r.add_argument("--filesystem", default="", help="only this device or mount point")
    r.add_argument(
        "--threshold",
        type=_fraction,
        default=DEFAULT_THRESHOLD,
        help="fraction of the quota from which to list, as c.QuotaPolicy.threshold"
        f" (default: {DEFAULT_THRESHOLD:g}, i.e. {DEFAULT_THRESHOLD * 100:g} %%)",
    )
    r.add_argument("--all", action="store_true", help="list everyone with a limit")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.set_defaults(func=run_report)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(
            f"{text} is not a fraction between 0 and 1 (0.9 means 90 %)"
        )
    return value


def _source(args):
    if args.report:
        return ReportFileQuota(
            user_report=args.report,
            course_report=args.report,
            format=args.format,
            filesystem=args.filesystem,
            course_kind="project" if args.kind == "project" else "group",
            max_age=0,  # an admin asking wants the numbers, however old
        )
    if args.kind == "user":
        return StatvfsQuota(path_template=args.statvfs)
    return StatvfsQuota(course_path_template=args.statvfs)


def run_report(args) -> int:
    if args.report and not os.path.isfile(args.report):
        print(f"error: report file {args.report} does not exist", file=sys.stderr)
        return 2
    if args.report:
        # Parse here first: a wrong format should be an error, not an empty list.
        try:
            with open(args.report, encoding="utf-8", errors="replace") as f:
                parse_report(f.read(), args.format)
        except ReportFormatError as e:
            print(f"error: {args.report}: {e}", file=sys.stderr)
            return 2
    usages = asyncio.run(_source(args).all_usage(args.kind))
    rows: list[tuple[str, Usage]] = sorted(
        (
            (name, u)
            for name, u in usages.items()
            if u.limit and (args.all or u.over_threshold(args.threshold))
        ),
        key=lambda item: (-(item[1].percent or 0), item[0]),
    )
    if args.json:
        print(json.dumps([{"name": n, **u.to_dict()} for n, u in rows], indent=2))
    else:
        table = [["NAME", "USED", "LIMIT", "PERCENT", "GRACE"]]
        for name, u in rows:
            table.append(
                [
                    name,
                    human_bytes(u.used),
                    human_bytes(u.limit),
                    f"{u.percent:.0f} %",
                    u.grace or "-",
                ]
            )
        widths = [max(len(r[i]) for r in table) for i in range(5)]
        for r in table:
            print(
                "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            )
        what = "with a limit" if args.all else f"at or above {args.threshold * 100:g} %"
        print(f"{len(rows)} {args.kind}(s) {what}", file=sys.stderr)
    if args.report:
        age = time.time() - os.stat(args.report).st_mtime
        if age > STALE_REPORT_AFTER:
            print(
                f"warning: {args.report} is {age / 3600:.0f} hours old; is the"
                " storage side still writing it?",
                file=sys.stderr,
            )
    return 0
