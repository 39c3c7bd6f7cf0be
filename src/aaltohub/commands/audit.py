"""``aaltohub audit``: search the audit log (and its rotated files)."""

from __future__ import annotations

import json
import os
import sys

from ..audit import ACTIONS, PATH_ENV
from ..audit_query import Query, Reader, format_table, parse_time


def register(sub) -> None:
    p = sub.add_parser(
        "audit",
        help="search the audit log: logins, spawns, stops, culls, admin actions",
        description="Read the audit log file and its rotated files (oldest"
        " first) and print the records that match every filter given. Lines"
        " that are not records are skipped and counted on stderr.",
    )
    p.add_argument(
        "--file",
        default=os.environ.get(PATH_ENV, ""),
        help=f"the audit log (default: ${PATH_ENV})",
    )
    p.add_argument("--user", default="", help="records whose actor or target is USER")
    p.add_argument("--course", default="", help="records of this course (slug)")
    p.add_argument(
        "--action", default="", help="one action: " + ", ".join(sorted(ACTIONS))
    )
    p.add_argument("--outcome", default="", help="ok, failed or refused (see the docs)")
    p.add_argument(
        "--since", default="", help="from this time: ISO (UTC) or ago, e.g. 2h, 3d"
    )
    p.add_argument("--until", default="", help="up to this time (same forms)")
    p.add_argument("--limit", type=int, default=0, help="only the last N records")
    p.add_argument(
        "--json", action="store_true", help="print JSON lines instead of a table"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.file:
        print(
            f"error: no audit log: give --file or set ${PATH_ENV} (the hub's"
            " c.AuditLog.path)",
            file=sys.stderr,
        )
        return 2
    try:
        query = Query(
            user=args.user,
            course=args.course,
            action=args.action,
            outcome=args.outcome,
            since=parse_time(args.since) if args.since else None,
            until=parse_time(args.until) if args.until else None,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    reader = Reader(args.file)
    records = list(reader.records(query))
    if not reader.files:
        print(
            f"error: {args.file} does not exist (nor rotated files of it)",
            file=sys.stderr,
        )
        return 2
    if args.limit > 0:
        records = records[-args.limit :]
    if args.json:
        for record in records:
            # ASCII: the records' text is untrusted (control characters)
            print(json.dumps(record))
    elif records:
        print(format_table(records))
    else:
        print("no matching records", file=sys.stderr)
    if reader.corrupt:
        print(
            f"warning: skipped {reader.corrupt} line(s) that are not audit records",
            file=sys.stderr,
        )
    return 0
