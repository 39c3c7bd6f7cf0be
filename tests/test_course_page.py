"""The instructor's course page, /hub/courses/<slug>, in a real JupyterHub.

The hub runs in this test's process and event loop (so the test can write
the audit records the page lists, as the spawners do), behind the real
configurable-http-proxy, with LocalCourseSpawner starting a real
JupyterLab server (isolation "prefix": no sandbox needed). Requests are
plain HTTP with the login cookie. No Kubernetes API is involved.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import yaml
from markupsafe import escape
from traitlets.config import Config

from aaltohub.announcements import AnnouncementStore
from aaltohub.audit import audit_log
from aaltohub.course import build_course
from aaltohub.storage.quota import QuotaSource
from aaltohub.web import course_page, quota
from hub_process import (
    NEEDS_PROXY,
    base_config,
    log_in,
    start_app,
    stop_app,
    wait_ready,
    xsrf,
)

QUOTA_SAMPLE = Path(__file__).parent / "data" / "quota" / "repquota-ug.txt"
TITLE = '<script>alert("title")</script> & Co'
HOSTILE_USER = "<img src=x onerror=alert(1)>"
HOSTILE_REASON = "image pull failed: <b>bad</b> registry"

pytestmark = [NEEDS_PROXY, pytest.mark.asyncio(loop_scope="module")]


def hub_config(tmp: Path, catalog: Path, users: Path, storage: Path) -> Config:
    c = base_config(tmp)
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = "pw"
    c.Authenticator.allow_all = True
    c.Authenticator.admin_users = {"admin1"}
    c.JupyterHub.spawner_class = "aaltohub.local.LocalCourseSpawner"
    c.LocalCourseSpawner.identity_class = "aaltohub.identity.StaticIdentity"
    c.LocalCourseSpawner.storage_root = str(storage)
    c.LocalCourseSpawner.servers_dir = str(tmp / "servers")
    c.LocalCourseSpawner.isolation = "prefix"
    c.LocalCourseSpawner.start_timeout = 60
    c.LocalCourseSpawner.http_timeout = 60
    c.StaticIdentity.path = str(users)
    c.CourseCatalog.path = str(catalog)
    c.QuotaPolicy.source_class = "aaltohub.storage.ReportFileQuota"
    c.ReportFileQuota.user_report = str(tmp / "quota.txt")
    c.Announcements.path = str(tmp / "announcements.json")
    c.AuditLog.destination = "off"
    quota.configure(c)  # the quota banner's home.html: the page's must keep it
    course_page.configure(c)
    return c


def prepare(tmp: Path) -> tuple[Path, Path, Path]:
    from aaltohub.catalog import CourseCatalog
    from aaltohub.demo.state import lay_out_storage
    from aaltohub.identity.static import parse_static_users
    from conftest import COURSES, USERS, write_catalog

    files = dict(COURSES)
    files["evil.yaml"] = yaml.safe_dump(
        {"name": TITLE, "instructors": ["instructor1"], "students": [HOSTILE_USER]}
    )
    catalog = write_catalog(tmp / "courses", files)
    users = tmp / "users.yaml"
    users.write_text(USERS)
    storage = tmp / "storage"
    storage.mkdir()
    known = parse_static_users(yaml.safe_load(USERS), "users")
    lay_out_storage(
        str(storage),
        CourseCatalog(path=str(catalog)).load(),
        {k: v for k, v in known.items() if v.uid >= 1000},
    )
    shutil.copy(QUOTA_SAMPLE, tmp / "quota.txt")
    store = AnnouncementStore(tmp / "announcements.json")
    store.add("Exam moved to <b>Friday</b>", course="intro", author="instructor1")
    store.add("Maintenance on Sunday", author="admin1")
    store.add("Only for the exam course", course="exam")
    return catalog, users, storage


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coursepage")
    app = await start_app(hub_config(tmp, *prepare(tmp)))
    try:
        yield app
    finally:
        await stop_app(app)


def public_url(app) -> str:
    return app.bind_url.rstrip("/")


@asynccontextmanager
async def login(app, user: str):
    """An HTTP client with ``user``'s login cookie."""
    async with httpx.AsyncClient(base_url=public_url(app), timeout=30) as client:
        response = await log_in(client, user)
        assert response.status_code == 302, response.text
        yield client


async def page(app, user: str, slug: str = "intro") -> httpx.Response:
    async with login(app, user) as client:
        return await client.get(f"/hub/courses/{slug}")


# --- who may see it -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("user", "slug", "status"),
    [
        ("instructor1", "intro", 200),  # on the course file's instructors
        ("admin1", "intro", 200),  # a hub admin, on no course
        ("groupie", "exam", 200),  # instructor through the group jupyter-exam
        ("groupie", "intro", 403),  # instructor of another course
        ("student1", "intro", 403),  # a student of the course
        ("student2", "intro", 403),  # on no course, but intro is public
        ("student1", "ml-private", 403),  # a student of a private course
        ("groupie", "ml-private", 404),  # a private course's name does not leak
        ("instructor1", "nosuch", 404),
    ],
)
async def test_only_the_courses_instructors_and_admins_get_the_page(
    hub, user, slug, status
):
    response = await page(hub, user, slug)
    assert response.status_code == status
    assert ('data-course="' in response.text) == (status == 200)


async def test_anonymous_users_are_sent_to_log_in(hub):
    async with httpx.AsyncClient(base_url=public_url(hub)) as client:
        response = await client.get("/hub/courses/intro")
    assert response.status_code == 302
    assert response.headers["location"].startswith("/hub/login?next=")
    assert "courses%2Fintro" in response.headers["location"]


async def raw_get(app, path: str, cookie: str) -> int:
    """Status of GET ``path`` sent byte for byte to the hub itself: an HTTP
    client (and the proxy) would normalise '..' before the hub saw it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", app.hub_port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    status = (await reader.readline()).split()[1]
    writer.close()
    return int(status)


async def test_path_tricks_are_unknown_courses(hub):
    async with login(hub, "admin1") as client:
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        assert await raw_get(hub, "/hub/courses/intro", cookie) == 200
        for path in (
            "/hub/courses/..",
            "/hub/courses/..%2Fintro",
            "/hub/courses/intro%2F..%2Fexam",
            "/hub/courses/%2e%2e",
            "/hub/courses/intro%00",
            "/hub/courses/INTRO",
        ):
            assert await raw_get(hub, path, cookie) == 404, path


# --- what it shows --------------------------------------------------------------------
def section(html: str, ident: str) -> str:
    """The HTML from the element with ``id`` to the next <h2>."""
    start = html.index(f'id="{ident}"')
    end = html.find("<h2", start)
    return html[start : end if end != -1 else None]


def count(html: str, ident: str) -> int:
    return int(re.search(r'class="badge[^"]*count">(\d+)<', section(html, ident))[1])


async def test_enrolment_lists_roster_and_groups_with_counts(hub):
    html = (await page(hub, "admin1", "exam")).text
    assert count(html, "students") == 1 and "<code>student1</code>" in html
    assert count(html, "student-groups") == 1
    assert "<code>exam-takers</code>" in section(html, "student-groups")
    # the course's directory group gives instructor access
    assert "<code>jupyter-exam</code>" in section(html, "instructor-groups")
    assert count(html, "instructors") == 0
    html = (await page(hub, "instructor1", "intro")).text
    assert "<code>instructor1</code>" in section(html, "instructors")
    assert "<code>student1</code>" in section(html, "students")  # from intro-users.yaml


async def test_running_servers_show_who_and_since_when(hub):
    html = (await page(hub, "instructor1")).text
    assert count(html, "running") == 0 and 'id="no-running"' in html
    async with login(hub, "student1") as client:
        response = await client.post(
            "/hub/api/users/student1/server",
            json={"profile": "intro"},
            headers=xsrf(client),
        )
        assert response.status_code in (201, 202), response.text
        await wait_ready(client, "student1")
    html = (await page(hub, "instructor1")).text
    rows = re.findall(r'<tr class="running-server">(.*?)</tr>', html, re.S)
    assert len(rows) == 1 and count(html, "running") == 1
    assert '<td class="user">student1</td>' in rows[0]
    assert '<td class="role">student</td>' in rows[0]
    assert '<td class="status">running</td>' in rows[0]
    started = re.search(r'<td class="started">([^<]+)</td>', rows[0])[1]
    spawner = hub.users["student1"].spawner
    assert started == spawner.server_record.started != ""
    # another course's page does not list it
    assert count((await page(hub, "instructor1", "ml-private")).text, "running") == 0


async def test_recent_spawn_failures_of_the_course_with_their_causes(hub):
    # A start that failed, as the spawners record it (their own tests make
    # real ones), next to records the page must leave out.
    log = audit_log(hub.tornado_settings["config"])
    log.record("server-fail", actor="student2", target="student2", course="intro",
               outcome="failed", reason=HOSTILE_REASON)  # fmt: skip
    log.record("server-fail", actor="student1", course="exam", reason="other course")
    log.record("server-start", actor="student1", course="intro", reason="not a failure")
    # The directory did not answer at a spawn: a failure, not a refusal.
    log.record("spawn", actor="student1", target="student1", course="intro",
               outcome="failed", reason="directory: no answer")  # fmt: skip
    # A refusal, through the hub: student2 asks for intro's instructor server.
    async with login(hub, "student2") as client:
        response = await client.post(
            "/hub/api/users/student2/server",
            json={"profile": "intro-instructor"},
            headers=xsrf(client),
        )
        assert response.status_code == 403
    html = (await page(hub, "instructor1")).text
    failures = section(html, "failures")
    rows = re.findall(r'<tr class="spawn-failure">(.*?)</tr>', failures, re.S)
    assert count(html, "failures") == len(rows) == 3
    refused, outage, failed = rows  # newest first
    assert '<td class="user">student1</td>' in outage
    assert '<td class="what">did not start</td>' in outage
    assert "directory: no answer" in outage
    assert '<td class="user">student2</td>' in refused
    assert '<td class="what">refused</td>' in refused
    assert "not an instructor of Introduction to Programming" in refused
    assert '<td class="user">student2</td>' in failed
    assert '<td class="what">did not start</td>' in failed
    assert escape(HOSTILE_REASON) in failed and "<b>bad</b>" not in html
    assert "other course" not in html and "not a failure" not in html


async def test_failure_records_are_ones_the_hub_writes():
    from aaltohub.audit import ACTIONS

    for action, outcome in course_page.FAILURES:
        assert outcome in ACTIONS[action]


async def test_storage_use_against_the_course_groups_quota(hub):
    html = (await page(hub, "instructor1")).text
    storage = section(html, "storage")
    # repquota-ug.txt: group jupyter-intro, 48234496 of 52428800 KiB
    assert '<strong class="used">46.0 GiB</strong>' in storage
    assert '<strong class="limit">50.0 GiB</strong>' in storage
    assert '<span class="percent">92</span>' in storage
    assert "<code>jupyter-intro</code>" in storage
    # a course the report does not list
    html = (await page(hub, "instructor1", "evil")).text
    assert "Unknown: the quota source has no entry for it." in html


class HangingQuota(QuotaSource):
    """A quota source on a dead NFS server."""

    async def course_usage(self, course, group=""):
        await asyncio.Event().wait()


async def test_no_or_a_hanging_quota_source_means_unknown():
    course = build_course("intro", {"name": "Intro"})
    use = await course_page.storage_use(Config(), course, "jupyter-intro", 1.0)
    assert use == {"known": False, "why": "no quota source is configured"}
    config = Config()
    config.QuotaPolicy.source_class = HangingQuota
    use = await course_page.storage_use(config, course, "jupyter-intro", 0.1)
    assert use == {"known": False, "why": "the quota source did not answer"}


async def test_since():
    now = datetime(2026, 11, 26, 10, 30, tzinfo=UTC)
    assert course_page.since("2026-11-26T08:00:00+00:00", now) == "2 h 30 min"
    assert course_page.since("2026-11-26T10:29:00+00:00", now) == "1 min"
    assert course_page.since("", now) == course_page.since("soon", now) == ""


async def test_announcements_of_the_course_and_the_hub(hub):
    html = (await page(hub, "instructor1")).text
    notices = section(html, "announcements")
    assert count(html, "announcements") == 2
    assert "Exam moved to &lt;b&gt;Friday&lt;/b&gt;" in notices
    assert "Maintenance on Sunday" in notices and "whole hub" in notices
    assert "Only for the exam course" not in html


async def test_untrusted_titles_and_names_are_escaped(hub):
    html = (await page(hub, "instructor1", "evil")).text
    assert TITLE not in html and HOSTILE_USER not in html
    assert escape(TITLE) in html
    assert escape(HOSTILE_USER) in section(html, "students")


async def test_a_slow_directory_does_not_hold_the_page(hub, monkeypatch):
    from aaltohub.local import LocalCourseSpawner

    async def hanging(*args, **kwargs):
        await asyncio.Event().wait()

    await page(hub, "groupie", "exam")  # groupie's groups are known now
    monkeypatch.setattr(LocalCourseSpawner, "get_viewer", hanging)
    monkeypatch.setattr(
        course_page.course_page(hub.tornado_settings["config"]), "timeout", 0.5
    )
    # the groups last seen, or none: an admin is still an admin
    assert (await page(hub, "groupie", "exam")).status_code == 200
    html = (await page(hub, "admin1", "evil")).text
    # what the empty list means, truthfully: the hub's recent records only
    assert "the last 5000 of the whole hub since it" in section(html, "no-failures")


# --- the link from the home page ------------------------------------------------------
async def home(app, user: str, wait_for: str = "") -> str:
    """The home page; its list is filled in the background (directory
    groups), so ask again until ``wait_for`` shows or 10 s pass."""
    async with login(app, user) as client:
        deadline = time.monotonic() + 10
        while True:
            html = (await client.get("/hub/home")).text
            if wait_for in html or time.monotonic() > deadline:
                return html
            await asyncio.sleep(0.2)


async def test_home_lists_the_courses_a_user_teaches(hub):
    html = await home(hub, "instructor1", "Your courses")
    links = dict(
        (slug, name)
        for slug, name in re.findall(
            r'<a href="/hub/courses/([^"]+)">([^<]*)</a>', html
        )
    )
    # "old" is archived (closed): not offered, but its page still works
    assert set(links) == {"intro", "ml-private", "evil", "old"}
    assert (await page(hub, "instructor1", "old")).status_code == 200
    assert links["intro"] == "Introduction to Programming"
    assert links["evil"] == escape(TITLE)
    # through a directory group, known once looked up in the background
    assert 'href="/hub/courses/exam"' in await home(hub, "groupie", "/hub/courses/exam")
    # students and admins who teach nothing get no list
    for user in ("student1", "admin1"):
        assert "Your courses" not in await home(hub, user)


async def test_home_keeps_the_quota_banner(hub):
    # darstr1 is at 95 % in the quota report; the list and the banner both
    # come from aaltohub's templates, and one home.html must show both.
    html = await home(hub, "darstr1", "aaltohub-quota")
    assert "aaltohub-quota" in html and "95 % full" in html
