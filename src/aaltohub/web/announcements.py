"""Announcements on the hub's pages, and for JupyterLab through the hub's API.

Pages: every hub page that extends ``page.html`` (login, home, spawn, ...)
shows the hub-wide notices; a logged-in user also sees the notices of the
course of each of their running (or starting) servers; the spawn page also
shows the notices of every course the user can choose in its form. This
module's ``page.html`` extends JupyterHub's own and fills its
``announcement`` block, so aaltohub's home.html and spawn.html
(:mod:`aaltohub.web.pages`), which extend ``templates/home.html`` and
``templates/spawn.html``, still go through it: everything shows.

JupyterLab: ``GET /hub/api/aaltohub/announcements?server=NAME`` returns the
notices for the caller's own server: hub-wide ones and those of that
server's course (the hub knows it; the server cannot claim another). The
single-user server calls it with its own API token (``aaltohub_lab``, in
the notebook image), so no admin token is needed.

Reading: page templates are rendered by a synchronous callable, so pages
read a cache; at most every ``refresh_interval`` seconds a page load makes
a thread stat the file and re-read it if it changed. A notice set from the
CLI shows from the page load after the next check (seconds), without a restart.
The API handler reads the file in a thread on every call.

Enable it in ``jupyterhub_config.py`` (with ``c.Announcements.path`` set)::

    from aaltohub.web import announcements; announcements.configure(c)
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from dataclasses import asdict
from pathlib import Path

from traitlets import Float
from traitlets.config import LoggingConfigurable

from ..announcements import Announcement, AnnouncementError, announcements
from ..course import parse_profile_slug
from ..shared import shared_instance
from .pages import add_template_dir, add_template_var

TEMPLATE_DIR = str(Path(__file__).parent / "templates" / "announcements")
#: Name of the template variable (a :class:`PageNotices`).
TEMPLATE_VAR = "aaltohub_announcements"
#: Under the hub's prefix: /hub/api/aaltohub/announcements.
API_PATH = r"/api/aaltohub/announcements"

# The profile radio buttons of both options forms (KubeSpawner's and
# aaltohub.local's): <input ... name="profile" ... value="SLUG" ...>.
_PROFILE_INPUT = re.compile(r"<input\b[^>]*\bname=\"profile\"[^>]*>", re.I)
_VALUE = re.compile(r"\bvalue=\"([^\"]*)\"", re.I)


class PageNotices:
    """What one page's templates get (escaped by the templates)."""

    def __init__(self, items: list[Announcement], courses: set[str]):
        self._items = items
        self.hub = [a for a in items if not a.course]
        self.running = [a for a in items if a.course and a.course in courses]

    def offered(self, form: str | None) -> list[Announcement]:
        """Course notices for the courses a spawn page's form offers, other
        than those already shown for running servers. Only slugs that are in
        the form the user was given: no other course's notice or name shows."""
        slugs = set()
        for tag in _PROFILE_INPUT.findall(form or ""):
            value = _VALUE.search(tag)
            if value:
                slugs.add(parse_profile_slug(html.unescape(value.group(1)))[0])
        return [a for a in self._items if a.course in slugs and a not in self.running]


class AnnouncementBoard(LoggingConfigurable):
    """A cache of the announcements file for the hub's pages."""

    refresh_interval = Float(
        2.0,
        help="""Seconds between checks of the announcements file. From the
        first page the hub renders, a background task checks it this often
        (a stat in a thread; a re-read only when the file changed), so a
        notice set with ``aaltohub announce`` is on the next page loaded
        after at most this long. Pages themselves never wait for the file.""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._items: list[Announcement] = []
        self._checked = float("-inf")
        self._task: asyncio.Task | None = None
        self._poller: asyncio.Task | None = None

    def _read(self) -> list[Announcement]:
        """Blocking: the file's notices (cached by mtime in the store)."""
        store = announcements(self.config).store
        if store is None:
            return []
        try:
            return store.all()
        except AnnouncementError as e:
            self.log.error("announcements: %s", e)
            return []

    async def refresh(self) -> list[Announcement]:
        self._items = await asyncio.to_thread(self._read)
        self._checked = time.monotonic()
        return self._items

    def current(self) -> list[Announcement]:
        """Unexpired notices from the cache; schedules a check if due."""
        self._ensure_polling()
        if time.monotonic() - self._checked >= self.refresh_interval:
            self._schedule()
        return [a for a in self._items if not a.expired()]

    def _ensure_polling(self) -> None:
        """Keep checking the file in the background, so a new notice is in
        the cache before the next page asks (not one page later)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        poller = self._poller
        if poller is not None and not poller.done() and poller.get_loop() is loop:
            return
        self._poller = loop.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            # at least a quarter second apart, also with refresh_interval 0
            await asyncio.sleep(max(self.refresh_interval, 0.25))
            try:
                await self.refresh()
            except Exception:  # a bug here must not end the polling
                self.log.exception("announcements: refresh failed")

    def _schedule(self) -> None:
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # a synchronous error page: show the cache
        self._task = loop.create_task(self.refresh())

    # --- the template variable ------------------------------------------------------
    def for_page(self, user) -> PageNotices:
        items = self.current()
        return PageNotices(items, _server_courses(user) if user else set())

    # --- the API (single-user servers) ---------------------------------------------
    async def for_server(self, user, server_name: str) -> list[Announcement]:
        items = [a for a in await self.refresh() if not a.expired()]
        spawner = user.spawners.get(server_name) if user else None
        course = getattr(spawner, "course_slug", None) if spawner else None
        return [a for a in items if a.applies_to(course)]


def _server_courses(user) -> set[str]:
    """Courses of the user's running or starting servers."""
    courses = set()
    for spawner in list(getattr(user, "spawners", {}).values()):
        slug = getattr(spawner, "course_slug", None)
        if slug and spawner.active:
            courses.add(slug)
    return courses


def board(config) -> AnnouncementBoard:
    return shared_instance(AnnouncementBoard, config)


def _api_handler(config):
    """The API handler class (JupyterHub imported only when configured)."""
    from jupyterhub.apihandlers.base import APIHandler
    from tornado import web

    class AnnouncementsAPIHandler(APIHandler):
        """The caller's own notices: hub-wide ones and those of the course
        of the server named by ``?server=`` (default: the default server)."""

        async def get(self):
            user = self.current_user
            if user is None or getattr(user, "kind", "user") != "user":
                raise web.HTTPError(403, "a user's token is needed")
            server = self.get_argument("server", "")
            items = await board(config).for_server(user, server)
            self.set_header("Content-Type", "application/json")
            self.write(json.dumps({"announcements": [asdict(a) for a in items]}))

    return AnnouncementsAPIHandler


def configure(c) -> None:
    """Show announcements on the hub's pages and serve them to JupyterLab.

    Keeps existing ``template_paths``, ``template_vars`` and
    ``extra_handlers``; call it after setting those.
    """
    hub = c.JupyterHub
    # after the deployer's templates: a site's own page.html wins
    add_template_dir(c, TEMPLATE_DIR, before_deployers=False)
    add_template_var(c, TEMPLATE_VAR, lambda user: board(c).for_page(user))
    handlers = list(hub.extra_handlers) if "extra_handlers" in hub else []
    if not any(h[0] == API_PATH for h in handlers):
        handlers.append((API_PATH, _api_handler(c)))
    hub.extra_handlers = handlers
