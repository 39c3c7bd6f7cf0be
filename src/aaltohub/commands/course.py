"""``aaltohub course create|check|fix|list|archive``: course directories.

The layout (modes, owners, groups) comes from
:class:`aaltohub.storage.StorageLayout`; walking and repairing from
:mod:`aaltohub.storage.course_dirs`; the course-file edit behind ``archive``
from :mod:`aaltohub.catalog.edit`. This module parses arguments, picks
courses from the catalog and prints; the options and helpers it shares
with ``new-term`` (:mod:`.course_term`) and ``end-term``
(:mod:`.course_end_term`) are in
:mod:`.course_common`.
"""

from __future__ import annotations

import json

from ..catalog.edit import ArchiveError, set_archive_flag
from ..course import Course
from ..storage import course_dirs
from ..storage.layout import LayoutError, StorageLayout
from ..storage.problems import Result
from ..term import END_TERM_STEPS, describe
from . import course_end_term, course_term
from .course_common import (
    Audit,
    audit_options,
    common_options,
    dry_run_option,
    emit,
    emit_changes,
    err,
    guard,
    layout_of,
    load_catalog,
    progress_option,
    select_courses,
    selection_options,
    submissions_option,
    walk,
)

__all__ = ["ArchiveError", "register", "set_archive_flag"]


def register(sub) -> None:
    p = sub.add_parser(
        "course",
        help="create, check and repair course directories; list, archive and"
        " end courses; start a new term",
        description="Work on course directories on a storage root, as the"
        " catalog describes them.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    needs_root = common_options(True)
    audit = audit_options()
    actions.add_parser(
        "create",
        parents=[needs_root, selection_options(), dry_run_option(), audit],
        help="make missing course directories with the right owners and modes",
    ).set_defaults(func=run_create)
    actions.add_parser(
        "check",
        parents=[
            needs_root,
            selection_options(),
            progress_option(),
            submissions_option(),
        ],
        help="report every wrong mode, owner or group and every leak; exit 1 if any",
    ).set_defaults(func=run_check)
    actions.add_parser(
        "fix",
        parents=[
            needs_root,
            selection_options(),
            dry_run_option(),
            progress_option(),
            submissions_option(),
            audit,
        ],
        help="repair what check reports, touching only wrong entries",
    ).set_defaults(func=run_fix)
    actions.add_parser(
        "list",
        parents=[common_options(False)],
        help="courses with role counts, status, term and end-term steps"
        " (and storage status)",
    ).set_defaults(func=run_list)
    archive = actions.add_parser(
        "archive",
        parents=[common_options(False), dry_run_option(), progress_option(), audit],
        help="mark courses archived and make their files read-only",
    )
    archive.add_argument("slugs", nargs="+", metavar="SLUG")
    archive.set_defaults(func=run_archive, all=False)
    for module in (course_term, course_end_term):
        module.register(actions, common_options, audit, dry_run_option, progress_option)


def _audited(args, command: str, courses, result: Result) -> None:
    """One record per course and one per change, flushed before exit."""
    audit = Audit(args, command)
    for course in courses:
        audit.record(
            "", course=course.slug, outcome="failed" if result.unfixed else "ok"
        )
    for action in result.actions:
        audit.record("change", target=action)
    for problem in result.unfixed:
        audit.record(
            "change", target=problem.path, outcome="failed", reason=str(problem)
        )
    audit.close()


# --- create / check / fix ---
@guard
def run_create(args) -> int:
    courses = select_courses(args, load_catalog(args))
    result = walk(args, courses, fix=True, dry_run=args.dry_run, walk=False)
    _audited(args, "course.create", courses, result)
    verb = "would make" if args.dry_run else "made"
    return emit_changes(
        args,
        courses,
        result,
        f"{len(courses)} course(s): {verb} {len(result.actions)} change(s),"
        f" {len(result.unfixed)} error(s)",
    )


@guard
def run_check(args) -> int:
    courses = select_courses(args, load_catalog(args))
    result = walk(args, courses, fix=False, submissions=True)
    by_hand = sum(not p.fixable for p in result.problems)
    hints = []
    if len(result.problems) > by_hand:
        hints.append("run 'aaltohub course fix' to repair")
    if by_hand:
        hints.append(f"{by_hand} need a human ('fix' will not change them)")
    emit(
        args,
        courses,
        result,
        [str(p) for p in result.problems],
        f"{len(courses)} course(s), {result.scanned:,} entries checked,"
        f" {len(result.problems)} problem(s)" + "".join(f"; {h}" for h in hints),
    )
    return 1 if result.problems else 0


@guard
def run_fix(args) -> int:
    courses = select_courses(args, load_catalog(args))
    result = walk(args, courses, fix=True, dry_run=args.dry_run, submissions=True)
    _audited(args, "course.fix", courses, result)
    verb = "would make" if args.dry_run else "made"
    return emit_changes(
        args,
        courses,
        result,
        f"{len(courses)} course(s), {result.scanned:,} entries checked: {verb}"
        f" {len(result.actions)} change(s), {len(result.unfixed)} left to fix by hand",
    )


# --- list ---
def _status(course: Course) -> str:
    if course.archive:
        return "archived"
    return "private" if course.private else "public"


@guard
def run_list(args) -> int:
    catalog = load_catalog(args)
    layout = layout_of(args)
    rows = []
    for slug in sorted(set(catalog.courses) | set(catalog.errors)):
        course = catalog.get(slug)
        if course is None:
            rows.append(
                {"slug": slug, "status": "invalid", "error": catalog.errors[slug]}
            )
            continue
        row = {
            "slug": slug,
            "name": course.name,
            "status": _status(course),
            "students": len(course.students),
            "instructors": len(course.instructors),
            "student_groups": sorted(course.student_groups),
            "instructor_groups": sorted(course.instructor_groups),
            "gid": course.gid,
            "directory": course.directory,
            "term": describe(course),
            "end_term": dict(course.term.end_term),
        }
        if args.storage_root:
            row["storage"] = _storage_status(args.storage_root, layout, course)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ["SLUG", "STATUS", "STUDENTS", "INSTRUCTORS", "GID"]
    if args.storage_root:
        header.append("STORAGE")
    header += ["END-TERM", "TERM"]  # last: the term is several words
    table = [header]
    for r in rows:
        line = [
            r["slug"],
            r["status"],
            str(r.get("students", "-")),
            str(r.get("instructors", "-")),
            str(r.get("gid") or "-"),
        ]
        if args.storage_root:
            line.append(r.get("storage", "-").replace(" ", "-"))
        line += [_steps(r.get("end_term")), r.get("term", "-")]
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for r in rows:
        if r["status"] == "invalid":
            err(f"invalid: {r['error']}")
    return 0


def _steps(done: dict | None) -> str:
    """end-term steps done, e.g. ``access,notice,gradebook 3/5``."""
    if not done:
        return "-"
    names = [s for s in END_TERM_STEPS if s in done]
    return f"{','.join(names)} {len(names)}/{len(END_TERM_STEPS)}"


def _storage_status(root: str, layout: StorageLayout, course: Course) -> str:
    """Top-level entries only (no walk): cheap enough for a listing."""
    try:
        entries = layout.entries(course)
    except LayoutError:
        return "no gid"
    if not entries:
        return "none needed"
    result = course_dirs.run(root, entries, walk=False)
    if not result.problems:
        return "ok"
    if all(p.kind == "missing" for p in result.problems):
        return "missing"
    return f"{len(result.problems)} problem(s)"


# --- archive ---
@guard
def run_archive(args) -> int:
    catalog = load_catalog(args)
    courses = select_courses(args, catalog)
    layout = layout_of(args)
    total = Result()
    audit = Audit(args, "course.archive")
    try:
        for course in courses:
            course_term.archive_one(args, catalog.path, course, layout, total, audit)
    finally:
        audit.close()
    if not args.storage_root:
        err("note: files not touched; pass --storage-root to make them read-only")
    return emit_changes(
        args,
        courses,
        total,
        f"archived {len(courses)} course(s); {len(total.actions)} storage change(s)",
    )
