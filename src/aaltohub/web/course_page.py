"""The instructor's course page, ``/hub/courses/<slug>``, and "Your courses"
on the hub's home page.

For a course's instructors and the hub's admins only (the rule is
:func:`aaltohub.access.manages`). It shows, in one place, what an
instructor asks the hub operator during a term: who is enrolled and
through which groups, who runs a server of the course now and since when,
the course's recent spawn failures with their causes (from the audit log's
in-memory records), the course's storage against its quota, and the
course's announcements.

Nothing here blocks the event loop: the catalog is refreshed with its own
async API (a scan in a thread), the quota source and the announcements file
are asked in threads with ``c.CoursePage.timeout``, the user's directory
groups too, and the home page's list is read from memory (refreshed in the
background, like the quota banner). The list has every course the user
instructs, also after its term: the page itself follows
:func:`~aaltohub.access.manages`, which ignores the term.

Enable it in ``jupyterhub_config.py`` with one line::

    from aaltohub.web import course_page; course_page.configure(c)
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jupyterhub.handlers import BaseHandler
from tornado import web
from traitlets import Float, Int
from traitlets.config import LoggingConfigurable

from ..access import Enrolment, Viewer, enrolment, manages, visible_roles
from ..announcements import announcements
from ..audit import audit_log
from ..catalog import CourseCatalog
from ..course import SLUG_RE, Course
from ..servers import ServerRecord
from ..shared import shared_instance
from ..storage.quota import NoQuota, human_bytes
from ..storage.quota_policy import QuotaPolicy
from .pages import add_template_dir, add_template_var

TEMPLATE_DIR = str(Path(__file__).parent / "templates" / "course_page")
#: The page's template (a name of its own, so it cannot shadow a hub page).
TEMPLATE = "aaltohub-course.html"
#: Template variable of the home page's "Your courses" list.
TEMPLATE_VAR = "aaltohub_courses"
#: Below the hub's prefix: /hub/courses/<slug>. A slug is checked against
#: the course slug pattern before anything else, so "..", "%2F" and the
#: like are unknown courses (404).
URL_PATTERN = r"/courses/([^/]+)/?"
#: The audit records that mean "a server of this course did not start", as
#: (action, outcome): a start that failed (the cause in ``reason``), a spawn
#: that failed before its start (the directory did not answer), and a spawn
#: the access check refused (the user is not on the course). The names are
#: those of ``aaltohub.audit.ACTIONS`` (docs/operations.md, "Audit log").
FAILURES = frozenset(
    {("server-fail", "failed"), ("spawn", "failed"), ("spawn", "refused")}
)


class CoursePage(LoggingConfigurable):
    """Settings of the instructor's course page. One per hub config."""

    timeout = Float(
        5.0,
        help="""Seconds the page waits for each slow source (the course
        directory scan, the quota source, the announcements file) before
        showing what it has, marked unknown. The page never waits longer.""",
    ).tag(config=True)

    max_failures = Int(
        50,
        help="Recent spawn failures shown on a course's page, newest first.",
    ).tag(config=True)

    refresh_interval = Float(
        300.0,
        help="""Seconds a user's directory groups are reused for the "Your
        courses" list on the home page before they are looked up again (in
        the background; the home page never waits for it).""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._viewers: dict[str, tuple[Viewer, float]] = {}
        self._inflight: dict[str, asyncio.Task] = {}
        # username -> ((viewer, catalog generation), the courses they teach)
        self._taught: dict[str, tuple[tuple, list[dict[str, str]]]] = {}

    def taught(self, viewer: Viewer, catalog: CourseCatalog) -> list[dict[str, str]]:
        """The courses ``viewer`` instructs, whatever their term (their page
        still works after it, :func:`~aaltohub.access.manages`), by name.
        Only the courses naming the viewer or their groups are checked
        (every course for a default instructor); the answer is kept until
        the viewer's groups or the catalog change."""
        key = (viewer, catalog.generation)
        hit = self._taught.get(viewer.username)
        if hit is not None and hit[0] == key:
            return hit[1]
        rules = catalog.rules
        courses = catalog.courses
        if viewer.username in rules.default_instructors:
            candidates = list(courses.values())
        else:
            candidates = [
                c for s in catalog.index.related(viewer) if (c := courses.get(s))
            ]
        # Admins manage every course; the list shows only those they teach.
        courses = sorted(
            (
                c
                for c in candidates
                if manages(c, viewer, rules)
                and enrolment(c, viewer, rules) is Enrolment.INSTRUCTOR
            ),
            key=lambda c: (c.name.lower(), c.slug),
        )
        found = [{"slug": c.slug, "name": c.name} for c in courses]
        self._taught[viewer.username] = (key, found)
        return found

    def remember(self, viewer: Viewer) -> None:
        self._viewers[viewer.username] = (viewer, time.monotonic())

    def known_viewer(self, user) -> Viewer:
        """The user as last looked up (groups included), without I/O;
        refreshed in the background when older than refresh_interval."""
        hit = self._viewers.get(user.name)
        if hit is None or time.monotonic() - hit[1] > self.refresh_interval:
            self._schedule(user)
        if hit is not None:
            return hit[0]
        return Viewer(user.name, bool(user.admin))

    def _schedule(self, user) -> None:
        if user.name in self._inflight:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # rendered outside the loop: skip
        task = loop.create_task(self._refresh(user))
        self._inflight[user.name] = task
        task.add_done_callback(lambda _t: self._inflight.pop(user.name, None))

    async def _refresh(self, user) -> None:
        try:
            viewer = await asyncio.wait_for(viewer_of(user, self), self.timeout)
            catalog = catalog_of(self.config)
            if catalog.path:
                await asyncio.wait_for(
                    asyncio.shield(catalog.ensure_fresh()), self.timeout
                )
                self.taught(viewer, catalog)  # here, not in the page's render
        except Exception as e:  # the list is a convenience: log, keep going
            self.log.warning(
                "course-page user=%s action=refresh error=%r", user.name, e
            )


def course_page(config) -> CoursePage:
    """The one CoursePage of this hub config."""
    return shared_instance(CoursePage, config)


def catalog_of(config) -> CourseCatalog:
    """The hub's catalog: the same instance the course spawners use."""
    return shared_instance(CourseCatalog, config)


async def viewer_of(user, page: CoursePage) -> Viewer:
    """The user as the access rules see them, through their course
    spawner's identity (directory groups, auth_state as fallback)."""
    spawner = user.spawner
    if not hasattr(spawner, "get_viewer"):  # not a course spawner: no groups
        viewer = Viewer(user.name, bool(user.admin))
    else:
        try:
            spawner.remember_auth_state(await user.get_auth_state())
        except Exception as e:  # auth_state off or unreadable: look it up
            page.log.debug("course-page user=%s auth_state: %r", user.name, e)
        viewer = await spawner.get_viewer()
    page.remember(viewer)
    return viewer


# --- what the page shows: plain data for the template --------------------------------
def enrolment_of(course: Course, catalog: CourseCatalog) -> dict[str, Any]:
    rules = catalog.rules
    instructor_groups = {rules.instructor_group(course), *course.instructor_groups}
    return {
        "students": sorted(course.students),
        "instructors": sorted(course.instructors),
        "default_instructors": sorted(rules.default_instructors),
        "student_groups": sorted(course.student_groups),
        "instructor_groups": sorted(instructor_groups),
    }


def since(started: str, now: datetime | None = None) -> str:
    """'2 h 5 min' from an ISO time; '' if unknown."""
    try:
        when = datetime.fromisoformat(started)
    except (TypeError, ValueError):
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    minutes = int(((now or datetime.now(UTC)) - when).total_seconds() // 60)
    if minutes < 0:
        return ""
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def running_servers(users, slug: str) -> list[dict[str, Any]]:
    """Servers of the course the hub knows are starting or running."""
    rows = []
    for user in list(users.values()):
        for name, spawner in list(user.spawners.items()):
            record = getattr(spawner, "server_record", None)
            if not isinstance(record, ServerRecord) or record.course != slug:
                continue
            if not spawner.active:
                continue
            rows.append(
                {
                    "user": user.name,
                    "server": name,
                    "role": record.role,
                    "started": record.started,
                    "since": since(record.started),
                    "status": "running" if spawner.ready else "starting",
                }
            )
    return sorted(rows, key=lambda r: (r["started"], r["user"], r["server"]))


def recent_failures(config, slug: str, limit: int) -> list[dict[str, Any]]:
    """The course's spawn failures kept in memory by the audit log."""
    records = [
        {**r, "refused": r.get("outcome") == "refused"}
        for r in audit_log(config).recent(course=slug)
        if (r.get("action"), r.get("outcome")) in FAILURES
    ]
    return list(reversed(records))[:limit]


async def storage_use(config, course: Course, group: str, timeout: float) -> dict:
    """The course's group or project quota; known False when no source
    knows it (no source configured, none for courses, or it timed out)."""
    source = shared_instance(QuotaPolicy, config).source
    unknown = {"known": False, "why": "no quota source is configured"}
    if isinstance(source, NoQuota):
        return unknown
    try:
        usage = await asyncio.wait_for(source.course_usage(course, group), timeout)
    except Exception as e:
        source.log.warning("course-page course=%s quota error=%r", course.slug, e)
        return {"known": False, "why": "the quota source did not answer"}
    if usage is None:
        return {"known": False, "why": "the quota source has no entry for it"}
    return {
        "known": True,
        "used": human_bytes(usage.used),
        "limit": human_bytes(usage.limit) if usage.limit else "no limit",
        "percent": None if usage.percent is None else round(usage.percent),
        "over": usage.over_limit,
        "source": usage.source,
    }


async def course_announcements(config, slug: str, timeout: float) -> list[dict]:
    """Unexpired notices for the course (hub-wide ones marked as such); the
    file is read in a thread (it is on the hub's volume)."""
    try:
        items = await asyncio.wait_for(
            asyncio.to_thread(announcements(config).active, slug), timeout
        )
    except Exception as e:
        course_page(config).log.warning("course-page announcements error=%r", e)
        return []
    return [
        {"text": a.text, "hub_wide": not a.course, "until": a.until, "by": a.author}
        for a in items
    ]


# --- the handler ---------------------------------------------------------------------
class CoursePageHandler(BaseHandler):
    """GET /hub/courses/<slug>: 200 for the course's instructors and admins,
    403 for others who can see the course, 404 for unknown slugs and
    private courses the user is not on (their names do not leak)."""

    @web.authenticated
    async def get(self, slug: str):
        page = course_page(self.config)
        catalog = catalog_of(self.config)
        if not SLUG_RE.fullmatch(slug) or not catalog.path:
            raise web.HTTPError(404, "No such course.")
        try:
            # shielded: a slow directory keeps scanning for the next request,
            # and this page shows the courses it already knows
            await asyncio.wait_for(asyncio.shield(catalog.ensure_fresh()), page.timeout)
        except TimeoutError:
            self.log.warning("course-page catalog scan slower than %ss", page.timeout)
        course = catalog.get(slug)
        if course is None:
            raise web.HTTPError(404, "No such course.")
        user = self.current_user
        try:
            viewer = await asyncio.wait_for(viewer_of(user, page), page.timeout)
        except TimeoutError:
            # As when the directory is down: the groups last seen (or none).
            self.log.warning(
                "course-page user=%s directory slower than %ss", user.name, page.timeout
            )
            viewer = page.known_viewer(user)
        if not manages(course, viewer, catalog.rules):
            if not visible_roles(course, viewer, catalog.rules):
                raise web.HTTPError(404, "No such course.")
            raise web.HTTPError(
                403, "This page is for the course's instructors and the hub's admins."
            )
        html = await self.render_template(
            TEMPLATE, **await self.namespace(course, catalog, page)
        )
        self.finish(html)

    async def namespace(self, course: Course, catalog: CourseCatalog, page) -> dict:
        group = catalog.rules.instructor_group(course)
        storage, notices = await asyncio.gather(
            storage_use(self.config, course, group, page.timeout),
            course_announcements(self.config, course.slug, page.timeout),
        )
        return {
            "course": course,
            "enrolment": enrolment_of(course, catalog),
            "running": running_servers(self.users, course.slug),
            "failures": recent_failures(self.config, course.slug, page.max_failures),
            # The failures come from this many records of the whole hub.
            "records_kept": audit_log(self.config).recent_size,
            "storage": storage,
            "course_group": group,
            "notices": notices,
        }


# --- the home page's "Your courses" --------------------------------------------------
def courses_for(user) -> list[dict[str, str]]:
    """Courses ``user`` instructs, for the home page (sync: memory only)."""
    if user is None:
        return []
    config = user.settings.get("config")
    catalog = catalog_of(config)
    if not catalog.path:
        return []
    page = course_page(config)
    return page.taught(page.known_viewer(user), catalog)


def configure(c) -> None:
    """Serve /hub/courses/<slug> and list "Your courses" on the home page.

    Keeps existing ``extra_handlers``, ``template_paths`` and
    ``template_vars``; call it after setting those.
    """
    hub = c.JupyterHub
    handlers = list(hub.extra_handlers) if "extra_handlers" in hub else []
    if not any(h[1] is CoursePageHandler for h in handlers):
        handlers.append((URL_PATTERN, CoursePageHandler))
    hub.extra_handlers = handlers
    add_template_dir(c, TEMPLATE_DIR)
    add_template_var(c, TEMPLATE_VAR, courses_for)
