"""Collecting nbgrader submissions only as the student who made them.

The rule on its own, then the real ``nbgrader submit`` and ``nbgrader
collect`` run as different uids on an exchange laid out like the demo's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from aaltohub import nbgrader_exchange
from aaltohub.access import Viewer
from aaltohub.course import build_course
from aaltohub.hooks import NbgraderHook
from aaltohub.identity import Identity
from aaltohub.local.sandbox import namespaces_supported
from aaltohub.nbgrader_exchange import InboundEntry, foreign_content, judge, student_of
from aaltohub.plan import SpawnContext, SpawnPlan
from aaltohub.storage import course_dirs
from aaltohub.storage.layout import StorageLayout
from aaltohub.storage.paths import StoragePaths

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not (ROOT and namespaces_supported()),
    reason="submitting as other uids needs root and a private mount namespace",
)


def entry(name, uid, is_dir=True):
    return InboundEntry(name, uid, is_dir)


def uids(mapping):
    return mapping.get


# --- the rule -------------------------------------------------------------------
def test_names_are_read_as_nbgrader_collect_reads_them():
    assert student_of("student1+ps1+2024-01-01 10:00:00.000000 UTC+AbC") == "student1"
    assert student_of("student1+ps1+2024-01-01 10:00:00.000000 UTC") == "student1"
    assert student_of("a+b+ps1+ts+rnd") == "a+b"  # rsplit('+', 3), as nbgrader
    assert student_of("notes.txt") is None
    assert student_of("+ps1+ts") is None


def test_a_known_student_must_own_the_submission():
    entries = [
        entry("student1+ps1+t1+r", 1001),
        entry("student1+ps1+t2+r", 1002),  # planted by uid 1002
        entry("student2+ps1+t1+r", 1002),
    ]
    why = judge(entries, uids({"student1": 1001, "student2": 1002}))
    assert why == {
        "student1+ps1+t2+r": "claims to be student1's (uid 1001) but is owned by"
        " uid 1002"
    }


def test_without_uids_a_disputed_name_is_never_trusted():
    entries = [
        entry("student1+ps1+t1+r", 1001),
        entry("student1+ps1+t2+r", 1002),
        entry("student2+ps1+t1+r", 1002),
        entry("student3+ps1+t1+r", 1003),
        entry("student3+ps2+t1+r", 1003),
        entry("student4+ps1+t1+r", 1004, is_dir=False),
        entry("README", 0),
    ]
    why = judge(entries, uids({}))
    assert sorted(why) == [
        "student1+ps1+t1+r",
        "student1+ps1+t2+r",
        "student2+ps1+t1+r",
        "student4+ps1+t1+r",
    ]
    assert why["student1+ps1+t1+r"] == (
        "claims to be student1's but student1's submissions are owned by uids"
        " 1001, 1002: at most one of them is student1"
    )
    assert why["student1+ps1+t2+r"] == (
        "claims to be student1's but its owner, uid 1002, also submitted as student2"
    )
    assert "not a directory" in why["student4+ps1+t1+r"]
    # student3 is consistent: collected, though unverified
    strict = judge(entries, uids({}), require_known=True)
    assert "no uid is known for student3" in strict["student3+ps1+t1+r"]


def test_a_submission_must_be_its_owners_alone(tmp_path):
    sub = tmp_path / "student1+ps1+t+r"
    (sub / "sub").mkdir(parents=True)
    (sub / "ps1.ipynb").write_text("{}")
    owner = os.geteuid()
    assert foreign_content(str(sub), owner) == ""
    (sub / "sub" / "answers.ipynb").symlink_to("/course/source/ps1/ps1.ipynb")
    assert foreign_content(str(sub), owner) == (
        "contains a symbolic link, sub/answers.ipynb; nbgrader would copy what it"
        " points to, with your rights"
    )
    if ROOT:
        (sub / "sub" / "answers.ipynb").unlink()
        os.chown(sub / "ps1.ipynb", 1002, 1002)
        assert "contains ps1.ipynb, owned by uid 1002" in foreign_content(
            str(sub), owner
        )


def test_the_module_imports_without_nbgrader():
    code = (
        "import sys, aaltohub.nbgrader_exchange as m;"
        " print('nbgrader' in sys.modules, m.COLLECT_CLASS)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [
        "False",
        "aaltohub_nbgrader_exchange.VerifiedExchangeCollect",
    ]
    cls = nbgrader_exchange.VerifiedExchangeCollect
    from nbgrader.exchange.abc import ExchangeCollect

    assert issubclass(cls, ExchangeCollect)
    assert cls(config=None).verify_owner is True


# --- the real nbgrader commands under several uids ---------------------------------
COURSE_GID = 70001
TEACHER = ("teacher", 1002001)
STUDENT1 = ("student1", 1001234)  # not in this host's user database
ATTACKER = ("student2", 1001235)
NOBODY = ("nobody", 65534)  # in /etc/passwd: its uid is known

# Runs the nbgrader console script as another uid. The interpreter and its
# packages are below directories other uids may not enter (/root, .tox), so
# first, in a private mount namespace, each such directory is covered by an
# open stand-in that holds only the child on the interpreter's path.
RUNNER = """
import ctypes, json, os, sys
uid, gid, groups, closed, stand_ins = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, MS_BIND, MS_REC, MS_PRIVATE = 0x20000, 0x1000, 0x4000, 0x40000
def check(failed, what):
    if failed:
        raise OSError(ctypes.get_errno(), what)
def bind(source, target):
    flags = MS_BIND | MS_REC
    check(libc.mount(source.encode(), target.encode(), None, flags, None), target)
# a private mount namespace: nothing mounted here reaches the host
check(libc.unshare(CLONE_NEWNS), "unshare")
check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
for (directory, children), stand_in in zip(closed, stand_ins):
    for child in children:
        os.makedirs(os.path.join(stand_in, child), exist_ok=True)
        bind(os.path.join(directory, child), os.path.join(stand_in, child))
    bind(stand_in, directory)
os.setgroups(groups)
os.setgid(gid)
os.setuid(uid)
os.execv(sys.argv[2], sys.argv[2:])
"""


def closed_dirs() -> list[tuple[str, list[str]]]:
    """Directories on the interpreter's paths that others may not enter,
    with the children the interpreter needs, outermost first."""
    found: dict[str, set[str]] = {}
    for path in {os.path.realpath(sys.executable), sys.prefix, sys.base_prefix}:
        parts = Path(os.path.realpath(path)).parts
        for i in range(1, len(parts)):
            directory = str(Path(*parts[:i]))
            if not os.stat(directory).st_mode & 0o001:
                found.setdefault(directory, set()).add(parts[i])
    return sorted(
        ((d, sorted(c)) for d, c in found.items()), key=lambda x: x[0].count("/")
    )


def notebook(marker: str) -> str:
    return json.dumps(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "metadata": {},
                    "outputs": [],
                    "source": f"answer = {marker!r}",
                }
            ],
            "metadata": {},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


@pytest.fixture
def world():
    """An exchange created like the demo's (StorageLayout + course_dirs), a
    course directory for the teacher, a home per student and the configs
    NbgraderHook writes for each of them."""
    base = Path(tempfile.mkdtemp(prefix="aaltohub-exchange-", dir="/tmp"))
    os.chmod(base, 0o755)  # pytest's tmp_path is private to root
    try:
        course = build_course("intro", {"gid": COURSE_GID, "instructors": [TEACHER[0]]})
        store = base / "store"
        store.mkdir()
        result = course_dirs.run(
            str(store), StorageLayout(course_uid=0).entries(course), fix=True
        )
        assert not result.unfixed
        exchange = store / StoragePaths().exchange(course)
        teach = base / "course"
        (teach / "release" / "ps1").mkdir(parents=True)
        (teach / "release" / "ps1" / "ps1.ipynb").write_text(notebook("released"))
        owners = {teach: (TEACHER[1], COURSE_GID)}
        users = {}
        for name, uid in (TEACHER, STUDENT1, ATTACKER, NOBODY):
            home = base / "home" / name
            work = home / "intro" / "ps1"
            work.mkdir(parents=True)
            (work / "ps1.ipynb").write_text(notebook(f"by {name}"))
            owners[home] = (uid, 70000)
            role = "instructor" if (name, uid) == TEACHER else "student"
            users[name] = _user(base, course, name, uid, role, exchange, teach, home)
        for top, (uid, gid) in owners.items():
            for path in [top, *top.rglob("*")]:
                os.chown(path, uid, gid)
        yield {"base": base, "exchange": exchange, "course": teach, "users": users}
    finally:
        shutil.rmtree(base)


def _user(base, course, name, uid, role, exchange, teach, home):
    """What the hub would give this user's server: uid, groups, config."""
    identity = Identity(name, uid, 70000)
    ctx = SpawnContext(Viewer(name), identity, StoragePaths(), course, role)
    plan = SpawnPlan()
    hook = NbgraderHook(
        exchange_root=str(exchange), course_root=str(teach), assignment_dir=str(home)
    )
    hook.apply(ctx, plan)
    files = base / "files" / name
    for rel, text in plan.files.items():
        (files / rel).parent.mkdir(parents=True, exist_ok=True)
        (files / rel).write_text(text)
    groups = [COURSE_GID] if role == "instructor" else []
    env = {
        # nbgrader runs alembic from the same environment
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "USER": name,
        "JUPYTER_CONFIG_PATH": str(files / "jupyter"),
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_DATA_DIR": str(home / ".local/share/jupyter"),
        "JUPYTER_RUNTIME_DIR": str(home / ".local/share/jupyter/runtime"),
    }
    return {"uid": uid, "groups": groups, "env": env, "home": home}


def nbgrader(world, *runs):
    """Run ``(name, [args], cwd)`` commands at once (each as its user); the
    output of each, in order. Concurrent to keep the test short."""
    closed = closed_dirs()
    stand_ins = [str(world["base"] / f"stand-in-{i}") for i in range(len(closed))]
    script = str(Path(sys.executable).parent / "nbgrader")
    procs = []
    for name, args, cwd in runs:
        user = world["users"][name]
        gid = user["groups"][0] if user["groups"] else 70000
        spec = json.dumps([user["uid"], gid, user["groups"], closed, stand_ins])
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", RUNNER, spec, script, *args],
                cwd=cwd or user["home"],
                env=user["env"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    for (name, args, _), proc in zip(runs, procs, strict=True):
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"nbgrader {args} as {name}:\n{out}"
        outputs.append(out)
    return outputs


@needs_root
def test_a_planted_submission_is_not_collected_as_the_victims(world):
    teach = world["course"]
    nbgrader(world, ("teacher", ["release_assignment", "ps1"], teach))
    nbgrader(
        world,
        ("nobody", ["submit", "ps1"], None),  # its uid is in /etc/passwd
        ("student1", ["submit", "ps1", "--student=student1"], None),
    )
    # student2 plants newer ones (nbgrader would prefer them), with the real
    # CLI; one after the other: two submits of one user race in nbgrader's
    # own cache directory (it checks, then creates).
    nbgrader(world, ("student2", ["submit", "ps1", "--student=nobody"], None))
    nbgrader(world, ("student2", ["submit", "ps1", "--student=student1"], None))
    inbound = world["exchange"] / "intro" / "inbound"
    planted = sorted(
        p.name for p in inbound.iterdir() if p.stat().st_uid == ATTACKER[1]
    )
    assert len(planted) == 2

    (out,) = nbgrader(world, ("teacher", ["collect", "ps1"], teach))

    submitted = teach / "submitted"
    # the known student's own submission, not the newer planted one
    assert "by nobody" in (submitted / "nobody/ps1/ps1.ipynb").read_text()
    # student1's uid is unknown here and two uids submitted as student1:
    # nothing is taken as student1's, and the output says why
    assert not (submitted / "student1").exists()
    for name in planted:
        assert f"Skipped {inbound / name}: " in out
    assert "claims to be nobody's (uid 65534) but is owned by uid 1001235" in out
    assert "student1's submissions are owned by uids 1001234, 1001235" in out
    assert "by student2" not in "".join(
        p.read_text() for p in submitted.rglob("*.ipynb")
    )


# --- the copy: what was checked, never what a link points to now -----------------
def _submission(tmp_path, name="s1+ps1+2026"):
    sub = tmp_path / "inbound" / name
    sub.mkdir(parents=True)
    (sub / "ps1.ipynb").write_text("{}")
    return sub


def test_stage_copies_a_plain_submission(tmp_path):
    from aaltohub.nbgrader_exchange import stage_submission

    sub = _submission(tmp_path)
    staged = tmp_path / "stage"
    owner = sub.stat().st_uid
    assert stage_submission(str(sub), str(staged), owner, 10**6) == ""
    assert (staged / "ps1.ipynb").read_text() == "{}"


def test_stage_refuses_a_link_swapped_in_after_the_check(tmp_path):
    # The student swaps the notebook for a link to the answer key between
    # the check and the copy: the copy must not read the key.
    from aaltohub.nbgrader_exchange import stage_submission

    key = tmp_path / "answer-key.ipynb"
    key.write_text("SECRET")
    sub = _submission(tmp_path)
    (sub / "ps1.ipynb").unlink()
    (sub / "ps1.ipynb").symlink_to(key)
    staged = tmp_path / "stage"
    why = stage_submission(str(sub), str(staged), sub.stat().st_uid, 10**6)
    assert "symbolic link, ps1.ipynb" in why
    assert "SECRET" not in "".join(
        p.read_text() for p in staged.rglob("*") if p.is_file() and not p.is_symlink()
    )


def test_stage_refuses_a_directory_swapped_for_a_link(tmp_path):
    from aaltohub.nbgrader_exchange import stage_submission

    other = tmp_path / "other-students-submitted"
    other.mkdir()
    link = tmp_path / "inbound" / "s1+ps1+2026"
    link.parent.mkdir()
    link.symlink_to(other)
    why = stage_submission(str(link), str(tmp_path / "stage"), None, 10**6)
    assert "cannot be opened as a directory" in why


def test_stage_refuses_a_changed_owner_and_an_oversized_submission(tmp_path):
    from aaltohub.nbgrader_exchange import stage_submission

    sub = _submission(tmp_path)
    owner = sub.stat().st_uid
    assert "changed owner" in stage_submission(
        str(sub), str(tmp_path / "a"), owner + 1, 10**6
    )
    assert "more than nbgrader's limit" in stage_submission(
        str(sub), str(tmp_path / "b"), owner, 1
    )


def test_with_the_hubs_uid_map_a_planted_submission_cannot_hold_back_the_real_one(
    tmp_path,
):
    # Without a uid, student2 planting "student1+ps1+..." makes both of
    # student1's candidates disputed; with the hub's map, student1's own is
    # taken and only the planted one is refused.
    import json

    from aaltohub.nbgrader_exchange import InboundEntry, judge, shipped_uids

    (tmp_path / "known_uids.json").write_text(json.dumps({"student1": 1001}))
    uids = shipped_uids(str(tmp_path))
    entries = [
        InboundEntry("student1+ps1+2026-01-01 10:00:00.000000 UTC", 1001, True),
        InboundEntry("student1+ps1+2026-01-01 10:05:00.000000 UTC", 1002, True),
        InboundEntry("student2+ps1+2026-01-01 10:01:00.000000 UTC", 1002, True),
    ]
    without = judge(entries, lambda name: None)
    assert entries[0].name in without  # the real one is held back
    with_map = judge(entries, uids.get)
    assert entries[0].name not in with_map  # taken
    assert "owned by uid 1002" in with_map[entries[1].name]  # the plant refused
    assert shipped_uids(str(tmp_path / "nowhere")) == {}
