"""``aaltohub announce``: hub-wide and per-course notices.

    aaltohub announce "Maintenance tonight 18-20" [--course SLUG] [--until TIME]
    aaltohub announce --list
    aaltohub announce --clear ID

The store is :class:`aaltohub.announcements.AnnouncementStore` (``--file``
or $AALTOHUB_ANNOUNCEMENTS, the same path as ``c.Announcements.path``). The
hub re-reads it when it changes: a notice shows on the hub's pages and in
JupyterLab without a restart. Each change is written to the audit log
(``--audit-log`` or $AALTOHUB_AUDIT_LOG).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict

from ..announcements import PATH_ENV, AnnouncementError, AnnouncementStore
from ..audit import cli_actor, cli_audit_log
from ..catalog import CourseCatalog
from .course_common import add_catalog_option

#: JupyterLab's notifications show this many characters of a message.
LAB_SHOWN = 140


class UsageError(Exception):
    pass


def register(sub) -> None:
    p = sub.add_parser(
        "announce",
        help="show a notice on the hub's pages and in JupyterLab",
        description=__doc__.split("\n\n", 1)[0],
    )
    p.add_argument("text", nargs="?", help="the notice, plain text (no HTML)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="list every notice")
    what.add_argument("--clear", metavar="ID", help="remove the notice with this id")
    p.add_argument(
        "--course",
        metavar="SLUG",
        default="",
        help="only for this course (default: hub-wide)",
    )
    p.add_argument(
        "--until",
        metavar="TIME",
        help="hide it from this time on, ISO 8601, e.g. 2026-12-01T18:00+02:00"
        " (no zone: UTC)",
    )
    p.add_argument(
        "--file",
        metavar="PATH",
        default=os.environ.get(PATH_ENV),
        help=f"the announcements file (default: ${PATH_ENV})",
    )
    add_catalog_option(
        p,
        "course catalog directory; --course is checked against it"
        " (default: $AALTOHUB_CATALOG)",
    )
    p.add_argument(
        "--audit-log",
        metavar="PATH",
        default=None,
        help="audit log file (default: $AALTOHUB_AUDIT_LOG; none: not logged)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        if not args.file:
            raise UsageError(
                f"no announcements file: pass --file PATH or set {PATH_ENV}"
                " (the same path as c.Announcements.path)"
            )
        store = AnnouncementStore(args.file)
        if args.list:
            return _list(store, args)
        if args.clear:
            return _clear(store, args)
        return _add(store, args)
    except (UsageError, AnnouncementError) as e:
        print(f"aaltohub announce: {e}", file=sys.stderr)
        return 2


def _list(store: AnnouncementStore, args) -> int:
    if args.text or args.until:
        raise UsageError("--list takes no text and no --until")
    items = [a for a in store.all() if not args.course or a.course == args.course]
    if args.json:
        rows = [{**asdict(a), "expired": a.expired()} for a in items]
        print(json.dumps(rows, indent=1, ensure_ascii=False))
        return 0
    if not items:
        print("no announcements")
    for a in items:
        scope = f"course {a.course}" if a.course else "hub-wide"
        until = f", until {a.until}" if a.until else ""
        state = " (expired)" if a.expired() else ""
        print(f"{a.id}  {scope}{until}{state}  by {a.author or '-'}: {a.text}")
    return 0


def _clear(store: AnnouncementStore, args) -> int:
    if args.text or args.until:
        raise UsageError("--clear takes only the id; `--list` shows the ids")
    removed = store.clear(args.clear)
    _audit(args, "clear", removed)
    print(f"cleared {removed.id}: {removed.text}")
    return 0


def _add(store: AnnouncementStore, args) -> int:
    if not args.text:
        raise UsageError(
            'give the notice\'s text, e.g. aaltohub announce "Maintenance 18-20";'
            " or --list, or --clear ID"
        )
    if args.course:
        _check_course(args)
    item = store.add(
        args.text, course=args.course, until=args.until, author=cli_actor()
    )
    _audit(args, "add", item)
    if len(item.text) > LAB_SHOWN:
        print(
            f"note: JupyterLab shows the first {LAB_SHOWN} characters of a"
            " notice; the hub's pages show all of it",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(asdict(item), ensure_ascii=False))
    else:
        scope = f"course {item.course}" if item.course else "hub-wide"
        until = f" until {item.until}" if item.until else ""
        print(f"announced {item.id} ({scope}{until})")
    return 0


def _check_course(args) -> None:
    """With a catalog, a course must exist in it: a typo would otherwise
    make a notice nobody sees."""
    if not args.catalog:
        return
    if not os.path.isdir(args.catalog):
        raise UsageError(f"catalog {args.catalog} is not a directory")
    catalog = CourseCatalog(path=args.catalog).load()
    if catalog.get(args.course) is None:
        known = ", ".join(sorted(catalog.courses)[:10]) or "none"
        raise UsageError(
            f"no course {args.course!r} in the catalog {args.catalog}"
            f" (courses: {known}); check the slug"
        )


def _audit(args, change: str, item) -> None:
    log = cli_audit_log(args.audit_log)
    log.record(
        "announce",
        actor=cli_actor(),  # who ran this command (for a clear: not the author)
        target=item.id,
        course=item.course,
        outcome="ok",
        reason=f"{change}: {item.text}"
        + (f" (until {item.until})" if item.until else ""),
    )
    log.flush()
    log.close()
