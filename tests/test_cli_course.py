"""``aaltohub course ...`` through the real command line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from aaltohub.cli import main
from aaltohub.commands.course import ArchiveError, set_archive_flag

ROOT = os.geteuid() == 0
GID = 70001 if ROOT else os.getegid()


@pytest.fixture
def env(tmp_path, monkeypatch):
    cat = tmp_path / "courses"
    cat.mkdir()
    (cat / "intro.yaml").write_text(
        textwrap.dedent(
            f"""\
            # Introduction to programming, spring term
            name: Intro   # shown on the spawn page
            gid: {GID}
            instructors: [teacher1]
            datadir: true
            archive: false  # flip when the term ends
            """
        )
    )
    (cat / "intro-users.yaml").write_text("students: [s1, s2, s3]\n")
    (cat / "ml.yaml").write_text(f"name: ML\ngid: {GID}\ninstructors: [t2]\n")
    (cat / "public.yaml").write_text("name: Public\n")
    (cat / "broken.yaml").write_text("name: Broken\nprivte: true\n")
    store = tmp_path / "store"
    store.mkdir()
    args = ["--catalog", str(cat), "--storage-root", str(store)]
    if not ROOT:
        args += ["--course-uid", str(os.geteuid())]
    return cat, store, args


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_check_fix_cycle(env, capsys):
    _, store, args = env
    code, out, err = run(capsys, "course", "check", "--all", *args)
    assert code == 1
    assert "course/intro/files: missing (its parent is missing)" in out
    assert "run 'aaltohub course fix' to repair" in err
    assert "warning: course file broken.yaml: key 'privte' is unknown" in err

    code, out, _ = run(capsys, "course", "create", "intro", "ml", *args)
    assert code == 0
    assert any(line.startswith("mkdir 2770 ") for line in out.splitlines())
    assert run(capsys, "course", "check", "--all", *args)[0] == 0

    leak = store / "course/intro/files/answers.ipynb"
    leak.write_text("{}")
    os.chmod(leak, 0o644)
    os.chmod(store / "exchange/ml/ml/inbound", 0o777)
    code, out, _ = run(capsys, "course", "check", "--all", *args)
    assert code == 1
    assert out.splitlines() == [
        "course/intro/files/answers.ipynb: world-readable (mode 0644); course files"
        " must not be accessible to others, and must stay in the course group",
        "exchange/ml/ml/inbound: mode 0777, expected 3773",
    ]

    code, out, _ = run(capsys, "course", "fix", "--all", "--dry-run", *args)
    assert code == 0 and out.startswith("would chmod")
    assert stat.S_IMODE(leak.stat().st_mode) == 0o644
    code, out, _ = run(capsys, "course", "fix", "--all", *args)
    assert code == 0
    assert stat.S_IMODE(leak.stat().st_mode) == 0o640
    code, out, _ = run(capsys, "course", "fix", "--all", *args)
    assert (code, out) == (0, "")  # nothing left to do
    assert run(capsys, "course", "check", "--all", *args)[0] == 0


def test_hard_links_are_reported_and_left_alone(env, capsys, tmp_path):
    _, store, args = env
    run(capsys, "course", "create", "ml", *args)
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("not the course's")
    os.chmod(outside, 0o606)
    os.link(outside, store / "course/ml/files/linked.txt")
    code, out, err = run(capsys, "course", "check", "ml", *args)
    assert code == 1
    assert (
        "course/ml/files/linked.txt: has 2 hard links, so 'aaltohub course fix'" in out
    )
    assert "need a human ('fix' will not change them)" in err
    code, out, _ = run(capsys, "course", "fix", "ml", *args)
    assert code == 1
    assert "error: course/ml/files/linked.txt: has 2 hard links" in out
    assert stat.S_IMODE(outside.stat().st_mode) == 0o606


@pytest.mark.skipif(not ROOT, reason="submissions by other uids need root")
def test_check_names_submissions_made_by_another_student(env, capsys, tmp_path):
    _, store, args = env
    run(capsys, "course", "create", "ml", *args)
    inbound = store / "exchange/ml/ml/inbound"
    for name, uid in [
        ("student1+ps1+2024-01-01 10:00:00 UTC+aa", 1001234),
        ("student1+ps1+2024-01-02 10:00:00 UTC+bb", 1001235),  # planted
        ("student2+ps1+2024-01-01 10:00:00 UTC+cc", 1001235),
    ]:
        (inbound / name).mkdir()
        os.chown(inbound / name, uid, 70000)
    planted = "exchange/ml/ml/inbound/student1+ps1+2024-01-02 10:00:00 UTC+bb"

    code, out, err = run(capsys, "course", "check", "ml", *args)
    assert code == 1 and len(out.splitlines()) == 3  # who is who is not known
    assert f"{planted}: claims to be student1's but its owner, uid 1001235, also" in out

    uids = str(tmp_path / "uids.yaml")
    Path(uids).write_text("student1: 1001234\nstudent2: 1001235\n")
    code, out, err = run(capsys, "course", "check", "ml", "--student-uids", uids, *args)
    assert code == 1
    assert out.splitlines() == [
        f"{planted}: claims to be student1's (uid 1001234) but is owned by uid"
        " 1001235; nbgrader collect would take it as that student's. Look at it"
        " ('ls -lan'), remove it as root if the student did not make it (inbound"
        " is sticky), then run 'aaltohub course check'"
    ]
    assert "1 need a human" in err and "run 'aaltohub course fix'" not in err
    code, out, _ = run(capsys, "course", "fix", "ml", "--student-uids", uids, *args)
    assert code == 1 and out.startswith(f"error: {planted}: claims")
    # a StaticIdentity users file works too; a bad file is a usage error
    Path(uids).write_text("users:\n  student1: {uid: 1001234, gid: 70000}\n")
    code, out, _ = run(capsys, "course", "check", "ml", "--student-uids", uids, *args)
    assert "student2+ps1+2024-01-01 10:00:00 UTC+cc: claims to be student2's but" in out
    Path(uids).write_text("student1: one\n")
    code, _, err = run(capsys, "course", "check", "ml", "--student-uids", uids, *args)
    assert code == 2 and f"--student-uids {uids}: expected 'username: uid'" in err


def test_check_json(env, capsys):
    _, _, args = env
    code, out, _ = run(capsys, "course", "check", "ml", "--json", *args)
    data = json.loads(out)
    assert code == 1 and data["courses"] == ["ml"]
    assert {p["kind"] for p in data["problems"]} == {"missing"}
    assert all(
        set(p) == {"path", "kind", "message", "fixable"} for p in data["problems"]
    )


def test_usage_errors_name_the_fix(env, capsys, monkeypatch):
    _, _, args = env
    code, _, err = run(capsys, "course", "check", *args)
    assert code == 2 and "error: name the courses to work on, or pass --all" in err
    code, _, err = run(capsys, "course", "check", "broken", *args)
    assert code == 2 and "key 'privte' is unknown (did you mean 'private'?)" in err
    code, _, err = run(capsys, "course", "check", "nope", *args)
    assert code == 2 and "no course file nope.yaml" in err
    monkeypatch.delenv("AALTOHUB_STORAGE_ROOT", raising=False)
    code, _, err = run(capsys, "course", "check", "ml", "--catalog", args[1])
    assert code == 2 and "pass --storage-root DIR" in err
    code, _, err = run(
        capsys, "course", "check", "ml", "--catalog", args[1], "--storage-root", "/no"
    )
    assert code == 2 and "storage root /no" in err


def test_environment_variables_as_defaults(env, capsys, monkeypatch):
    cat, store, args = env
    monkeypatch.setenv("AALTOHUB_CATALOG", str(cat))
    monkeypatch.setenv("AALTOHUB_STORAGE_ROOT", str(store))
    extra = args[4:]  # --course-uid as non-root
    assert run(capsys, "course", "create", "ml", *extra)[0] == 0
    assert (store / "course/ml/files").is_dir()


def test_list_with_roles_and_status(env, capsys):
    cat, _, args = env
    run(capsys, "course", "create", "ml", *args)
    code, out, err = run(capsys, "course", "list", *args)
    assert code == 0
    table = [line.split() for line in out.splitlines()]
    assert table[0] == [
        "SLUG",
        "STATUS",
        "STUDENTS",
        "INSTRUCTORS",
        "GID",
        "STORAGE",
        "END-TERM",
        "TERM",
    ]
    rows = {r[0]: r for r in table[1:]}
    assert rows["intro"][:4] == ["intro", "public", "3", "1"]
    assert rows["intro"][5:] == ["missing", "-", "open"]
    assert rows["ml"][5] == "ok"
    assert rows["public"][5:] == ["none-needed", "-", "open"]
    assert rows["broken"][1] == "invalid"
    assert "invalid: course file broken.yaml" in err

    code, out, _ = run(capsys, "course", "list", "--json", "--catalog", str(cat))
    data = {r["slug"]: r for r in json.loads(out)}
    assert data["intro"]["students"] == 3 and "storage" not in data["intro"]
    assert data["broken"]["status"] == "invalid"


def test_archive_edits_yaml_and_makes_files_read_only(env, capsys):
    cat, store, args = env
    run(capsys, "course", "create", "intro", *args)
    notes = store / "course/intro/files/notes.ipynb"
    notes.write_text("{}")
    os.chmod(notes, 0o660)
    before = (cat / "intro.yaml").read_text()

    code, out, _ = run(capsys, "course", "archive", "intro", "--dry-run", *args)
    assert code == 0 and "would set archive: true" in out
    assert (cat / "intro.yaml").read_text() == before

    code, out, _ = run(capsys, "course", "archive", "intro", *args)
    assert code == 0
    after = (cat / "intro.yaml").read_text()
    # only the value changed; comments and order are kept
    assert after == before.replace("archive: false  #", "archive: true  #")
    assert stat.S_IMODE(notes.stat().st_mode) == 0o440
    assert stat.S_IMODE((store / "course/intro/files").stat().st_mode) == 0o2550
    # the catalog now sees it archived, and its read-only layout checks clean
    code, out, _ = run(capsys, "course", "list", "--json", "--catalog", str(cat))
    assert {r["slug"]: r["status"] for r in json.loads(out)}["intro"] == "archived"
    assert run(capsys, "course", "check", "intro", *args)[0] == 0
    # archiving again changes nothing
    code, out, _ = run(capsys, "course", "archive", "intro", *args)
    assert (code, out) == (0, "")


def test_state_changing_commands_write_audit_records(env, capsys, tmp_path):
    _, store, args = env
    log = tmp_path / "audit.log"
    audit = ["--audit-log", str(log)]
    assert run(capsys, "course", "create", "intro", "--dry-run", *audit, *args)[0] == 0
    assert run(capsys, "course", "create", "intro", *audit, *args)[0] == 0
    os.chmod(store / "course/intro/files", 0o2777)
    assert run(capsys, "course", "fix", "intro", *audit, *args)[0] == 0
    assert run(capsys, "course", "archive", "intro", *audit, *args)[0] == 0
    assert run(capsys, "course", "check", "intro", *args)[0] == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    seen = [(r["action"], r["course"], r["outcome"]) for r in records if r["course"]]
    assert seen[0] == ("course.create", "intro", "dry-run")
    assert ("course.create", "intro", "ok") in seen
    assert ("course.fix", "intro", "ok") in seen
    assert ("course.archive.flag", "intro", "ok") in seen
    changes = [r["target"] for r in records if r["action"] == "course.fix.change"]
    assert changes == ["chmod 2777 -> 2770 course/intro/files"]
    assert sum(r["action"] == "course.archive.storage" for r in records) > 3
    assert all(r["actor"] for r in records)


def test_archive_appends_the_key_when_absent(env, capsys):
    cat, _, args = env
    code, _, err = run(capsys, "course", "archive", "ml", *args[:2])
    assert code == 0 and "files not touched" in err
    text = (cat / "ml.yaml").read_text()
    assert text == f"name: ML\ngid: {GID}\ninstructors: [t2]\narchive: true\n"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("name: X", "name: X\narchive: true\n"),
        ("", "archive: true\n"),
        ("archive: no\nname: X\n", "archive: true\nname: X\n"),
        ("archive:\nname: X\n", "archive: true\nname: X\n"),
        ("archive: 'false' # quoted\n", "archive: true # quoted\n"),
        ("resources:\n  archive: 1\n", "resources:\n  archive: 1\narchive: true\n"),
    ],
)
def test_set_archive_flag(text, expected):
    assert set_archive_flag(text) == expected
    assert yaml.safe_load(expected)["archive"] is True


@pytest.mark.parametrize("text", ["{name: X}\n", "name: X\n...\n", "- a\n"])
def test_set_archive_flag_refuses_what_it_cannot_edit_safely(text):
    with pytest.raises(ArchiveError, match="add 'archive: true' by hand"):
        set_archive_flag(text)


def test_cli_as_a_subprocess(env):
    _, store, args = env
    cmd = [sys.executable, "-m", "aaltohub.cli", "course"]
    created = subprocess.run(
        [*cmd, "create", "ml", *args], capture_output=True, text=True, check=False
    )
    assert created.returncode == 0, created.stderr
    os.chmod(store / "course/ml/files", 0o2777)
    checked = subprocess.run(
        [*cmd, "check", "ml", "--progress", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 1
    assert checked.stdout == "course/ml/files: mode 2777, expected 2770\n"
    assert "1 problem(s)" in checked.stderr
