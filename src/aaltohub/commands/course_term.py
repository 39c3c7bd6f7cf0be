"""``aaltohub course new-term``: next term's course from this one.

``new-term OLD NEW`` writes the course file with a new slug, dates and no
students (text edits that keep the author's comments), the instructors'
roster, and copies the course files (nbgrader's ``nbgrader_config.py``
included), optionally without the students' work. Also the steps that
``archive`` and ``end-term`` (:mod:`.course_end_term`) share: the archive
of one course and the checked edits of a course file.
"""

from __future__ import annotations

import datetime
import os
import tempfile

import yaml

from ..catalog.edit import ArchiveError, set_archive_flag, write_atomically
from ..catalog.edit_keys import edit_keys
from ..course import SLUG_RE, CourseError, build_course
from ..storage import course_dirs
from ..storage.problems import Result
from ..storage.retention_store import copy_tree, real_path
from .course_common import (
    Audit,
    UsageError,
    emit_changes,
    entries_of,
    err,
    guard,
    layout_of,
    load_catalog,
    select_courses,
    storage_root,
)

#: Left out by ``new-term --without-student-work`` (in the course files).
STUDENT_WORK = ("autograded", "submitted", "feedback", "gradebook.db")


def register(actions, common_options, audit, dry_run_option, progress_option) -> None:
    new = actions.add_parser(
        "new-term",
        parents=[common_options(False), dry_run_option(), progress_option(), audit],
        help="make next term's course from this one: course file (new slug,"
        " dates, no students) and course files",
    )
    new.add_argument("old", metavar="OLD", help="this term's course slug")
    new.add_argument("new", metavar="NEW", help="the new course's slug")
    new.add_argument("--starts", metavar="DATE", help="term.starts, e.g. 2027-01-08")
    new.add_argument("--ends", metavar="DATE", help="term.ends: students lose access")
    new.add_argument("--name", help="the new course's name (default: the old one's)")
    new.add_argument("--gid", type=int, help="the new course's group id")
    new.add_argument(
        "--without-student-work",
        action="store_true",
        help="do not copy " + ", ".join(STUDENT_WORK) + " from the course files",
    )
    new.set_defaults(func=run_new_term)


# --- shared steps -----------------------------------------------------------------
def archive_one(args, catalog_path, course, layout, total: Result, audit) -> None:
    """``archive: true`` in the course file, and its storage read-only."""
    path = os.path.join(catalog_path, f"{course.slug}.yaml")
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
        audit.record("flag", course=course.slug, target=path)
    if args.storage_root:
        # The archived layout is the read-only one; fixing to it removes
        # write bits everywhere and keeps directories traversable.
        result = course_dirs.run(
            args.storage_root,
            entries_of(layout, layout.archived(course), total),
            fix=True,
            dry_run=args.dry_run,
            progress=course_dirs.Progress(args.progress),
        )
        for action in result.actions:
            audit.record("storage", course=course.slug, target=action)
        total.extend(result)


def when_arg(text: str, option: str):
    """A date or time given on the command line, as YAML will write it."""
    try:
        if len(text) == 10:
            return datetime.date.fromisoformat(text)
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: use a date (2027-05-31) or a time"
            " (2027-05-31T23:59+03:00)"
        ) from None


def edit_course_file(path: str, changes: dict, dry_run: bool) -> bool:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    new = edit_keys(text, changes)
    slug = os.path.basename(path)[: -len(".yaml")]
    try:
        build_course(slug, yaml.safe_load(new), source=os.path.basename(path))
    except CourseError as e:
        raise UsageError(f"the edited course file would be invalid: {e}") from None
    if new == text:
        return False
    if not dry_run:
        write_atomically(path, new)
    return True


def read_raw(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


# --- new-term ---------------------------------------------------------------------
@guard
def run_new_term(args) -> int:
    catalog = load_catalog(args)
    args.slugs, args.all = [args.old], False
    (old,) = select_courses(args, catalog)
    if not SLUG_RE.fullmatch(args.new) or args.new == args.old:
        raise UsageError(
            f"NEW {args.new!r}: give a new slug of lowercase letters, digits,"
            " '-' and '_'"
        )
    audit, total = Audit(args, "course.new-term"), Result()
    try:
        text = _new_course_file(args, catalog.path, old, total, audit)
        new = build_course(args.new, yaml.safe_load(text), source=f"{args.new}.yaml")
        if args.storage_root:
            _copy_course_files(args, old, new, total, audit)
        else:
            err("note: course files not copied; pass --storage-root to copy them")
    finally:
        audit.close()
    return emit_changes(
        args,
        [old],
        total,
        f"new term {args.new} from {args.old}: {len(total.actions)} change(s)",
    )


def _new_course_file(args, catalog_path, old, total: Result, audit) -> str:
    """Write NEW.yaml (and the instructors' roster); return its text. An
    existing NEW.yaml is kept as it is, so a re-run only copies files."""
    src = os.path.join(catalog_path, f"{old.slug}.yaml")
    dst = os.path.join(catalog_path, f"{args.new}.yaml")
    if os.path.lexists(dst):
        total.actions.append(f"kept {dst}: it exists")
        with open(dst, encoding="utf-8") as f:
            return f.read()
    with open(src, encoding="utf-8") as f:
        text = f.read()
    term = {}
    if args.starts:
        term["starts"] = when_arg(args.starts, "--starts")
    if args.ends:
        term["ends"] = when_arg(args.ends, "--ends")
    changes = {
        "students": None,  # an empty roster
        "archive": None,
        "archived": None,
        "coursedir_slug": None,  # never share last term's directories
        "term": term or None,
    }
    if args.name:
        changes["name"] = args.name
    if args.gid is not None:
        changes["gid"] = args.gid
    new = edit_keys(text, changes)
    try:
        build_course(args.new, yaml.safe_load(new), source=f"{args.new}.yaml")
    except CourseError as e:
        raise UsageError(f"the new course file would be invalid: {e}") from None
    verb = "would write" if args.dry_run else "wrote"
    _write_new(dst, new, src, args.dry_run)
    total.actions.append(f"{verb} {dst}")
    audit.record("course-file", course=args.new, target=dst, reason=f"from {old.slug}")
    roster = os.path.join(catalog_path, f"{old.slug}-users.yaml")
    instructors = (
        read_raw(roster).get("instructors") if os.path.exists(roster) else None
    )
    if instructors:
        out = os.path.join(catalog_path, f"{args.new}-users.yaml")
        body = yaml.safe_dump({"instructors": instructors}, sort_keys=False)
        _write_new(out, body, roster, args.dry_run)
        total.actions.append(f"{verb} {out} (instructors only)")
    return new


def _write_new(path: str, text: str, like: str, dry_run: bool) -> None:
    if dry_run:
        return
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".new-term-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, os.stat(like).st_mode & 0o7777)
        os.link(tmp, path)  # fails if the name was taken meanwhile
    finally:
        os.unlink(tmp)


def _copy_course_files(args, old, new, total: Result, audit) -> None:
    layout, root = layout_of(args), storage_root(args)
    src = real_path(root, layout.paths.course_files(old))
    if os.path.islink(src) or not os.path.isdir(src):
        total.actions.append(f"no course files at {src}: nothing to copy")
        return
    # The new course's directories first, with its owners and modes.
    made = course_dirs.run(
        root, entries_of(layout, new, total), fix=True, dry_run=args.dry_run, walk=False
    )
    total.extend(made)
    rel_dst = layout.paths.course_files(new)
    dst = os.path.join(root, rel_dst)
    work = STUDENT_WORK if args.without_student_work else ()
    refused: list[str] = []
    # The new course's instructors may write in dst (and the old one's in
    # src) while this runs as root: copy_tree works through directory
    # descriptors and never follows a directory swapped for a link.
    count = copy_tree(
        root,
        layout.paths.course_files(old),
        rel_dst,
        skip=lambda rel: rel in work,
        uid=new.uid if new.uid is not None else layout.course_uid,
        gid=new.gid,
        progress=course_dirs.Progress(args.progress),
        dry_run=args.dry_run,
        refused=refused,
    )
    verb = "would copy" if args.dry_run else "copied"
    total.actions.append(f"{verb} {count} entries from {src} to {dst}")
    for rel in refused:
        total.actions.append(
            f"not copied: {rel} (a special file or one with other hard links)"
        )
    if count and not args.dry_run:
        # What was copied gets the new course's group and modes, as
        # 'course fix' would make them.
        fixed = course_dirs.run(root, entries_of(layout, new, total), fix=True)
        total.unfixed.extend(fixed.unfixed)
        total.actions.append(f"fixed {len(fixed.actions)} mode/owner(s) in {dst}")
    if count:
        audit.record("files", course=new.slug, target=dst, reason=f"{count} entries")
