"""The student and instructor journey in a real browser (headless chromium).

Playwright drives Debian's /usr/bin/chromium (``playwright install`` cannot
download browsers here). Each step saves a screenshot under
test-artifacts/e2e/.
"""

from __future__ import annotations

import json
import os

import pytest

from .demo_process import ENFORCED, NOT_ENFORCED, PASSWORD

pytestmark = pytest.mark.e2e
playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("AALTOHUB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


# Paths relative to the server's root directory: / in namespace mode, the
# per-server view in prefix mode.
IN_ROOT = "import os\nos.chdir(os.environ['JUPYTERHUB_ROOT_DIR'])\n"


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield b
        b.close()


@pytest.fixture
def shot(artifacts, request):
    def save(page, step: str):
        page.screenshot(path=str(artifacts / f"{request.node.name}-{step}.png"))

    return save


def login(browser, hub, username):
    """A fresh browser context logged in as ``username``, on the spawn page
    (any running server of the user is stopped first)."""
    if hub.server(username):
        hub.stop_server(username)
    page = browser.new_context().new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", username)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    page.wait_for_url("**/hub/spawn**")
    return page


def offered(page) -> list[str]:
    return page.locator("input[name=profile]").evaluate_all(
        "els => els.map(e => e.value)"
    )


def start(page, profile: str, user: str):
    page.check(f"input[name=profile][value='{profile}']")
    page.click("form input[type=submit], form button[type=submit]")
    page.wait_for_url(f"**/user/{user}/lab/tree/notebooks**", timeout=90_000)
    page.wait_for_selector(".jp-DirListing-content", timeout=60_000)


def test_student1_sees_public_and_enrolled_courses_only(browser, hub, shot):
    page = login(browser, hub, "student1")
    shot(page, "spawn-page")
    assert offered(page) == ["exam", "intro", "ml-private"]
    text = page.inner_text("body")
    assert "Introduction to Programming" in text and "Machine Learning" in text
    assert "Old Course" not in text and "instructor" not in text.lower()
    page.context.close()


def test_student1_starts_intro_in_jupyterlab_on_notebooks(browser, hub, shot):
    page = login(browser, hub, "student1")
    start(page, "intro", "student1")
    shot(page, "lab-notebooks")
    assert "/lab/tree/notebooks" in page.url
    # The file browser, one level up, shows the pod's layout.
    page.click(".jp-BreadCrumbs-home")
    page.locator(".jp-DirListing-itemText", has_text="coursedata").wait_for()
    shot(page, "lab-root")
    names = page.locator(".jp-DirListing-itemText").all_inner_texts()
    assert "notebooks" in names and "coursedata" in names and "course" not in names
    page.context.close()

    facts = json.loads(
        hub.run(
            "student1",
            IN_ROOT + "import json\n"
            "try:\n    open('coursedata/x.txt', 'w'); wrote = True\n"
            "except OSError as e:\n    wrote = str(e)\n"
            "print(json.dumps({'read': sorted(os.listdir('coursedata')),"
            " 'wrote': wrote, 'course': os.path.exists('course'),"
            " 'home': os.access('notebooks', os.W_OK), 'cwd': os.getcwd()}))",
        )
    )
    assert "README.md" in facts["read"]  # readable
    assert facts["course"] is False  # instructors only
    assert facts["home"] is True
    if not ENFORCED:
        pytest.skip(f"/coursedata read-only: {NOT_ENFORCED}")
    assert facts["wrote"] is not True and "Read-only" in facts["wrote"]


def test_student2_has_no_private_course_and_crafted_post_is_refused(browser, hub, shot):
    page = login(browser, hub, "student2")
    assert offered(page) == ["exam", "intro"]
    shot(page, "spawn-page")
    for crafted, words in [
        ("ml-private", "may not use this course environment"),
        ("intro-instructor", "not an instructor of"),
    ]:
        # Change the radio button's value in the page, as a crafted post would.
        page.eval_on_selector(
            "input[name=profile][value='intro']",
            "(el, v) => { el.value = v; el.checked = true; }",
            crafted,
        )
        with page.expect_response(lambda r: r.request.method == "POST") as resp:
            page.click("form input[type=submit], form button[type=submit]")
        assert resp.value.status == 403
        page.wait_for_load_state()
        shot(page, f"refused-{crafted}")
        assert words in page.inner_text("body")
        assert not hub.server("student2"), "a refused spawn started a server"
    page.context.close()


def test_instructor1_starts_instructor_variant_with_writable_course(browser, hub, shot):
    page = login(browser, hub, "instructor1")
    assert offered(page) == [
        "exam",
        "exam-instructor",
        "intro",
        "intro-instructor",
        "ml-private",
        "ml-private-instructor",
    ]
    shot(page, "spawn-page")
    start(page, "intro-instructor", "instructor1")
    shot(page, "lab-notebooks")
    facts = json.loads(
        hub.run(
            "instructor1",
            IN_ROOT + "import json, stat\n"
            "open('course/hello.txt', 'w').write('hi')\n"
            "st = os.stat('course/hello.txt')\n"
            "print(json.dumps({'mode': oct(stat.S_IMODE(st.st_mode)),"
            " 'gid': st.st_gid, 'data_w': os.access('coursedata', os.W_OK)}))",
        )
    )
    page.goto(f"{hub.url}/user/instructor1/lab/tree/course")
    page.locator(".jp-DirListing-itemText", has_text="hello.txt").wait_for()
    shot(page, "lab-course")
    page.context.close()
    assert facts["mode"] == "0o660"  # NB_UMASK 0007: group-shared
    assert facts["data_w"] is True
    if ENFORCED:
        assert facts["gid"] == 70001  # setgid course directory
