"""CourseSpawner inside a real JupyterHub, behind the real proxy.

Refusals happen before any pod would be created, so the whole path a user
takes (login, spawn form, POST /hub/spawn, the REST API) runs for real; only
the Kubernetes API is absent (a dummy kubeconfig, as everywhere here).

Every test runs twice: with the hub's database on sqlite (the default) and
on a real PostgreSQL server (Debian's ``postgresql``, a throwaway cluster
started here as the ``postgres`` user), as large hubs run (docs/database.md).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import jupyterhub
import pytest

from hub_process import (
    DUMMY_LOGIN,
    NEEDS_PROXY,
    free_port,
    login,
    run_hub,
    stop_process,
    xsrf,
)
from kube_helpers import use_dummy_kubeconfig

pytestmark = NEEDS_PROXY


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        message = (
            "PostgreSQL missing: apt-get install postgresql (scripts/test.sh does)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must test the Postgres path, not skip it
        pytest.skip(message)
    return Path(found[-1]).parent


def as_postgres_user(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.getuid() == 0 else argv


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL cluster on 127.0.0.1; its URL for the hub."""
    bin_dir = postgres_bin()
    # Not under pytest's tmp dir: its parents are private to root, and the
    # server runs as the postgres user.
    base = Path(tempfile.mkdtemp(prefix="aaltohub-pg-"))
    data, port = base / "data", free_port()
    if os.getuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    run = lambda *argv: subprocess.run(  # noqa: E731
        as_postgres_user([str(a) for a in argv]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    run(bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off"
    run(
        bin_dir / "pg_ctl",
        "start",
        "-w",
        "-D",
        data,
        "-l",
        base / "pg.log",
        "-o",
        options,
    )
    try:
        run(
            bin_dir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "hub"
        )
        # The driver is named: SQLAlchemy 2.1 (in the dev venv) defaults
        # postgresql:// to psycopg 3, 2.0 (in the hub image) to psycopg2.
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/hub"
    finally:
        run(bin_dir / "pg_ctl", "stop", "-w", "-m", "fast", "-D", data)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db_url(request, tmp_path_factory):
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/hub.sqlite"


@pytest.fixture(scope="module")
def hub(tmp_path_factory, db_url):
    from conftest import USERS, write_catalog

    use_dummy_kubeconfig()
    tmp = tmp_path_factory.mktemp("kubehub")
    catalog = write_catalog(tmp / "courses")
    (tmp / "users.yaml").write_text(USERS)
    url, proc = run_hub(
        tmp,
        DUMMY_LOGIN,
        f"""\
        c.JupyterHub.spawner_class = "course"
        c.CourseCatalog.path = "{catalog}"
        c.CourseSpawner.identity_class = "aaltohub.identity.StaticIdentity"
        c.StaticIdentity.path = "{tmp}/users.yaml"
        c.JupyterHub.authenticate_prometheus = False
        """,
        db_url=db_url,
    )
    yield url, tmp / "hub.log", db_url
    stop_process(proc)


def offered(form_html: str) -> set[str]:
    return set(re.findall(r'name="profile"[^>]*value="([^"]+)"', form_html)) | set(
        re.findall(r'value="([^"]+)"[^>]*name="profile"', form_html)
    )


def test_spawn_form_lists_only_the_users_courses(hub):
    url, _, _ = hub
    page = login(url, "student2").get("/hub/spawn").text
    slugs = offered(page)
    assert {"intro", "exam", "nogid"} <= slugs
    assert not slugs & {"ml-private", "old", "intro-instructor"}
    assert "Machine Learning (private)" not in page


# JupyterHub keeps a refused spawn form's status (403) from 5.4; before
# (5.2.1, z2jh chart 4.0 and 4.1) the page says the same with status 200.
JUPYTERHUB = tuple(int(part) for part in jupyterhub.version_info[:2])
FORM_REFUSED = 403 if JUPYTERHUB >= (5, 4) else 200


@pytest.mark.parametrize("profile", ["ml-private", "intro-instructor", "old"])
def test_crafted_form_post_gets_403_and_starts_nothing(hub, profile):
    url, log, _ = hub
    client = login(url, "student2")
    response = client.post(
        "/hub/spawn",
        data={"profile": profile, "_xsrf": client.cookies.get("_xsrf", "")},
    )
    assert response.status_code == FORM_REFUSED
    assert "You (student2)" in response.text
    user = client.get("/hub/api/user", headers=xsrf(client)).json()
    assert user["servers"] == {}
    assert f"profile={profile!r} role=" in log.read_text()
    assert "outcome=refused" in log.read_text()


def test_crafted_api_spawn_gets_403(hub):
    url, _, _ = hub
    client = login(url, "student2")
    response = client.post(
        "/hub/api/users/student2/server",
        json={"profile": "ml-private"},
        headers=xsrf(client),
    )
    assert response.status_code == 403
    assert "may not use this course environment" in response.text


def test_hub_keeps_serving_after_refusals(hub):
    url, _, _ = hub
    assert httpx.get(f"{url}/hub/health", timeout=5).status_code == 200
    assert "intro" in offered(login(url, "student1").get("/hub/spawn").text)


def metric(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key.startswith(name) and (not labels or "{" + want + "}" in key):
            return float(value)
    return 0.0


def test_metrics_count_refusals_and_catalog(hub):
    url, _, _ = hub
    client = login(url, "student2")
    before = metric(
        client.get("/hub/metrics").text,
        "aaltohub_spawn_authorizations_total",
        outcome="refused",
        role="student",
    )
    client.post(
        "/hub/spawn",
        data={"profile": "ml-private", "_xsrf": client.cookies.get("_xsrf", "")},
    )
    text = client.get("/hub/metrics").text
    after = metric(
        text, "aaltohub_spawn_authorizations_total", outcome="refused", role="student"
    )
    assert after == before + 1
    assert metric(text, "aaltohub_catalog_courses") == 5
    assert metric(text, "aaltohub_catalog_errors") == 0
    assert "aaltohub_identity_lookup_seconds_count" in text


def test_unknown_or_oversized_user_options_get_400_and_are_not_kept(hub):
    # JupyterHub stores an API spawn's options before any spawner code runs;
    # the spawner refuses them and puts back only what it declares.
    url, _, _ = hub
    client = login(url, "student1")
    headers = xsrf(client)
    for body in (
        {"profile": "intro", "pad": "x" * 2_000_000},
        {"profile": "intro", "unknown": "1"},
    ):
        response = client.post(
            "/hub/api/users/student1/server", json=body, headers=headers
        )
        assert response.status_code == 400, response.text
        model = client.get(
            "/hub/api/users/student1?include_stopped_servers", headers=headers
        ).json()
        kept = model["servers"][""]
        assert kept["ready"] is False and kept["pending"] is None
        assert kept["user_options"] == {"profile": "intro"}
    # the stored options are those the spawner declares, nothing else
    response = client.post(
        "/hub/api/users/student1/server",
        json={"profile": "intro\n"},
        headers=headers,
    )
    assert response.status_code == 400  # a full match: "intro\n" is no name
    assert httpx.get(f"{url}/hub/health", timeout=5).status_code == 200


def test_a_newline_in_the_profile_cannot_forge_a_log_line(hub):
    url, log, _ = hub
    client = login(url, "student2")
    client.post(
        "/hub/spawn",
        data={
            "profile": "ml-private\n[I 2026 JupyterHub] admin logged in",
            "_xsrf": client.cookies.get("_xsrf", ""),
        },
    )
    lines = log.read_text().splitlines()
    assert not any(line.startswith("[I 2026 JupyterHub] admin") for line in lines)


def hub_users_in_database(db_url: str) -> set[str]:
    """The user names in the hub's own table, read with the database's client."""
    if db_url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            return {row[0] for row in conn.execute("SELECT name FROM users")}
    import psycopg2

    conn = psycopg2.connect(db_url.replace("+psycopg2", "", 1))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT name FROM users")
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def test_the_hub_keeps_its_state_in_the_configured_database(hub):
    url, _, db_url = hub
    login(url, "student1")
    assert "student1" in hub_users_in_database(db_url)
