"""The demo hub for the end-to-end tests: one real hub for the whole session.

``aaltohub demo`` runs as a subprocess exactly as a user would start it:
real JupyterHub with sqlite, the real configurable-http-proxy from npm, and
real JupyterLab servers. Teardown stops it with SIGTERM and asserts that
no process of the run is left. Screenshots and the hub log are written to
``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from .demo_process import ARTIFACTS, PASSWORD, finish_demo, start_demo
from .hubclient import Hub


@pytest.fixture(scope="session")
def demo():
    run = start_demo("session")
    print(f"\ndemo hub started and serving in {run.seconds:.2f} s")
    yield run
    status, left = finish_demo(run, signal.SIGTERM)
    assert not left, f"processes left behind by the demo: {left}"
    assert status == 0, run.output.read_text(errors="replace")


@pytest.fixture(scope="session")
def hub(demo) -> Hub:
    return Hub(demo.url, PASSWORD)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = ARTIFACTS / "e2e"
    path.mkdir(parents=True, exist_ok=True)
    return path
