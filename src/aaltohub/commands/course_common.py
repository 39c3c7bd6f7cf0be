"""What the ``aaltohub course`` sub-commands share: options, the catalog,
the selection of courses, error handling, output and the audit log.

Every command that changes state writes audit records through
:func:`aaltohub.audit.cli_audit_log` (``--audit-log``, else
$AALTOHUB_AUDIT_LOG) and flushes them before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import yaml

from ..audit import cli_actor, cli_audit_log
from ..catalog import CourseCatalog
from ..catalog.edit import ArchiveError
from ..course import Course
from ..identity.static import parse_static_users
from ..nbgrader_exchange import nss_uid
from ..storage import course_dirs
from ..storage.layout import LayoutError, StorageLayout
from ..storage.paths import UnsafePath
from ..storage.problems import Problem, Result


def add_catalog_option(
    p, help: str = "course catalog directory (default: $AALTOHUB_CATALOG)"
) -> None:
    """``--catalog DIR``, $AALTOHUB_CATALOG by default; ``help`` says what
    the command uses it for."""
    p.add_argument(
        "--catalog",
        metavar="DIR",
        default=os.environ.get("AALTOHUB_CATALOG"),
        help=help,
    )


def common_options(require_root: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    add_catalog_option(p)
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
    p.add_argument(
        "--config",
        metavar="FILE",
        default=os.environ.get("AALTOHUB_CONFIG"),
        help="the hub's jupyterhub_config.py, for c.StoragePaths, c.StorageLayout"
        " and c.Retention (default: $AALTOHUB_CONFIG; none: their defaults)."
        " It is Python and runs: use the hub's own file or a copy you trust",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def hub_config(args):
    """The deployer's config (``--config``), loaded once per run."""
    cached = getattr(args, "_hub_config", None)
    if cached is not None:
        return cached
    from traitlets.config import Config

    config = Config()
    if getattr(args, "config", None):
        from .check_config import load_config_file

        try:
            config = load_config_file(args.config)
        except Exception as e:  # the file is the deployer's Python
            raise UsageError(f"--config {args.config}: cannot load it: {e}") from None
    args._hub_config = config
    return config


def selection_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("slugs", nargs="*", metavar="SLUG", help="courses to work on")
    p.add_argument("--all", action="store_true", help="every course in the catalog")
    return p


def dry_run_option() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--dry-run", action="store_true", help="show what would change; change nothing"
    )
    return p


def progress_option() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress line on stderr (default: when stderr is a terminal)",
    )
    return p


def submissions_option() -> argparse.ArgumentParser:
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


class UsageError(Exception):
    pass


def err(*parts) -> None:
    print(*parts, file=sys.stderr)


def load_catalog(args) -> CourseCatalog:
    if not args.catalog:
        raise UsageError("no catalog: pass --catalog DIR or set AALTOHUB_CATALOG")
    if not os.path.isdir(args.catalog):
        raise UsageError(f"catalog {args.catalog} is not a directory")
    catalog = CourseCatalog(path=args.catalog).load()
    for line in catalog.problems():
        err(f"warning: {line}")
    return catalog


def layout_of(args) -> StorageLayout:
    layout = StorageLayout(config=hub_config(args))
    if args.course_uid is not None:
        layout.course_uid = args.course_uid
    return layout


def storage_root(args) -> str:
    if not args.storage_root:
        raise UsageError(
            "no storage root: pass --storage-root DIR or set AALTOHUB_STORAGE_ROOT"
        )
    return args.storage_root


def student_uid_of(args):
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


def select_courses(args, catalog: CourseCatalog) -> list[Course]:
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


def guard(func):
    def wrapper(args) -> int:
        try:
            return func(args)
        except (
            UsageError,
            course_dirs.StorageRootError,
            ArchiveError,
            UnsafePath,
        ) as e:
            err(f"error: {e}")
            return 2

    wrapper.__name__ = func.__name__
    return wrapper


def entries_of(layout, course, result):
    try:
        return layout.entries(course)
    except LayoutError as e:
        result.problems.append(Problem(course.slug, "layout", str(e), False))
        result.unfixed.append(result.problems[-1])
        return []


def walk(args, courses, *, fix, dry_run=False, walk=True, submissions=False) -> Result:
    layout, root = layout_of(args), storage_root(args)
    student_uid = student_uid_of(args) if submissions else None
    total = Result()
    progress = course_dirs.Progress(getattr(args, "progress", None))
    for course in courses:
        entries = entries_of(layout, course, total)
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


def emit(args, courses, result, lines, summary) -> None:
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
    err(summary)


def emit_changes(args, courses, result, summary) -> int:
    """Report what create, fix or archive changed (or, in a dry run, would):
    the actions, then what could not be repaired. 1 if anything is left."""
    emit(
        args,
        courses,
        result,
        result.actions + [f"error: {p}" for p in result.unfixed],
        summary,
    )
    return 1 if result.unfixed else 0


def audit_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--audit-log",
        metavar="FILE",
        help="append audit records to this file (default: $AALTOHUB_AUDIT_LOG;"
        " neither: no records)",
    )
    return p


class Audit:
    """The audit records of one command run; flushed when it ends."""

    def __init__(self, args, command: str):
        self.log = cli_audit_log(getattr(args, "audit_log", None))
        self.command = command
        self.dry_run = bool(getattr(args, "dry_run", False))
        self.actor = cli_actor()

    def record(self, step: str, *, course="", target="", outcome="ok", reason=""):
        if self.dry_run:
            outcome = "dry-run"
        return self.log.record(
            f"{self.command}.{step}" if step else self.command,
            actor=self.actor,
            course=course,
            target=target,
            outcome=outcome,
            reason=reason,
        )

    def close(self) -> None:
        self.log.flush()
        self.log.close()
