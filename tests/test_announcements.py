"""Announcements: the store, ``aaltohub announce``, and the hub's pages.

The pages are JupyterHub's own templates, rendered with the loader layout
JupyterHub builds (its templates under the ``templates/`` prefix, then
``template_paths``), with the quota banner's and the announcements'
directories both configured as ``configure(c)`` leaves them. The whole path
through a real hub (CLI, then GET /hub/login, /hub/home, /hub/spawn and
JupyterLab's news) is in tests/e2e/test_notices.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from aaltohub.announcements import AnnouncementError, AnnouncementStore, iso
from aaltohub.cli import main
from aaltohub.web import announcements as web_announcements
from aaltohub.web import pages as web_pages
from aaltohub.web import quota as quota_web
from aaltohub.web.pages import PAGES_DIR
from page_render import render

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "announcements.json"


@pytest.fixture
def catalog(tmp_path):
    d = tmp_path / "courses"
    d.mkdir()
    (d / "intro.yaml").write_text("name: Intro\ngid: 70001\n")
    return d


def announce(capsys, *argv):
    status = main(["announce", *argv])
    out = capsys.readouterr()
    return status, out.out, out.err


# --- the CLI ------------------------------------------------------------------
def test_announce_list_clear_and_audit(
    capsys, store_path, catalog, tmp_path, monkeypatch
):
    monkeypatch.setenv("SUDO_USER", "admin-a")
    audit = tmp_path / "audit.log"
    common = ["--file", str(store_path), "--audit-log", str(audit)]
    status, out, _ = announce(capsys, "Maintenance 18-20", *common)
    assert status == 0 and out.startswith("announced ")
    hub_id = out.split()[1]
    status, out, _ = announce(
        capsys,
        "Lab moved",
        "--course",
        "intro",
        "--catalog",
        str(catalog),
        "--until",
        "2099-01-01T10:00+02:00",
        "--json",
        *common,
    )
    assert status == 0
    added = json.loads(out)
    assert added["course"] == "intro" and added["until"] == "2099-01-01T08:00:00Z"

    status, out, _ = announce(capsys, "--list", *common)
    assert f"{hub_id}  hub-wide" in out and "course intro, until 2099" in out
    status, out, _ = announce(capsys, "--list", "--json", *common)
    assert [a["text"] for a in json.loads(out)] == ["Maintenance 18-20", "Lab moved"]

    monkeypatch.setenv("SUDO_USER", "admin-b")  # another admin clears it
    status, out, _ = announce(capsys, "--clear", hub_id, *common)
    assert status == 0 and "Maintenance 18-20" in out
    assert [a.id for a in AnnouncementStore(store_path).all()] == [added["id"]]

    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["action"], r["target"], r["course"]) for r in records] == [
        ("announce", hub_id, ""),
        ("announce", added["id"], "intro"),
        ("announce", hub_id, ""),
    ]
    assert records[0]["reason"] == "add: Maintenance 18-20"
    assert records[2]["reason"].startswith("clear: ")
    # the actor is whoever ran the command, not the notice's author
    assert [r["actor"] for r in records] == ["admin-a", "admin-a", "admin-b"]


def test_the_store_comes_from_the_environment(capsys, store_path, monkeypatch):
    monkeypatch.setenv("AALTOHUB_ANNOUNCEMENTS", str(store_path))
    assert announce(capsys, "From the environment")[0] == 0
    assert AnnouncementStore(store_path).all()[0].text == "From the environment"


@pytest.mark.parametrize(
    "argv,error",
    [
        ([], "give the notice's text"),
        (["   "], "needs a text"),
        (["x", "--until", "tomorrow"], "use ISO 8601"),
        (["x", "--until", "2001-01-01"], "already past"),
        (["x" * 1001], "keep it under 1000"),
        (["x", "--course", "nope", "--catalog", "{catalog}"], "no course 'nope'"),
        (["--clear", "abc"], "`aaltohub announce --list` shows their ids"),
        (["--list", "x"], "--list takes no text"),
    ],
)
def test_bad_input_is_refused_with_the_fix(capsys, store_path, catalog, argv, error):
    AnnouncementStore(store_path).add("kept")
    argv = [a.replace("{catalog}", str(catalog)) for a in argv]
    status, _, err = announce(capsys, *argv, "--file", str(store_path))
    assert status == 2
    assert error in err
    assert [a.text for a in AnnouncementStore(store_path).all()] == ["kept"]


def test_no_file_names_the_option_and_the_variable(capsys, monkeypatch):
    monkeypatch.delenv("AALTOHUB_ANNOUNCEMENTS", raising=False)
    status, _, err = announce(capsys, "x")
    assert status == 2
    assert "--file PATH" in err and "AALTOHUB_ANNOUNCEMENTS" in err


def test_a_long_notice_warns_about_jupyterlab(capsys, store_path):
    status, _, err = announce(capsys, "y" * 200, "--file", str(store_path))
    assert status == 0 and "first 140 characters" in err


# --- the page variable --------------------------------------------------------
def web_config(store_path, **extra) -> Config:
    c = Config()
    c.JupyterHub.template_paths = ["/srv/custom"]
    c.JupyterHub.template_vars = {"site": "x"}
    quota_web.configure(c)
    web_announcements.configure(c)
    c.Announcements.path = str(store_path)
    c.AnnouncementBoard.refresh_interval = 0.0
    for key, value in extra.items():
        setattr(c.AnnouncementBoard, key, value)
    return c


def test_configure_keeps_existing_settings_and_both_banners(store_path):
    c = web_config(store_path)
    assert c.JupyterHub.template_paths == [
        PAGES_DIR,
        quota_web.TEMPLATE_DIR,
        "/srv/custom",
        web_announcements.TEMPLATE_DIR,
    ]
    assert set(c.JupyterHub.template_vars) == {
        "site",
        quota_web.TEMPLATE_VAR,
        web_announcements.TEMPLATE_VAR,
    }
    assert [h[0] for h in c.JupyterHub.extra_handlers] == [web_announcements.API_PATH]
    web_announcements.configure(c)  # twice: nothing doubles
    assert len(c.JupyterHub.extra_handlers) == 1
    assert c.JupyterHub.template_paths.count(web_announcements.TEMPLATE_DIR) == 1


def spawner(course=None, active=True):
    return SimpleNamespace(course_slug=course, active=active)


def user(**spawners):
    return SimpleNamespace(name="student2", spawners=spawners)


async def test_page_notices_hub_wide_running_course_and_expiry(store_path):
    store = AnnouncementStore(store_path)
    hub = store.add("Hub-wide")
    intro = store.add("Intro only", course="intro")
    store.add("ML only", course="ml")
    store.add("Gone", until=NOW + timedelta(seconds=1), now=NOW)
    board = web_announcements.board(web_config(store_path))
    await board.refresh()

    anonymous = board.for_page(None)
    assert anonymous.hub == [hub] and anonymous.running == []
    notices = board.for_page(user(**{"": spawner("intro"), "x": spawner("ml", False)}))
    assert notices.hub == [hub] and notices.running == [intro]


async def test_the_page_never_waits_and_sees_a_change_after_a_check(store_path):
    board = web_announcements.board(web_config(store_path))
    assert board.for_page(None).hub == []  # schedules the first read
    AnnouncementStore(store_path).add("New")
    await asyncio.sleep(0)  # the scheduled check runs in a thread
    await board._task
    board.for_page(None)  # due again (interval 0): another check
    await board._task
    assert [a.text for a in board.for_page(None).hub] == ["New"]


async def test_a_broken_file_is_logged_and_shows_nothing(store_path, caplog):
    store_path.write_text("{not json")
    board = web_announcements.board(web_config(store_path))
    assert await board.refresh() == []
    assert "move it aside and announce again" in caplog.text
    with pytest.raises(AnnouncementError):
        AnnouncementStore(store_path).all()


PROFILE_FORM = (
    '<label><input type="radio" name="profile" value="intro-instructor"> I</label>'
    '<label><input type="radio" name="profile" value="exam"> E</label>'
    '<select name="profile-option-exam--x"><option value="ml">ml</option></select>'
)


async def test_spawn_page_offers_notices_of_the_courses_in_its_form(store_path):
    store = AnnouncementStore(store_path)
    intro = store.add("Intro", course="intro")
    exam = store.add("Exam", course="exam")
    store.add("ML is private", course="ml")
    board = web_announcements.board(web_config(store_path))
    await board.refresh()
    notices = board.for_page(user())
    # intro via its instructor profile; an option value is not a course
    assert notices.offered(PROFILE_FORM) == [intro, exam]
    running = board.for_page(user(**{"": spawner("exam")}))
    assert running.offered(PROFILE_FORM) == [intro]  # exam is shown once
    assert notices.offered(None) == []
    # KubeSpawner's form puts the attributes on lines of their own
    kube_form = '<input type="radio"\n   name="profile"\n   value="exam" />'
    assert notices.offered(kube_form) == [exam]


# --- the templates, both banners (rendered by page_render) ----------------------
QUOTA = {
    "percent": 95,
    "used": "972.8 MiB",
    "limit": "1.0 GiB",
    "over": False,
    "message": "Your home directory is 95 % full",
    "help": "Delete things.",
}


async def page_notices(store_path):
    store = AnnouncementStore(store_path)
    store.add("Maintenance <b>tonight</b> & more")
    store.add("Intro lab moved", course="intro")
    store.add("Exam <script>", course="exam")
    board = web_announcements.board(web_config(store_path))
    await board.refresh()
    return board


@pytest.mark.parametrize("page", ["login.html", "home.html", "spawn.html"])
async def test_pages_show_hub_notices_escaped_with_the_quota_banner(page, store_path):
    board = await page_notices(store_path)
    html = render(
        page,
        aaltohub_announcements=board.for_page(user()),
        aaltohub_quota=QUOTA if page != "login.html" else None,
        **({"spawner_options_form": PROFILE_FORM} if page == "spawn.html" else {}),
    )
    assert "Maintenance &lt;b&gt;tonight&lt;/b&gt; &amp; more" in html
    assert "<b>tonight" not in html
    assert ("aaltohub-quota" in html) == (page != "login.html")
    if page == "spawn.html":
        assert "<strong>exam:</strong> Exam &lt;script&gt;</div>" in html
        assert "Intro lab moved" in html
    else:
        assert "Intro lab moved" not in html and "Exam" not in html


async def test_home_shows_the_running_servers_course(store_path):
    board = await page_notices(store_path)
    html = render(
        "home.html",
        aaltohub_announcements=board.for_page(user(**{"": spawner("intro")})),
        aaltohub_quota=None,
    )
    assert 'data-course="intro"><strong>intro:</strong> Intro lab moved' in html
    assert "Exam" not in html


def test_pages_render_without_the_variable():
    html = render("login.html", aaltohub_quota=None)
    assert "aaltohub-announcement" not in html


def test_expired_notices_are_hidden(store_path):
    store = AnnouncementStore(store_path)
    store.add("Past", until=iso(NOW + timedelta(seconds=1)), now=NOW)
    assert store.active() == []
    assert [a.text for a in store.all()] == ["Past"]


# --- the demo ----------------------------------------------------------------
async def test_the_demo_has_notices_and_a_student_near_quota(tmp_path):
    from aaltohub.demo.settings import StatePaths, configure
    from aaltohub.demo.state import NEAR_QUOTA_USER, prepare
    from aaltohub.storage.quota import ReportFileQuota

    paths = StatePaths(tmp_path)
    users = prepare(paths, "pw")["users"]
    c = Config()
    configure(c, {"AALTOHUB_DEMO_STATE": str(tmp_path), "AALTOHUB_DEMO_PROXY": "x"})
    assert c.Announcements.path == str(paths.announcements)
    assert web_announcements.TEMPLATE_DIR in c.JupyterHub.template_paths
    assert quota_web.TEMPLATE_DIR in c.JupyterHub.template_paths
    assert "QuotaHook" in [h.__name__ for h in c.LocalCourseSpawner.hooks]
    assert "--ServerApp.jpserver_extensions=aaltohub.web.lab=True" in (
        c.LocalCourseSpawner.args
    )
    source = ReportFileQuota(config=c)
    near = await source.usage(users[NEAR_QUOTA_USER])
    assert round(near.percent) == 95
    assert (await source.usage(users["student1"])).percent < 1


# --- every web part together, configured in any order ---------------------------
PARTS = {"quota": quota_web, "announcements": web_announcements}


@pytest.mark.parametrize(
    "order",
    [
        ("quota", "course_page", "announcements"),
        ("course_page", "quota", "announcements"),
        ("announcements", "course_page", "quota"),
        ("course_page",),
        ("quota",),
        ("announcements",),
    ],
    ids="+".join,
)
def test_the_web_parts_compose_in_any_order(order, store_path):
    from aaltohub.web import course_page

    c = Config()
    c.JupyterHub.template_paths = ["/srv/custom"]
    for name in order:
        {**PARTS, "course_page": course_page}[name].configure(c)
    html = render(
        "home.html",
        paths=c.JupyterHub.template_paths,
        aaltohub_quota=QUOTA,
        aaltohub_courses=[{"slug": "intro", "name": "Intro <1>"}],
        aaltohub_announcements=None,
    )
    assert ("aaltohub-quota" in html) == ("quota" in order)
    assert ("Your courses" in html) == ("course_page" in order)
    if "course_page" in order:
        assert "Intro &lt;1&gt;" in html
    spawn = render(
        "spawn.html",
        paths=c.JupyterHub.template_paths,
        aaltohub_quota=QUOTA,
        aaltohub_announcements=None,
        spawner_options_form="",
    )
    assert ("aaltohub-quota" in spawn) == ("quota" in order)
    # announcements alone leave a site's own home.html and spawn.html first
    shows_pages = web_pages.PAGES_DIR in c.JupyterHub.template_paths
    assert shows_pages == (set(order) != {"announcements"})


async def test_a_new_notice_is_on_the_next_page_without_an_extra_load(store_path):
    # "shows at once": the board keeps checking the file in the background
    # from the first page on, so the page after `aaltohub announce` has it.
    board = web_announcements.board(web_config(store_path, refresh_interval=0.3))
    assert board.for_page(None).hub == []  # the first page starts the checks
    assert await board.refresh() == []  # the page's own check, done
    AnnouncementStore(store_path).add("Maintenance at six")
    for _ in range(100):  # no page is rendered meanwhile
        if board._items:
            break
        await asyncio.sleep(0.05)
    assert [a.text for a in board.for_page(None).hub] == ["Maintenance at six"]
