"""``aaltohub course end-term``: the end of a course's term, step by step.

Runs the steps of :data:`aaltohub.term.END_TERM_STEPS`: students' access
(the dates in the course file), a notice, stopping the course's running
servers (the hub's REST API; they mount the course files read-write), the
gradebook export (nbgrader's own ``export``), the archive. Each checks
the facts before it acts, so running it again does only what is left;
each is audited and recorded under ``term.end_term`` for ``course list``.
Access itself is enforced by the hub (:func:`aaltohub.term.phase`)
whether or not this command runs.
"""

from __future__ import annotations

import datetime
import json
import os
import time

from ..announcements import PATH_ENV, AnnouncementError, AnnouncementStore
from ..storage.gradebook_export import ExportError, export_gradebook, needs_export
from ..storage.problems import Result
from ..storage.retention_store import real_path
from ..term import as_time, day, iso, now_utc
from .course_common import (
    Audit,
    err,
    guard,
    layout_of,
    load_catalog,
    select_courses,
)
from .course_term import archive_one, edit_course_file, read_raw, when_arg
from .hub_api import HubError, add_hub_options, hub_from_args


def register(actions, common_options, audit, dry_run_option, progress_option) -> None:
    end = actions.add_parser(
        "end-term",
        parents=[common_options(False), dry_run_option(), progress_option(), audit],
        help="end a course's term: students' access, notice, running servers,"
        " gradebook export, archive (idempotent)",
    )
    end.add_argument("slug", metavar="SLUG")
    end.add_argument(
        "--at", metavar="TIME", help="when students lose access (default: now)"
    )
    end.add_argument(
        "--grace",
        type=int,
        default=30,
        metavar="DAYS",
        help="days after that instructors keep read-only access (default: 30; 0: none)",
    )
    end.add_argument(
        "--announcements",
        metavar="FILE",
        default=os.environ.get(PATH_ENV),
        help=f"the hub's announcements file (default: ${PATH_ENV})",
    )
    add_hub_options(end)
    end.set_defaults(func=run_end_term)


# --- end-term ---------------------------------------------------------------------
class _Steps:
    """What end-term did, step by step, for the output and the record."""

    def __init__(self, args, slug: str):
        self.args, self.slug = args, slug
        self.audit = Audit(args, "course.end-term")
        self.lines: list[str] = []
        self.done: list[str] = []
        self.missing = 0

    def ok(self, step: str, what: str, changed: bool = True, target: str = "") -> None:
        dry = " (dry run: not done)" if self.args.dry_run and changed else ""
        self.lines.append(f"{step}: {what}{dry}")
        self.done.append(step)
        if changed:
            self.audit.record(step, course=self.slug, target=target, reason=what)

    def skip(self, step: str, why: str, failed: bool = False) -> None:
        self.lines.append(f"{step}: {'FAILED' if failed else 'not done'}: {why}")
        self.missing += 1
        outcome = "failed" if failed else "skipped"
        self.audit.record(step, course=self.slug, outcome=outcome, reason=why)


@guard
def run_end_term(args) -> int:
    catalog = load_catalog(args)
    args.slugs, args.all = [args.slug], False
    (course,) = select_courses(args, catalog)
    path = os.path.join(catalog.path, f"{course.slug}.yaml")
    now = now_utc()
    ends = as_time(when_arg(args.at, "--at"), "--at", True) if args.at else now
    until = ends + datetime.timedelta(days=args.grace) if args.grace > 0 else None
    steps = _Steps(args, course.slug)
    try:
        _step_access(steps, path, ends, until)
        _step_notice(steps, course, ends, until)
        if now < ends:
            steps.lines.append(
                f"students lose access at {day(ends)} UTC; run this again after"
                " then to stop servers, export the gradebook and archive"
            )
        else:
            # Servers first: they mount the course files read-write, and
            # the export should read a gradebook nobody is changing.
            if _step_servers(steps, course):
                _step_gradebook(steps, course)
            else:
                steps.skip("gradebook", "servers still running: run this again")
            layout, total = layout_of(args), Result()
            archive_one(args, catalog.path, course, layout, total, steps.audit)
            done = f"archived; {len(total.actions)} change(s)" if total.actions else ""
            steps.ok("archive", done or "archived already", bool(done))
            if total.unfixed:
                steps.skip("archive", f"{len(total.unfixed)} storage problem(s)", True)
        _record(steps, path, now)
    finally:
        steps.audit.close()
    if args.json:
        done = list(dict.fromkeys(steps.done))
        print(json.dumps({"course": course.slug, "done": done, "lines": steps.lines}))
    else:
        print("\n".join(steps.lines))
    err(
        f"end-term {course.slug}: {len(set(steps.done))} step(s) done,"
        f" {steps.missing} not"
        + (" (dry run: nothing changed)" if args.dry_run else "")
    )
    return 1 if steps.missing else 0


def _step_access(steps: _Steps, path: str, ends, until) -> None:
    term = dict(read_raw(path).get("term") or {})
    old = (term.get("ends"), term.get("instructors_until"))
    same = old[0] is not None and as_time(old[0], "term.ends", True) == ends
    same = same and (
        (as_time(old[1], "x", True) if old[1] is not None else None) == until
    )
    if same:
        steps.ok("access", "dates set already", False)
        return
    term["ends"] = ends
    term.pop("instructors_until", None)
    if until is not None:
        term["instructors_until"] = until
    edit_course_file(path, {"term": term}, steps.args.dry_run)
    grace = f"instructors read-only until {day(until)} UTC" if until else "no grace"
    steps.ok("access", f"students lose access at {day(ends)} UTC; {grace}", target=path)


def _notice_text(course, ends, until) -> str:
    text = f"{course.name}: the term ends {day(ends)} UTC, and students lose access to"
    text += " this course's environment then."
    if until:
        text += f" Instructors keep read-only access until {day(until)} UTC."
    return text + " Save a copy of anything you want to keep."


def _step_notice(steps: _Steps, course, ends, until) -> None:
    if not steps.args.announcements:
        steps.skip("notice", f"no announcements file (--announcements or ${PATH_ENV})")
        return
    store = AnnouncementStore(steps.args.announcements)
    text = _notice_text(course, ends, until)
    try:
        if any(a.text == text for a in store.active(course.slug)):
            steps.ok("notice", "announced already", False)
            return
        expiry = max(until or ends, now_utc()) + datetime.timedelta(days=7)
        if not steps.args.dry_run:
            store.add(text, course=course.slug, until=expiry, author="end-term")
    except (AnnouncementError, OSError) as e:
        steps.skip("notice", str(e), True)
        return
    steps.ok("notice", f"announced to the course until {day(expiry)} UTC")


def _step_gradebook(steps: _Steps, course) -> None:
    if not steps.args.storage_root:
        steps.skip("gradebook", "no --storage-root")
        return
    layout = layout_of(steps.args)
    files = real_path(steps.args.storage_root, layout.paths.course_files(course))
    if not needs_export(files):
        has = os.path.exists(os.path.join(files, "gradebook.db"))
        steps.ok("gradebook", "exported already" if has else "no gradebook", False)
        return
    try:
        if steps.args.dry_run:
            dest = os.path.join(files, "gradebook-export.csv")
        else:
            dest = export_gradebook(files, course.slug, course.gid)
    except ExportError as e:
        steps.skip("gradebook", str(e), True)
        return
    steps.ok("gradebook", f"exported to {dest}", target=dest)


#: Seconds end-term waits for the course's servers to finish stopping.
STOP_WAIT = 120


def _step_servers(steps: _Steps, course) -> bool:
    """Stop the course's servers; False if some are still running (the
    hub answered that a stop is pending and it did not end in time)."""
    try:
        hub = hub_from_args(steps.args)
        servers = hub.course_servers(course.slug)
        for user, name in servers:
            if not steps.args.dry_run:
                hub.stop(user, name)
            steps.audit.record("stop", course=course.slug, target=f"{user}/{name}")
        left = (
            _still_running(hub, course.slug)
            if servers and not steps.args.dry_run
            else []
        )
    except HubError as e:
        steps.skip("servers", str(e), True)
        return True  # unknown: the export works on a copy anyway
    if left:
        names = ", ".join(f"{u}/{n}" if n else u for u, n in left)
        steps.skip(
            "servers",
            f"still stopping after {STOP_WAIT} s: {names}; check them on the"
            " hub's admin page, then run this again",
            True,
        )
        return False
    names = ", ".join(f"{u}/{n}" if n else u for u, n in servers)
    steps.ok(
        "servers",
        f"stopped {len(servers)}: {names}" if servers else "none running",
        bool(servers),
    )
    return True


def _still_running(hub, slug: str) -> list[tuple[str, str]]:
    """The course's servers still running or stopping, after waiting up to
    STOP_WAIT seconds (a stop the hub answers 202 to goes on after it)."""
    deadline = time.monotonic() + STOP_WAIT
    while (left := hub.course_servers(slug)) and time.monotonic() < deadline:
        time.sleep(1)
    return left


def _record(steps: _Steps, path: str, now) -> None:
    """Note the steps done under term.end_term, for ``course list``."""
    term = dict(read_raw(path).get("term") or {})
    record = dict(term.get("end_term") or {})
    new = {s: record.get(s) or iso(now) for s in dict.fromkeys(steps.done)}
    if {**record, **new} == record:
        return
    term["end_term"] = {**record, **new}
    edit_course_file(path, {"term": term}, steps.args.dry_run)
