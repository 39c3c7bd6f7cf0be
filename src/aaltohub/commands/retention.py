"""``aaltohub retention report|apply``: delete old data, never unannounced.

``report`` lists what retention covers: archived courses' files and data,
students' nbgrader work, exchanges, and archived homes, with sizes, due
dates and where each stands. ``apply`` warns what comes due within the
warning period (a course announcement, a report file for instructors, a
ledger entry) and deletes what is due and was warned long enough ago. The
rules are :mod:`aaltohub.retention`; this module reads storage and prints.
Run ``apply`` daily (cron); each run does only what is left.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import timedelta

from ..announcements import PATH_ENV, AnnouncementStore
from ..retention import (
    DELETE,
    HELD,
    KEEP,
    UNSCHEDULED,
    WARN,
    WARNED,
    Retention,
    course_items,
    decide,
    held_by,
    home_item,
    in_use,
)
from ..storage.homes_archive import archived_homes, forget_record
from ..storage.layout import StorageLayout
from ..storage.retention_store import Ledger, delete_tree, human_size, tree_size
from ..term import as_time, day, iso, now_utc
from .course_common import (
    Audit,
    UsageError,
    audit_options,
    common_options,
    dry_run_option,
    err,
    guard,
    hub_config,
    load_catalog,
    storage_root,
)

STATE_ENV = "AALTOHUB_RETENTION_DIR"
ORDER = (HELD, DELETE, WARN, WARNED, UNSCHEDULED, KEEP)


def register(sub) -> None:
    p = sub.add_parser(
        "retention",
        help="what old course data and archived homes are due for deletion;"
        " warn, then delete",
        description="Retention of archived course data, submissions, exchanges"
        " and archived homes (c.Retention, a course file's retention:).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument(
        "--state-dir",
        metavar="DIR",
        default=os.environ.get(STATE_ENV),
        help=f"the warning ledger and report files (default: ${STATE_ENV}, else"
        " c.Retention.state_dir)",
    )
    report = actions.add_parser(
        "report",
        parents=[common_options(True), state],
        help="list what is due or warned: course, what, size, due date",
    )
    report.add_argument(
        "--all", action="store_true", help="also what is not due for a while"
    )
    report.add_argument(
        "--now", metavar="TIME", help="as if it were this time (to plan ahead)"
    )
    report.set_defaults(func=run_report)
    apply = actions.add_parser(
        "apply",
        parents=[common_options(True), state, dry_run_option(), audit_options()],
        help="warn what comes due; delete what is due and was warned",
    )
    apply.add_argument(
        "--announcements",
        metavar="FILE",
        default=os.environ.get(PATH_ENV),
        help=f"the hub's announcements file (default: ${PATH_ENV})",
    )
    apply.set_defaults(func=run_apply, all=False, now=None)


# --- gathering --------------------------------------------------------------------
def _settings(args) -> Retention:
    return Retention(config=hub_config(args))


def _ledger(args, settings) -> Ledger:
    directory = args.state_dir or settings.state_dir
    if not directory:
        raise UsageError(
            f"no state directory: pass --state-dir DIR, set ${STATE_ENV} or"
            " c.Retention.state_dir (it keeps the record of warnings given)"
        )
    return Ledger(os.path.join(directory, "retention.json"))


def _rows(args, settings, ledger, now) -> list[dict]:
    """Every retention item that still has data, with its decision."""
    catalog = load_catalog(args)
    root = storage_root(args)
    paths = StorageLayout(config=hub_config(args)).paths
    items = [
        (item, catalog.get(item.owner))
        for course in catalog.courses.values()
        for item in course_items(course, paths, settings, now)
    ]
    used = {c.slug: in_use(c, paths, now) for c in catalog.courses.values()}
    for record in archived_homes(root, settings.homes_archive):
        item = home_item(
            record["username"], record["path"], record["archived"], settings
        )
        items.append((item, None))
    entries = ledger.read()
    rows = []
    for item, course in items:
        sizes = [tree_size(root, p) for p in item.paths]
        if all(s is None for s in sizes):
            continue  # nothing left (deleted, or never made)
        entry = entries.get(item.key) or {}
        # A warning counts for the due date it announced: if the date moved
        # (new term dates, another period), instructors are told again.
        due = iso(item.due) if item.due else ""
        warned = entry.get("warned") if entry.get("due") == due else None
        warned_at = as_time(warned, "warned") if warned else None
        holders = held_by(item, used)
        decision = decide(item, warned_at, now, settings.warning_days, holders=holders)
        rows.append(
            {
                "item": item,
                "course": course,
                "owner": item.owner,
                "what": item.kind,
                "size": sum(s or 0 for s in sizes),
                "due": due,
                "warned": warned or "",
                "status": decision.action,
                "delete_after": iso(decision.delete_after)
                if decision.delete_after
                else "",
                "paths": list(item.paths),
                "note": item.note,
                "held_by": holders,
            }
        )
    rows.sort(key=lambda r: (ORDER.index(r["status"]), r["due"], r["owner"], r["what"]))
    return rows


def _status_text(row: dict, warning_days: int) -> str:
    status = row["status"]
    if status == HELD:
        return f"held: storage also used by {', '.join(row['held_by'])}"
    if status == DELETE:
        return "due: delete"
    if status == WARNED:
        return f"warned; delete after {row['delete_after'][:10]}"
    if status == WARN:
        return "warn now"
    if status == KEEP:
        return f"keep; warn from {_minus(row['due'], warning_days)}"
    return row["note"] or "not scheduled"


def _minus(due: str, days: int) -> str:
    return day(as_time(due, "due") - timedelta(days=days))[:10]


def _print(rows: list[dict], warning_days: int) -> None:
    table = [["OWNER", "WHAT", "SIZE", "DUE", "STATUS"]]
    for r in rows:
        table.append(
            [
                r["owner"],
                r["what"],
                human_size(r["size"]),
                r["due"][:10] or "-",
                _status_text(r, warning_days),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _public(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("item", "course")}


# --- report -----------------------------------------------------------------------
@guard
def run_report(args) -> int:
    settings = _settings(args)
    now = as_time(args.now, "--now") if args.now else now_utc()
    rows = _rows(args, settings, _ledger(args, settings), now)
    if not args.all:
        rows = [r for r in rows if r["status"] != KEEP]
    if args.json:
        print(json.dumps([_public(r) for r in rows], indent=2))
    else:
        _print(rows, settings.warning_days)
    due = sum(r["status"] == DELETE for r in rows)
    _warn_held(rows)
    err(f"{len(rows)} item(s); {due} due for deletion; as of {day(now)} UTC")
    return 0


# --- apply ------------------------------------------------------------------------
@guard
def run_apply(args) -> int:
    settings = _settings(args)
    ledger = _ledger(args, settings)
    audit = Audit(args, "retention")
    if not args.dry_run and audit.log.destination == "off":
        raise UsageError(
            "no audit log: pass --audit-log FILE or set $AALTOHUB_AUDIT_LOG;"
            " retention apply deletes nothing without an audit record"
        )
    now = now_utc()
    rows = _rows(args, settings, ledger, now)
    _warn_held(rows)
    failed = 0
    try:
        for row in rows:
            if row["status"] == WARN:
                failed += not _warn(args, row, ledger, audit, settings, now)
            elif row["status"] == DELETE:
                failed += not _delete(args, row, ledger, audit)
    finally:
        audit.close()
    verb = "would" if args.dry_run else "did"
    warned = sum(r["status"] == WARN for r in rows)
    deleted = sum(r["status"] == DELETE for r in rows)
    held = sum(r["status"] == HELD for r in rows)
    err(
        f"{verb} warn {warned}, delete {deleted} item(s); {failed} failed"
        + (f"; {held} held" if held else "")
    )
    return 1 if failed else 0


def _warn_held(rows: list[dict]) -> None:
    """Say, on stderr too (cron mails it), which items are held and why."""
    for r in rows:
        if r["status"] == HELD:
            err(
                f"warning: {r['item'].key} ({', '.join(r['paths'])}) is not warned"
                f" or deleted: course(s) {', '.join(r['held_by'])}, not closed,"
                " use the same storage; give the courses different"
                " coursedir_slug, or close the other course(s)"
            )


def _warn(args, row, ledger, audit, settings, now) -> bool:
    item, course = row["item"], row["course"]
    after = max(item.due, now + timedelta(days=settings.warning_days))
    text = (
        f"{course.name if course else item.owner}: its {_words(item.kind)} will be"
        f" deleted on or after {day(after)[:10]} (the retention period ends)."
        " Instructors: copy now what must be kept."
    )
    print(f"{'would warn' if args.dry_run else 'warned'}: {item.key} {text}")
    if args.dry_run:
        return True
    if course is not None:
        if not args.announcements:
            err(f"error: {item.key}: no announcements file (--announcements)")
            audit.record("warn", course=item.owner, outcome="failed", reason="no file")
            return False
        store = AnnouncementStore(args.announcements)
        store.add(text, course=item.owner, until=after + timedelta(days=1))
    report = _write_report(args, settings, item, text, row)
    with ledger.update() as data:
        data[item.key] = {"warned": iso(now), "due": row["due"], "report": report}
    audit.record("warn", course=course and item.owner, target=report, reason=text)
    return True


def _words(kind: str) -> str:
    return {
        "course": "course files and data",
        "submissions": "students' submissions, grading and feedback",
        "exchange": "nbgrader exchange",
        "home": "archived home directory",
    }[kind]


def _write_report(args, settings, item, text, row) -> str:
    """reports/<owner>.txt, for the instructors (or an administrator)."""
    directory = os.path.join(args.state_dir or settings.state_dir, "reports")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{item.owner}.txt")
    with open(path, "a", encoding="utf-8") as f:
        f.write(
            f"{text}\n  what: {item.kind}, {human_size(row['size'])}\n"
            + "".join(f"  path: {p}\n" for p in item.paths)
            + f"  due: {row['due']}\n\n"
        )
    return path


def _delete(args, row, ledger, audit) -> bool:
    item = row["item"]
    course = item.owner if item.kind != "home" else ""
    if args.dry_run:
        print(f"would delete: {item.key} {', '.join(item.paths)}")
        return True
    root = storage_root(args)
    for path in item.paths:
        # The record is written (and flushed) before anything is removed.
        audit.record("delete", course=course, target=path, outcome="started")
        if not audit.log.flush():
            err(
                f"error: {item.key}: {path}: not deleted: the audit log could not"
                " be written (see the errors above); fix it and run again"
            )
            return False
        try:
            gone = delete_tree(root, path)
        except OSError as e:
            audit.record(
                "delete", course=course, target=path, outcome="failed", reason=str(e)
            )
            err(f"error: {item.key}: {path}: {e}")
            return False
        audit.record(
            "delete", course=course, target=path, reason="" if gone else "gone"
        )
        print(f"deleted: {path}")
    if item.kind == "home":
        forget_record(root, item.paths[0])
    with ledger.update() as data:
        # The warning is used up: data that comes back later is warned again.
        data[item.key] = {"deleted": iso(now_utc()), "due": row["due"]}
    return True
