"""Retention: the rule (aaltohub.retention), then ``aaltohub retention
report|apply`` on a real storage tree: the warning period, idempotence,
and an audit record before anything is deleted."""

from __future__ import annotations

import datetime
import json
import os
import textwrap

import pytest

from aaltohub.cli import main
from aaltohub.course import build_course
from aaltohub.retention import (
    DELETE,
    HELD,
    KEEP,
    UNSCHEDULED,
    WARN,
    WARNED,
    Item,
    Retention,
    course_items,
    decide,
)
from aaltohub.storage.homes_archive import archive_home
from aaltohub.storage.paths import StoragePaths, UnsafePath
from aaltohub.storage.retention_store import Ledger, delete_tree, real_path

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
T0 = datetime.datetime(2027, 1, 1, tzinfo=UTC)
GID = 70001 if os.geteuid() == 0 else os.getegid()


# --- the rule -----------------------------------------------------------------------
def test_nothing_is_deleted_before_a_full_warning_period():
    item = Item("exchange", "intro", ("exchange/intro",), T0)
    assert decide(item, None, T0 - 31 * DAY, 30, holders=()).action == KEEP
    assert decide(item, None, T0 - 30 * DAY, 30, holders=()).action == WARN
    # due, but never warned: warn now, never delete
    assert decide(item, None, T0 + 100 * DAY, 30, holders=()).action == WARN
    warned = decide(item, T0 - 30 * DAY, T0 - DAY, 30, holders=())
    assert (warned.action, warned.delete_after) == (WARNED, T0)
    assert decide(item, T0 - 30 * DAY, T0, 30, holders=()).action == DELETE
    # warned late (after the due date): the full period still runs
    late = decide(item, T0 + 10 * DAY, T0 + 39 * DAY, 30, holders=())
    assert (late.action, late.delete_after) == (WARNED, T0 + 40 * DAY)
    assert decide(item, T0 + 10 * DAY, T0 + 40 * DAY, 30, holders=()).action == DELETE
    unscheduled = Item("course", "x", (), None)
    assert decide(unscheduled, None, T0, 30, holders=()).action == UNSCHEDULED
    # storage an open course also uses is held, whatever the dates say
    held = decide(item, T0 - 30 * DAY, T0 + 100 * DAY, 30, holders=("intro-2027",))
    assert (held.action, held.delete_after) == (HELD, None)


def test_items_of_a_course_follow_its_term_and_periods():
    settings = Retention(course_days=700, submissions_days=300, exchange_days=100)
    data = {"gid": GID, "instructors": ["t"], "datadir": True}
    open_course = build_course("intro", data)
    assert course_items(open_course, StoragePaths(), settings) == []
    ended = build_course(
        "intro",
        {
            **data,
            "archive": True,
            "term": {"ends": "2026-12-31"},
            "retention": {"exchange": 10},
        },
    )
    items = {i.kind: i for i in course_items(ended, StoragePaths(), settings)}
    assert items["exchange"].due == T0 + 10 * DAY  # the course's own period
    assert items["submissions"].due == T0 + 300 * DAY
    assert items["course"].due == T0 + 700 * DAY
    assert items["course"].paths == ("course/intro/files", "course/intro/data")
    assert items["submissions"].paths == tuple(
        f"course/intro/files/{d}" for d in ("submitted", "autograded", "feedback")
    )
    undated = build_course("intro", {**data, "archive": True})
    assert {i.due for i in course_items(undated, StoragePaths(), settings)} == {None}


def test_deleting_never_follows_a_link(tmp_path):
    (tmp_path / "course/intro/files").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    os.symlink(outside, tmp_path / "course/intro/files/submitted")
    with pytest.raises(UnsafePath, match="symbolic link"):
        delete_tree(str(tmp_path), "course/intro/files/submitted/keep")
    with pytest.raises(UnsafePath):
        real_path(str(tmp_path), "../outside")
    assert delete_tree(str(tmp_path), "course/intro/files/submitted")  # the link only
    assert (outside / "keep").exists()
    assert not delete_tree(str(tmp_path), "course/intro/files/submitted")


# --- the commands -------------------------------------------------------------------
def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def world(tmp_path, capsys):
    cat, store, state = tmp_path / "courses", tmp_path / "store", tmp_path / "state"
    cat.mkdir()
    store.mkdir()
    ends = (datetime.datetime.now(UTC) - 100 * DAY).date()
    (cat / "old.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: Old course
            gid: {GID}
            instructors: [t1]
            archive: true
            term: {{ends: {ends}}}
            retention: {{exchange: 90, submissions: 120, course: 400}}
            """
        )
    )
    (cat / "current.yaml").write_text(f"name: Current\ngid: {GID}\ninstructors: [t1]\n")
    common = ["--catalog", cat, "--storage-root", store, "--state-dir", state]
    if os.geteuid() != 0:
        common += ["--course-uid", os.geteuid()]
    for slug in ("old", "current"):
        (store / f"exchange/{slug}/{slug}/inbound/s1+ps1+t").mkdir(parents=True)
        (store / f"course/{slug}/files/submitted/s1").mkdir(parents=True)
        (store / f"exchange/{slug}/{slug}/inbound/s1+ps1+t/a.ipynb").write_text(
            "{}" * 500
        )
    return {
        "cat": cat,
        "store": store,
        "state": state,
        "common": common,
        "ann": tmp_path / "announcements.json",
        "log": tmp_path / "audit.log",
    }


def apply(capsys, w, *extra, audit_log=None):
    return run(
        capsys,
        "retention",
        "apply",
        *w["common"],
        "--announcements",
        w["ann"],
        "--audit-log",
        audit_log or w["log"],
        *extra,
    )


def records(w):
    return [json.loads(x) for x in w["log"].read_text().splitlines()]


def test_report_warn_wait_delete(world, capsys):
    w = world
    code, out, err = run(capsys, "retention", "report", *w["common"])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["OWNER", "WHAT", "SIZE", "DUE", "STATUS"]
    # exchange: due 10 days ago, never warned; submissions: due in 20 days
    assert lines[1].split()[:2] == ["old", "exchange"] and lines[1].endswith("warn now")
    assert lines[2].split()[:2] == ["old", "submissions"]
    assert len(lines) == 3 and "current" not in out  # open courses have no items
    code, out, _ = run(capsys, "retention", "report", "--all", "--json", *w["common"])
    rows = {r["what"]: r for r in json.loads(out)}
    assert rows["course"]["status"] == KEEP and rows["exchange"]["size"] > 0

    # Warning: announcement, report file, ledger, audit; nothing deleted.
    assert apply(capsys, w, "--dry-run")[0] == 0
    assert not w["ann"].exists() and not w["state"].exists()
    code, out, err = apply(capsys, w)
    assert code == 0, err
    assert "warn 2, delete 0" in err
    notices = json.loads(w["ann"].read_text())
    assert {n["course"] for n in notices} == {"old"} and len(notices) == 2
    assert "will be deleted on or after" in notices[0]["text"]
    report = (w["state"] / "reports/old.txt").read_text()
    assert "path: exchange/old" in report
    assert (w["store"] / "exchange/old").exists()
    # Again, at once: nothing new (warned once), nothing deleted yet.
    code, out, err = apply(capsys, w)
    assert code == 0 and out == "" and "warn 0, delete 0" in err
    code, out, _ = run(capsys, "retention", "report", *w["common"])
    assert "warned; delete after" in out

    # The warning period passes (the ledger's times are moved back).
    ledger = Ledger(w["state"] / "retention.json")
    with ledger.update() as data:
        for entry in data.values():
            entry["warned"] = "2000-01-01T00:00:00Z"
    code, out, err = apply(capsys, w, "--dry-run")
    assert "would delete: exchange:old exchange/old" in out
    assert (w["store"] / "exchange/old").exists()
    code, out, err = apply(capsys, w)
    assert code == 0, err
    assert out.splitlines() == ["deleted: exchange/old"]
    assert not (w["store"] / "exchange/old").exists()
    assert (w["store"] / "course/old/files/submitted").exists()  # due in 20 days
    assert (w["store"] / "exchange/current").exists()
    deletes = [r for r in records(w) if r["action"] == "retention.delete"]
    assert [(r["outcome"], r["target"]) for r in deletes] == [
        ("started", "exchange/old"),
        ("ok", "exchange/old"),
    ]
    # Idempotent: what is gone is not listed or deleted again.
    code, out, err = apply(capsys, w)
    assert code == 0 and out == "" and "delete 0" in err


def test_apply_refuses_to_run_without_an_audit_log(world, capsys, monkeypatch):
    monkeypatch.delenv("AALTOHUB_AUDIT_LOG", raising=False)
    code, _, err = run(capsys, "retention", "apply", *world["common"])
    assert code == 2 and "deletes nothing without an audit record" in err
    code, _, err = run(
        capsys,
        "retention",
        "report",
        "--catalog",
        world["cat"],
        "--storage-root",
        world["store"],
    )
    assert code == 2 and "no state directory" in err


def test_a_warning_counts_only_for_the_date_it_announced(world, capsys):
    w = world
    apply(capsys, w)
    ledger = Ledger(w["state"] / "retention.json")
    with ledger.update() as data:
        for entry in data.values():
            entry["warned"] = "2000-01-01T00:00:00Z"
    # The course's exchange is now kept longer: its old warning no longer counts.
    text = (w["cat"] / "old.yaml").read_text().replace("exchange: 90", "exchange: 95")
    (w["cat"] / "old.yaml").write_text(text)
    code, out, err = apply(capsys, w)
    assert code == 0 and "delete 0" in err and "warned: exchange:old" in out
    assert (w["store"] / "exchange/old").exists()


def test_an_archived_home_is_deleted_after_its_period_and_a_warning(world, capsys):
    w = world
    home = w["store"] / "u/07/leaver"
    home.mkdir(parents=True)
    (home / "thesis.ipynb").write_text("{}")
    long_ago = datetime.datetime.now(UTC) - 400 * DAY
    archive_home(
        str(w["store"]), "u/07/leaver", "archive/homes", "leaver", "left", long_ago
    )
    code, out, _ = run(capsys, "retention", "report", *w["common"])
    assert "leaver  home" in out and "warn now" in out
    code, out, _ = apply(capsys, w)
    assert code == 0 and "warned: home:leaver" in out
    assert "archived home directory" in (w["state"] / "reports/leaver.txt").read_text()
    notices = json.loads(w["ann"].read_text())
    assert all(n["course"] == "old" for n in notices)  # no notice for a leaver
    with Ledger(w["state"] / "retention.json").update() as data:
        data["home:leaver"]["warned"] = "2000-01-01T00:00:00Z"
    code, out, _ = apply(capsys, w)
    assert code == 0 and "deleted: archive/homes/leaver" in out
    assert not (w["store"] / "archive/homes/leaver").exists()
    assert not (w["store"] / "archive/homes/leaver.archived.json").exists()


def test_an_item_sharing_a_course_that_is_not_closed_is_held(world, capsys):
    """A closed course whose coursedir_slug is an open course's (terms reuse
    it; a course file may name any) never warns or deletes that storage."""
    w = world
    (w["cat"] / "evil.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: Evil
            gid: {GID}
            instructors: [t2]
            archive: true
            coursedir_slug: current
            term: {{ends: 2020-01-01}}
            retention: {{exchange: 1, submissions: 1, course: 1}}
            """
        )
    )
    code, out, err = run(capsys, "retention", "report", *w["common"])
    assert code == 0, err
    held = [x for x in out.splitlines() if x.startswith("evil")]
    assert len(held) == 3 and all(
        "held: storage also used by current" in x for x in held
    )
    assert "warning: course:evil (course/current/files) is not warned" in err
    apply(capsys, w)
    with Ledger(w["state"] / "retention.json").update() as data:
        assert not any(key.endswith(":evil") for key in data)
        for entry in data.values():
            entry["warned"] = "2000-01-01T00:00:00Z"
    code, out, err = apply(capsys, w)
    assert code == 0 and "deleted: exchange/old" in out and "3 held" in err
    assert "evil" not in out
    assert (w["store"] / "exchange/current/current/inbound").is_dir()
    assert (w["store"] / "course/current/files/submitted/s1").is_dir()
    notices = json.loads(w["ann"].read_text())
    assert {n["course"] for n in notices} == {"old"}


def test_held_covers_paths_inside_and_around_the_other_courses(world):
    from aaltohub.retention import held_by, overlaps

    assert overlaps("course/x/files", "course/x/files/submitted")
    assert overlaps("course/x", "course/x/files") and overlaps("a/b", "a/b/")
    assert not overlaps("course/x/files", "course/x/files2")
    item = Item("submissions", "old", ("course/x/files/submitted",), T0)
    used = {"old": ("course/x/files",), "new": ("course/x",), "y": ("course/y",)}
    assert held_by(item, used) == ["new"]  # its own course does not hold it


@pytest.mark.parametrize("where", ["/dev/full", "under a file"])
def test_apply_deletes_nothing_when_the_audit_log_cannot_be_written(
    world, capsys, where
):
    """The 'started' record must be written before anything is removed: an
    audit log on /dev/full (every write fails: ENOSPC), or in a directory
    that is a file (it cannot be opened), stops the delete."""
    from aaltohub.audit import AuditLog

    if where == "/dev/full" and not os.path.exists(where):
        pytest.skip("needs /dev/full")
    if where == "under a file":
        (world["state"].parent / "plain").write_text("")
        where = str(world["state"].parent / "plain/audit.log")
    log = AuditLog(destination="file", path=where)
    log.record("x")
    assert log.flush() is False  # the write error is reported, not swallowed
    log.close()
    w = world
    assert apply(capsys, w)[0] == 0
    with Ledger(w["state"] / "retention.json").update() as data:
        for entry in data.values():
            entry["warned"] = "2000-01-01T00:00:00Z"
    code, out, err = apply(capsys, w, audit_log=where)
    assert code == 1 and out == ""
    assert "exchange:old: exchange/old: not deleted: the audit log could not" in err
    assert "1 failed" in err
    assert (w["store"] / "exchange/old/old/inbound").is_dir()
    assert "deleted" not in Ledger(w["state"] / "retention.json").read()["exchange:old"]
