"""Announcements and quota warnings in the demo hub, where users see them.

Real parts: ``aaltohub announce`` (the CLI's code, in this process) writing
the demo's announcements file; the demo hub re-reading it and rendering
/hub/login, /hub/home and /hub/spawn; student2's real JupyterLab server
answering JupyterLab's news endpoint (aaltohub.web.lab, asking the hub with
its own token); a real terminal of that server; JupyterLab in chromium.
student2 is the demo's user near quota (aaltohub.demo.state).

The hub checks the file every couple of seconds (a page shows what the last
check found), so each test waits, with a bound, for a marker notice.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
import requests
import websocket

from aaltohub.announcements import AnnouncementStore
from aaltohub.cli import main

from .demo_process import PASSWORD

pytestmark = pytest.mark.e2e
CHROMIUM = os.environ.get("AALTOHUB_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def notices(demo):
    """The demo's announcements file; everything added is cleared after."""
    path = demo.state / "announcements.json"

    class Notices:
        store = AnnouncementStore(path)

        def announce(self, text, *args) -> str:
            argv = ["announce", text, *args, "--file", str(path), "--json"]
            argv += ["--catalog", str(demo.state / "courses")]
            assert main(argv) == 0
            return text

    yield Notices()
    for item in Notices.store.all():
        Notices.store.clear(item.id)


def eventually(check, what: str, timeout: float = 30):
    """Poll ``check()`` until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.3)


def marker() -> str:
    return f"notice-{uuid.uuid4().hex[:8]}"


def page(hub, session, path: str) -> str:
    r = session.get(f"{hub.url}{path}", timeout=30)
    r.raise_for_status()
    return r.text


def page_with(hub, session, path: str, text: str) -> str | None:
    """The page if it shows ``text`` (yet), else None."""
    found = page(hub, session, path)
    return found if text in found else None


def test_cli_notice_on_login_and_home_escaped_then_cleared(hub, notices, capsys):
    mark = marker()
    notices.announce(f"{mark} <b>maintenance</b> & more")
    escaped = f"{mark} &lt;b&gt;maintenance&lt;/b&gt; &amp; more"
    anonymous = requests.Session()
    login = eventually(
        lambda: page_with(hub, anonymous, "/hub/login", mark),
        "the notice on the login page",
    )
    assert escaped in login and "<b>maintenance" not in login
    s, _ = hub.login("student1")
    assert escaped in page(hub, s, "/hub/home")

    (item,) = [a for a in notices.store.all() if mark in a.text]
    assert (
        main(["announce", "--clear", item.id, "--file", str(notices.store.path)]) == 0
    )
    eventually(
        lambda: mark not in page(hub, anonymous, "/hub/login"),
        "the cleared notice gone",
    )


def test_an_expired_notice_is_not_shown(hub, notices):
    past = time.time() - 60
    from datetime import UTC, datetime

    notices.store.add(
        "expired-notice",
        until=datetime.fromtimestamp(past + 1, UTC),
        now=datetime.fromtimestamp(past, UTC),
    )
    mark = notices.announce(marker())
    anonymous = requests.Session()
    text = eventually(
        lambda: page_with(hub, anonymous, "/hub/login", mark),
        "the live notice written after the expired one",
    )
    assert "expired-notice" not in text


def test_a_course_notice_shows_only_with_that_course(hub, notices):
    intro = notices.announce(marker(), "--course", "intro")
    private = notices.announce(marker(), "--course", "ml-private")
    for user in ("student1", "student2"):  # a running server skips the spawn page
        if hub.server(user):
            hub.stop_server(user)
    s1, _ = hub.login("student1")  # enrolled in ml-private
    spawn1 = eventually(
        lambda: page_with(hub, s1, "/hub/spawn", intro),
        "the intro notice on student1's spawn page",
    )
    assert private in spawn1
    assert intro not in page(hub, s1, "/hub/home")  # no intro server running
    s2, _ = hub.login("student2")  # not on ml-private: neither its notice nor name
    spawn2 = page(hub, s2, "/hub/spawn")
    assert intro in spawn2 and private not in spawn2 and "ml-private" not in spawn2
    assert private not in page(hub, requests.Session(), "/hub/login")


def test_student_near_quota_is_warned_on_the_hub_in_lab_and_terminal(hub, notices):
    hub_wide = notices.announce(marker())
    intro = notices.announce(marker(), "--course", "intro")
    exam = notices.announce(marker(), "--course", "exam")
    s, _ = hub.login("student2")
    for path in ("/hub/home", "/hub/spawn"):
        assert "Your home directory is 95 % full" in page(hub, s, path)
    eventually(lambda: hub_wide in page(hub, s, "/hub/home"), "the hub-wide notice")

    hub.ensure_server("student2", "intro")
    assert intro in page(hub, s, "/hub/home")  # the running server's course
    headers = {"Authorization": f"token {hub.admin_token}"}
    r = requests.get(
        f"{hub.url}/user/student2/lab/api/news", headers=headers, timeout=30
    )
    r.raise_for_status()
    news = [(n["type"], n["message"]) for n in r.json()["news"]]
    assert news[0][0] == "warning"
    assert news[0][1].startswith("Your home directory is 95 % full")
    assert ("info", hub_wide) in news and ("info", f"intro: {intro}") in news
    assert not any(exam in m for _, m in news)  # another course's notice

    output = terminal_greeting(hub, "student2")
    assert "*** Disk quota ***" in output and "95 % full" in output
    assert "du -sh ~/*" in output


def terminal_greeting(hub, user: str) -> str:
    """What a new terminal of ``user``'s server prints before the prompt."""
    headers = {"Authorization": f"token {hub.admin_token}"}
    base = f"{hub.url}/user/{user}"
    r = requests.post(f"{base}/api/terminals", headers=headers, timeout=30)
    r.raise_for_status()
    name = r.json()["name"]
    ws = websocket.create_connection(
        f"{base.replace('http', 'ws', 1)}/terminals/websocket/{name}",
        header=[f"Authorization: token {hub.admin_token}"],
        timeout=30,
    )
    out = ""
    try:
        while "$ " not in out[-200:]:  # the prompt: the greeting is done
            kind, *data = json.loads(ws.recv())
            if kind == "stdout":
                out += data[0]
    finally:
        ws.close()
        requests.delete(f"{base}/api/terminals/{name}", headers=headers, timeout=30)
    return out


def test_jupyterlab_shows_the_notices_as_notifications(hub, notices, artifacts):
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package")
    mark = notices.announce(f"{marker()} <i>not markup</i>")
    s, _ = hub.login("student2")
    eventually(lambda: mark.split()[0] in page(hub, s, "/hub/home"), "the notice")
    hub.ensure_server("student2", "intro")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu"],
        )
        try:
            lab = browser.new_context().new_page()
            lab.set_default_timeout(60_000)
            lab.goto(f"{hub.url}/hub/login")
            lab.fill("#username_input", "student2")
            lab.fill("#password_input", PASSWORD)
            lab.click("#login_submit")
            lab.wait_for_load_state()
            lab.goto(f"{hub.url}/user/student2/lab")
            toast = lab.locator(".Toastify__toast", has_text=mark.split()[0])
            toast.wait_for()
            quota = lab.locator(".Toastify__toast", has_text="95 % full")
            quota.wait_for()
            lab.screenshot(path=str(artifacts / "lab-notifications.png"))
            assert mark in toast.inner_text()  # as text: the tags are visible
            assert lab.locator(".Toastify__toast i").count() == 0
        finally:
            browser.close()
