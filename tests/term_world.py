"""A course of last term on a real storage tree, for the term tests: its
catalog, its directories made by ``course create``, nbgrader files and a
real nbgrader gradebook."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap

import pytest

from aaltohub.cli import main

ROOT = os.geteuid() == 0
GID = 70001 if ROOT else os.getegid()


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


_MADE: dict = {}


@pytest.fixture(scope="session")
def gradebook(tmp_path_factory):
    """A real nbgrader gradebook, made once per session (nbgrader runs
    alembic for it): each module that imports this fixture gets its own
    fixture, so the file itself is kept here."""
    from nbgrader.api import Gradebook

    if "path" in _MADE:
        return _MADE["path"]
    path = tmp_path_factory.mktemp("gradebook") / "gradebook.db"
    # nbgrader runs alembic from its own environment
    bindir = os.path.dirname(sys.executable)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
        with Gradebook(f"sqlite:///{path}", course_id="intro") as gb:
            gb.add_assignment("ps1")
            for name in ("s1", "s2"):
                gb.add_student(name, first_name=name.upper(), last_name="X")
    _MADE["path"] = path
    return path


@pytest.fixture
def world(tmp_path, capsys, gradebook):
    """A catalog with one course of last term, its directories made by
    ``course create``, nbgrader files and a real gradebook in them."""

    cat, store = tmp_path / "courses", tmp_path / "store"
    cat.mkdir()
    store.mkdir()
    (cat / "intro.yaml").write_text(
        textwrap.dedent(
            f"""\
            # Introduction to programming
            name: Intro 2026   # shown on the spawn page
            gid: {GID}
            instructors: [teacher1]
            students: [s1, s2]
            datadir: true
            term:
              starts: 2026-01-08
              ends: 2026-05-31
            retention: {{submissions: 150, exchange: 90}}
            """
        )
    )
    (cat / "intro-users.yaml").write_text("students: [s3]\ninstructors: [teacher2]\n")
    common = ["--catalog", cat, "--storage-root", store]
    if not ROOT:
        common += ["--course-uid", os.geteuid()]
    assert run(capsys, "course", "create", "intro", *common)[0] == 0
    files = store / "course/intro/files"
    for rel, text in {
        "nbgrader_config.py": "c = get_config()\nc.Exchange.timezone = 'UTC'\n",
        "source/ps1/ps1.ipynb": "{}",
        "release/ps1/ps1.ipynb": "{}",
        "submitted/s1/ps1/ps1.ipynb": "{}",
        "autograded/s1/ps1/ps1.ipynb": "{}",
        "feedback/s1/ps1/ps1.html": "<p>",
    }.items():
        (files / rel).parent.mkdir(parents=True, exist_ok=True)
        (files / rel).write_text(text)
    shutil.copyfile(gradebook, files / "gradebook.db")
    return {"cat": cat, "store": store, "files": files, "common": common}
