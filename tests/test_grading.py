"""``aaltohub grade`` with real nbgrader and the local sandbox: hostile
submissions harm nothing but themselves, every other one is graded as
``nbgrader autograde`` grades it, and grading resumes.

Needs root and bubblewrap (as the local spawner's tests); one course is
generated per module (``nbgrader generate_assignment`` takes seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from aaltohub.cli import main
from aaltohub.grading.limits import GradingLimits
from aaltohub.grading.outcome import TIMED_OUT
from aaltohub.grading.runner import GRADED, SKIPPED, grade, is_graded
from aaltohub.local.sandbox import namespaces_supported
from grading_course import GOOD, SECRET, TOKEN, make_course, own, scores, submit


def _userns_works() -> bool:
    """An unprivileged bwrap can make a user namespace (the grader's runs)."""
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    cmd += ["bwrap", "--unshare-user", "--ro-bind", "/", "/", "true"]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(autouse=True)
def _sandbox_here():
    """Outside CI a machine without root, bubblewrap or unprivileged user
    namespaces skips these tests; in CI (``CI=true``) that fails them."""
    if namespaces_supported() and _userns_works():
        return
    why = "the local backend needs root, bubblewrap and unprivileged user namespaces"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: missing in CI (scripts/test.sh installs bubblewrap)")
    pytest.skip(why)


SNOOP = """
import os, socket
found = []
def attempt(what, fn):
    try:
        found.append(f"LEAK {{what}}: {{fn()!r:.200}}")
    except Exception as e:
        found.append(f"blocked {{what}}: {{type(e).__name__}}")
def token_in_proc():
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if "{token}" in open(f"/proc/{{pid}}/environ").read():
                return pid
        except OSError:
            pass
    raise LookupError("no process has the token")
attempt("answer key", lambda: open("{course}/source/ps1/ps1.ipynb").read())
attempt("release dir", lambda: os.listdir("{course}/release/ps1"))
attempt("other submission", lambda: os.listdir("{course}/submitted/alice/ps1"))
attempt("gradebook", lambda: open("{course}/gradebook.db", "rb").read(16))
attempt("token env", lambda: os.environ["JUPYTERHUB_API_TOKEN"])
attempt("token proc", token_in_proc)
attempt("host port", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2))
attempt("internet", lambda: socket.create_connection(("1.1.1.1", 80), timeout=2))
attempt("write input", lambda: open("/grading/in/files/x", "w"))
attempt("write gradebook", lambda: open("{course}/gradebook.db", "a"))
attempt("write root", lambda: open("/evil", "w"))
attempt("write usr", lambda: open("/usr/evil", "w"))
print("\\n".join(found))
def add(a, b):
    return a + b
"""
MEMORY = "x = []\nwhile True:\n    x.append(bytearray(50 * 2**20))\n"
FORK_BOMB = (
    "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
    "        pass\n"
)
SLEEPER = (
    "import time\nwhile True:\n    try:\n        time.sleep(1000)\n"
    "    except BaseException:\n        pass\n"
)
LIMITS = GradingLimits(memory=768 * 2**20, pids=64, timeout=40, cell_timeout=20)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("template") / "course")


@pytest.fixture
def course(template, tmp_path):
    return Path(shutil.copytree(template, tmp_path / "course"))


def text_of(course: Path, student: str) -> str:
    path = course / "autograded" / student / "ps1" / "ps1.ipynb"
    nb = nbformat.read(path, as_version=4)
    return "".join(
        o.get("text", "") + o.get("ename", "")
        for c in nb.cells
        for o in c.get("outputs", [])
    )


def test_hostile_submissions_harm_only_themselves(course, monkeypatch, capsys):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)  # the grader's own
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    snoop = SNOOP.format(course=course, token=TOKEN, port=port)
    for student, answer in [
        ("alice", GOOD),
        ("bob", GOOD),
        ("snoop", snoop),
        ("hog", MEMORY),
        ("bomb", FORK_BOMB),
        ("sleeper", SLEEPER),
    ]:
        submit(course, student, answer)
    answer_key = (course / "source" / "ps1" / "ps1.ipynb").read_bytes()
    own(course)  # the instructors' course directory, not root's

    first = grade(
        str(course),
        "ps1",
        students=["alice", "bob", "snoop", "hog"],
        limits=LIMITS,
        jobs=2,
    )
    short = GradingLimits(memory=768 * 2**20, pids=64, timeout=8, cell_timeout=60)
    second = grade(
        str(course), "ps1", students=["bomb", "sleeper"], limits=short, jobs=2
    )
    listener.close()
    status = {s.student: s for s in first + second}

    assert status["alice"].status == status["bob"].status == GRADED
    assert (status["alice"].score, status["alice"].max_score) == (2.0, 2.0)
    got = scores(course)
    assert got["alice"] == got["bob"] == 2.0  # the real gradebook, hidden test too

    assert status["snoop"].status == GRADED, status["snoop"]
    output = text_of(course, "snoop")
    assert "LEAK" not in output and SECRET not in output and TOKEN not in output
    assert output.count("blocked") == 12, output
    assert got["snoop"] == 2.0  # its add() works: only its snooping failed

    assert status["hog"].status == GRADED
    assert any("MemoryError" in n for n in status["hog"].notes), status["hog"]
    assert got["hog"] == 0.0

    for name in ("bomb", "sleeper"):
        assert status[name].status == TIMED_OUT, status[name]
        assert "after 8 s" in status[name].reason
        assert not list((course / "autograded" / name).rglob("*.ipynb"))

    assert (course / "source" / "ps1" / "ps1.ipynb").read_bytes() == answer_key
    # Graded as root, handed to the course directory's owner like nbgrader's own.
    for path in [
        course / "autograded" / "alice",
        *(course / "autograded" / "alice").rglob("*"),
    ]:
        assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4321), path
    assert not Path("/evil").exists() and not Path("/usr/evil").exists()

    resume_and_force(course, capsys)


def resume_and_force(course, capsys):
    """The command skips what is graded, and --force regrades."""
    capsys.readouterr()
    argv = ["grade", "course101", "ps1", f"--course-dir={course}"]
    assert main([*argv, "--student=alice", "--student=bob", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [(r["student"], r["status"]) for r in again] == [
        ("alice", SKIPPED),
        ("bob", SKIPPED),
    ]
    assert not is_graded(str(course), "ps1", "sleeper")  # timed out: graded next time
    (course / "submitted" / "bob" / "ps1" / "timestamp.txt").write_text(
        "2026-01-11 10:00:00.000000 UTC"  # bob submitted again, and it was collected
    )
    audit = course.parent / "audit.log"
    assert (
        main([*argv, "--student=alice", "--student=bob", f"--audit-log={audit}"]) == 0
    )
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert sorted((r["action"], r["target"]) for r in records) == [
        ("grade", "alice"),
        ("grade", "bob"),
    ]
    out = capsys.readouterr().out
    assert "already graded" in out and "graded 2/2" in out
    assert "2 submission(s): 1 graded, 1 skipped" in out


def test_the_course_directory_controls_nothing_run_as_root(course, tmp_path):
    """Planted by an instructor: a module named like one the grader imports,
    an nbgrader_config.py, and links out of autograded/. None of it runs,
    is imported or is followed as root; the config runs as the grader."""
    submit(course, "alice", GOOD)
    submit(course, "bob", GOOD)
    imported = course / "json-was-imported"
    (course / "json.py").write_text(f"open({str(imported)!r}, 'w').close()\n")
    euid = course / "config-euid"
    with (course / "nbgrader_config.py").open("a") as f:
        f.write(f"import os\nopen({str(euid)!r}, 'a').write(f'{{os.geteuid()}}\\n')\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("root's\n")
    (course / "autograded").mkdir(exist_ok=True)
    os.symlink(outside, course / "autograded" / "bob")
    own(course)
    before = sorted(p.name for p in outside.iterdir())

    status = {s.student: s for s in grade(str(course), "ps1", limits=LIMITS, jobs=2)}

    assert not imported.exists()
    assert euid.read_text().split() and "0" not in euid.read_text().split()
    assert status["alice"].status == GRADED, status["alice"]
    assert status["bob"].status == "failed"  # its autograded/ is not writable
    assert sorted(p.name for p in outside.iterdir()) == before
    for path in [outside, *outside.iterdir()]:
        assert path.lstat().st_uid == 0, path  # nothing given away
    assert (outside / "keep.txt").read_text() == "root's\n"


def test_a_root_group_course_directory_is_refused(course, capsys):
    submit(course, "alice", GOOD)  # course is root:root, as make_course left it
    assert main(["grade", "course101", "ps1", f"--course-dir={course}"]) == 2
    assert "chgrp it to the course's group" in capsys.readouterr().err


def test_an_unknown_student_is_a_clear_error(course, capsys):
    submit(course, "alice", GOOD)
    own(course)
    argv = ["grade", "course101", "ps1", f"--course-dir={course}", "--student=zed"]
    assert main(argv) == 2
    assert "no collected submission of ps1 for zed" in capsys.readouterr().err
