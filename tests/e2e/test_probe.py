"""``aaltohub probe`` against the running demo hub."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def probe(hub, *args, token=None):
    env = {**os.environ, "JUPYTERHUB_API_TOKEN": token or hub.admin_token}
    return subprocess.run(
        [sys.executable, "-m", "aaltohub.cli", "probe", "--url", hub.url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_probe_starts_reaches_and_stops_a_course_server(hub, tmp_path):
    if hub.server("student2"):
        hub.stop_server("student2")
    prom = tmp_path / "probe.prom"
    result = probe(
        hub, "--user", "student2", "--profile", "intro", "--prometheus", str(prom)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: student2 started, reached and stopped" in result.stdout
    assert 'aaltohub_probe_success{user="student2"} 1' in prom.read_text()
    assert not hub.server("student2")  # nothing left running


def test_probe_fails_clearly_when_the_spawn_is_refused(hub):
    result = probe(hub, "--user", "student2", "--profile", "ml-private")
    assert result.returncode == 1
    assert "FAILED: POST /hub/api/users/student2/server: HTTP 403" in result.stderr
    assert not hub.server("student2")


def test_probe_refuses_a_non_http_url(hub):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "aaltohub.cli",
            "probe",
            "--url",
            "file:///etc",
            "--user",
            "student2",
        ],
        env={**os.environ, "JUPYTERHUB_API_TOKEN": "x"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "must start with http" in result.stderr
