"""Bad input gets a clear answer, loses nothing, and the demo keeps serving.

Requests go through the real proxy with real sessions (login form, XSRF
cookies) and the users' own API tokens, as a browser or a script would.

Each test asserts the refusal itself (the message, no server started, the
REST API's 403) on every supported JupyterHub, and the page's HTTP status
where that version sets one: a failed password login is 403 from
JupyterHub 5.3, a spawn form refused with an HTTP error keeps that error's
status from 5.4. Before, JupyterHub (5.2.1, in z2jh chart 4.0 and 4.1)
renders the same page with the error in it and status 200.
"""

from __future__ import annotations

import html

import jupyterhub
import pytest
import requests

pytestmark = pytest.mark.e2e

# The hub under test runs from this environment, so this is its version.
JUPYTERHUB = tuple(int(part) for part in jupyterhub.version_info[:2])


def login_failure_status() -> int:
    """What JupyterHub answers a wrong password with (the form, re-rendered)."""
    return 403 if JUPYTERHUB >= (5, 3) else 200


def spawn_form_status(code: int) -> int:
    """What JupyterHub answers a spawn form the spawner refused with ``code``."""
    return code if JUPYTERHUB >= (5, 4) else 200


@pytest.fixture(scope="module")
def student1_running(hub):
    """student1's server, which the bad input below must not disturb."""
    return hub.ensure_server("student1", "intro")


def user_token(hub, session, user: str) -> str:
    r = session.post(
        f"{hub.url}/hub/api/users/{user}/tokens",
        json={"note": "bad-input test", "expires_in": 600},
        headers={"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/")},
        timeout=10,
    )
    r.raise_for_status()
    return r.json()["token"]


def page_text(response) -> str:
    return html.unescape(response.text)


def test_wrong_password(hub):
    _, r = hub.login("student1", password="not-the-password")
    assert r.status_code == login_failure_status()
    assert "Invalid username or password" in page_text(r)
    assert r.url.endswith("/hub/login")


def test_unknown_user(hub):
    _, r = hub.login("mallory")
    assert r.status_code == 403
    assert "mallory was not found in the static users file" in page_text(r)
    assert hub.api("GET", "/users/mallory").status_code == 404  # no user made


def test_invalid_username(hub):
    _, r = hub.login("../../etc")
    assert r.status_code == 403
    assert "is not a valid institutional account name" in page_text(r)


@pytest.mark.parametrize(
    ("profile", "words"),
    [
        ("ml-private", "may not use this course environment"),
        ("intro-instructor", "not an instructor of Introduction to Programming"),
        ("no-such-course", "may not use this course environment"),
    ],
)
def test_crafted_profile_is_refused_and_starts_nothing(hub, profile, words):
    s, _ = hub.login("student2")
    if hub.server("student2"):
        hub.stop_server("student2")
    r = hub.post_form(s, "/hub/spawn", {"profile": profile})
    assert r.status_code == spawn_form_status(403)
    assert words in page_text(r)
    assert not hub.server("student2")
    # The REST API runs the same check in start().
    token = user_token(hub, s, "student2")
    r = hub.api(
        "POST", "/users/student2/server", token=token, json={"profile": profile}
    )
    assert r.status_code == 403, r.text
    assert words in r.json()["message"]
    assert not hub.server("student2")


@pytest.mark.parametrize(
    ("form", "words"),
    [
        ({}, "no course environment was chosen"),
        ({"profile": ["intro", "ml-private"]}, "more than one course environment"),
        ({"profile": "<script>alert(1)</script>"}, "not a valid name"),
        ({"profile": ""}, "no course environment was chosen"),
    ],
)
def test_malformed_options_form(hub, form, words):
    s, _ = hub.login("student2")
    if hub.server("student2"):
        hub.stop_server("student2")
    r = hub.post_form(s, "/hub/spawn", form)
    assert r.status_code == spawn_form_status(400)
    text = page_text(r)
    assert "The server options form could not be read" in text and words in text
    assert "<script>alert(1)</script>" not in r.text  # never echoed raw
    assert not hub.server("student2")


def test_stopping_another_users_server_is_refused(hub, student1_running):
    s, _ = hub.login("student2")
    token = user_token(hub, s, "student2")
    r = hub.api("DELETE", "/users/student1/server", token=token)
    assert r.status_code in (403, 404), r.text
    assert r.json()["message"]
    assert hub.server("student1").get("ready"), "student1's server was stopped"
    # ... and student2 cannot reach student1's server either.
    r = s.get(f"{hub.url}/user/student1/api/contents/notebooks", timeout=30)
    assert r.status_code in (403, 404) or "/hub/login" in r.url


def test_demo_still_serves_after_bad_input(hub, student1_running):
    assert requests.get(f"{hub.url}/hub/health", timeout=10).status_code == 200
    r = hub.user_api("student1", "GET", "/status")
    assert r.status_code == 200
    _, r = hub.login("student1")
    assert r.status_code == 200 and "/user/student1/" in r.url
