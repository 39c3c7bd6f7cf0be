"""``aaltohub migrate aalto META_DIR``: what changes for each course.

Read-only: the report comes from :mod:`aaltohub.migration.aalto`. Exits 1
if any course would lose access or data, 2 on a usage error.
"""

from __future__ import annotations

import json
import os

from ..migration.aalto import build_report


def register(sub) -> None:
    p = sub.add_parser(
        "migrate",
        help="report what moving from another hub changes (read-only)",
        description="Read-only reports for moving a hub to aaltohub.",
    )
    source = p.add_subparsers(dest="source", metavar="FROM", required=True)
    aalto = source.add_parser(
        "aalto",
        help="from AaltoSciComp/jupyterhub-aalto: report on its /courses/meta",
        description="Report, course by course, what changes when Aalto's hub"
        " moves to aaltohub: mounts, owners, images, cull limits, who sees it,"
        " behaviour differences, what is unsupported. Writes nothing; exits 1"
        " if any course would lose access or data.",
    )
    aalto.add_argument("meta_dir", metavar="META_DIR", help="Aalto's /courses/meta")
    aalto.add_argument(
        "--hub-dir",
        metavar="DIR",
        help="Aalto's hub data directory with hooks-all.py, hooks-user/ and"
        " hooks-course/ (Aalto: /srv/jupyterhub)",
    )
    aalto.add_argument("--json", action="store_true", help="machine-readable output")
    aalto.set_defaults(func=run)


def _print(report) -> None:
    for line in report.general:
        print(f"hub: {line}")
    for course in report.courses:
        mark = "AT RISK" if course.at_risk else "ok"
        print(f"\n{course.slug} ({course.name or 'not offered'}): {mark}")
        for label, lines in (
            ("loses access", course.loses_access),
            ("loses data", course.loses_data),
            ("unsupported", course.unsupported),
            ("differs", course.differences),
            ("on aaltohub", course.changes),
        ):
            for line in lines:
                print(f"  {label}: {line}")
    risky = sum(c.at_risk for c in report.courses)
    print(
        f"\n{len(report.courses)} course(s) reported, {risky} would lose access"
        f" or data ({report.meta_dir})"
    )


def run(args) -> int:
    if not os.path.isdir(args.meta_dir):
        print(f"error: {args.meta_dir} is not a directory")
        return 2
    report = build_report(args.meta_dir, hub_dir=args.hub_dir)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        _print(report)
    return 1 if report.at_risk else 0
