"""``aaltohub course create|check|fix|list|archive``: course directories.

The layout (modes, owners, groups) comes from
:class:`aaltohub.storage.StorageLayout`; walking and repairing from
:mod:`aaltohub.storage.course_dirs`; the course-file edit behind ``archive``
from :mod:`aaltohub.catalog.edit`. This module parses arguments, picks
courses from the catalog and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import yaml

from ..catalog import CourseCatalog
from ..catalog.edit import ArchiveError, set_archive_flag, write_atomically
from ..course import Course
from ..identity.static import parse_static_users
from ..nbgrader_exchange import nss_uid
from ..storage import course_dirs
from ..storage.layout import LayoutError, StorageLayout
from ..storage.problems import Problem, Result


def _common(require_root: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--catalog",
        metavar="DIR",
        default=os.environ.get("AALTOHUB_CATALOG"),
        help="course catalog directory (default: $AALTOHUB_CATALOG)",
    )
    p.add_argument(
        "--storage-root",
        metavar="DIR",
        default=os.environ.get("AALTOHUB_STORAGE_ROOT"),
        help="the storage volume as mounted here, a local path or an NFS mount"
        " (default: $AALTOHUB_STORAGE_ROOT)" + ("" if require_root else "; optional"),
    )
    p.add_argument(
        "--course-uid",
        type=int,
        default=None,
        help="owner of the course directories (default: 0, root)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _selection() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("slugs", nargs="*", metavar="SLUG", help="courses to work on")
    p.add_argument("--all", action="store_true", help="every course in the catalog")
    return p


def _dry_run() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--dry-run", action="store_true", help="show what would change; change nothing"
    )
    return p


def _progress() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress line on stderr (default: when stderr is a terminal)",
    )
    return p


def _submissions() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--student-uids",
        metavar="SOURCE",
        help="verify who made each nbgrader submission: 'nss' (this host's user"
        " database, e.g. sssd with the campus directory) or a YAML/JSON file of"
        " 'username: uid' (a StaticIdentity users file works too); a student it"
        " does not know is reported. Without it, a submission is reported when"
        " its owner also submitted under another name or its name has"
        " submissions of several owners",
    )
    return p


def register(sub) -> None:
    p = sub.add_parser(
        "course",
        help="create, check and repair course directories; list and archive courses",
        description="Work on course directories on a storage root, as the"
        " catalog describes them.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    needs_root = _common(True)
    actions.add_parser(
        "create",
        parents=[needs_root, _selection(), _dry_run()],
        help="make missing course directories with the right owners and modes",
    ).set_defaults(func=run_create)
    actions.add_parser(
        "check",
        parents=[needs_root, _selection(), _progress(), _submissions()],
        help="report every wrong mode, owner or group and every leak; exit 1 if any",
    ).set_defaults(func=run_check)
    actions.add_parser(
        "fix",
        parents=[needs_root, _selection(), _dry_run(), _progress(), _submissions()],
        help="repair what check reports, touching only wrong entries",
    ).set_defaults(func=run_fix)
    actions.add_parser(
        "list",
        parents=[_common(False)],
        help="courses with role counts and status (and storage status)",
    ).set_defaults(func=run_list)
    archive = actions.add_parser(
        "archive",
        parents=[_common(False), _dry_run(), _progress()],
        help="mark courses archived and make their files read-only",
    )
    archive.add_argument("slugs", nargs="+", metavar="SLUG")
    archive.set_defaults(func=run_archive, all=False)


# --- helpers ---
class UsageError(Exception):
    pass


def _err(*parts) -> None:
    print(*parts, file=sys.stderr)


def _catalog(args) -> CourseCatalog:
    if not args.catalog:
        raise UsageError("no catalog: pass --catalog DIR or set AALTOHUB_CATALOG")
    if not os.path.isdir(args.catalog):
        raise UsageError(f"catalog {args.catalog} is not a directory")
    catalog = CourseCatalog(path=args.catalog).load()
    for line in catalog.problems():
        _err(f"warning: {line}")
    return catalog


def _layout(args) -> StorageLayout:
    layout = StorageLayout()
    if args.course_uid is not None:
        layout.course_uid = args.course_uid
    return layout


def _root(args) -> str:
    if not args.storage_root:
        raise UsageError(
            "no storage root: pass --storage-root DIR or set AALTOHUB_STORAGE_ROOT"
        )
    return args.storage_root


def _student_uid(args):
    """The ``--student-uids`` source as a lookup, or None when not given."""
    source = getattr(args, "student_uids", None)
    if not source:
        return None
    if source == "nss":
        return nss_uid
    try:
        with open(source, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"--student-uids {source}: cannot read it: {e}") from None
    try:
        if isinstance(data, dict) and "users" in data:
            return {n: i.uid for n, i in parse_static_users(data, source).items()}.get
        if isinstance(data, dict) and all(
            isinstance(k, str) and type(v) is int for k, v in data.items()
        ):
            return data.get
    except ValueError as e:
        raise UsageError(f"--student-uids {e}") from None
    raise UsageError(
        f"--student-uids {source}: expected 'username: uid' lines (numbers), or"
        " a StaticIdentity users file; or pass 'nss'"
    )


def _select(args, catalog: CourseCatalog) -> list[Course]:
    if args.all:
        if args.slugs:
            raise UsageError("give course slugs or --all, not both")
        return [catalog.courses[s] for s in sorted(catalog.courses)]
    if not args.slugs:
        raise UsageError("name the courses to work on, or pass --all")
    out = []
    for slug in args.slugs:
        course = catalog.get(slug)
        if course is None:
            reason = catalog.errors.get(slug) or f"no course file {slug}.yaml"
            raise UsageError(f"course {slug}: {reason} (in {catalog.path})")
        out.append(course)
    return out


def _guard(func):
    def wrapper(args) -> int:
        try:
            return func(args)
        except (UsageError, course_dirs.StorageRootError, ArchiveError) as e:
            _err(f"error: {e}")
            return 2

    wrapper.__name__ = func.__name__
    return wrapper


def _entries(layout, course, result):
    try:
        return layout.entries(course)
    except LayoutError as e:
        result.problems.append(Problem(course.slug, "layout", str(e), False))
        result.unfixed.append(result.problems[-1])
        return []


def _walk(args, courses, *, fix, dry_run=False, walk=True, submissions=False) -> Result:
    layout, root = _layout(args), _root(args)
    student_uid = _student_uid(args) if submissions else None
    total = Result()
    progress = course_dirs.Progress(getattr(args, "progress", None))
    for course in courses:
        entries = _entries(layout, course, total)
        total.extend(
            course_dirs.run(
                root,
                entries,
                fix=fix,
                dry_run=dry_run,
                walk=walk,
                progress=progress,
                submissions=submissions,
                student_uid=student_uid,
            )
        )
    return total


def _emit(args, courses, result, lines, summary) -> None:
    if args.json:
        print(
            json.dumps(
                {
                    "courses": [c.slug for c in courses],
                    "problems": [p.to_dict() for p in result.problems],
                    "actions": result.actions,
                    "unfixed": [p.to_dict() for p in result.unfixed],
                    "scanned": result.scanned,
                },
                indent=2,
            )
        )
        return
    for line in lines:
        print(line)
    _err(summary)


def _emit_changes(args, courses, result, summary) -> int:
    """Report what create, fix or archive changed (or, in a dry run, would):
    the actions, then what could not be repaired. 1 if anything is left."""
    _emit(
        args,
        courses,
        result,
        result.actions + [f"error: {p}" for p in result.unfixed],
        summary,
    )
    return 1 if result.unfixed else 0


# --- create / check / fix ---
@_guard
def run_create(args) -> int:
    courses = _select(args, _catalog(args))
    result = _walk(args, courses, fix=True, dry_run=args.dry_run, walk=False)
    verb = "would make" if args.dry_run else "made"
    return _emit_changes(
        args,
        courses,
        result,
        f"{len(courses)} course(s): {verb} {len(result.actions)} change(s),"
        f" {len(result.unfixed)} error(s)",
    )


@_guard
def run_check(args) -> int:
    courses = _select(args, _catalog(args))
    result = _walk(args, courses, fix=False, submissions=True)
    by_hand = sum(not p.fixable for p in result.problems)
    hints = []
    if len(result.problems) > by_hand:
        hints.append("run 'aaltohub course fix' to repair")
    if by_hand:
        hints.append(f"{by_hand} need a human ('fix' will not change them)")
    _emit(
        args,
        courses,
        result,
        [str(p) for p in result.problems],
        f"{len(courses)} course(s), {result.scanned:,} entries checked,"
        f" {len(result.problems)} problem(s)" + "".join(f"; {h}" for h in hints),
    )
    return 1 if result.problems else 0


@_guard
def run_fix(args) -> int:
    courses = _select(args, _catalog(args))
    result = _walk(args, courses, fix=True, dry_run=args.dry_run, submissions=True)
    verb = "would make" if args.dry_run else "made"
    return _emit_changes(
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


@_guard
def run_list(args) -> int:
    catalog = _catalog(args)
    layout = _layout(args)
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
            line.append(r.get("storage", "-"))
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for r in rows:
        if r["status"] == "invalid":
            _err(f"invalid: {r['error']}")
    return 0


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
@_guard
def run_archive(args) -> int:
    catalog = _catalog(args)
    courses = _select(args, catalog)
    layout = _layout(args)
    total = Result()
    for course in courses:
        path = os.path.join(catalog.path, f"{course.slug}.yaml")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            new = set_archive_flag(text)
        except ArchiveError as e:
            raise ArchiveError(f"course file {path}: {e}") from None
        if new != text:
            verb = "would set" if args.dry_run else "set"
            total.actions.append(f"{verb} archive: true in {path}")
            if not args.dry_run:
                write_atomically(path, new)
        if args.storage_root:
            # The archived layout is the read-only one; fixing to it removes
            # write bits everywhere and keeps directories traversable.
            archived = layout.archived(course)
            result = course_dirs.run(
                args.storage_root,
                _entries(layout, archived, total),
                fix=True,
                dry_run=args.dry_run,
                progress=course_dirs.Progress(args.progress),
            )
            total.extend(result)
    if not args.storage_root:
        _err("note: files not touched; pass --storage-root to make them read-only")
    return _emit_changes(
        args,
        courses,
        total,
        f"archived {len(courses)} course(s); {len(total.actions)} storage change(s)",
    )
