"""``aaltohub course end-term`` on a real storage tree, with real nbgrader
and a real JupyterHub, and the walk-through of one course across new-term,
end-term and retention (its output: test-artifacts/term-walkthrough.txt).
"""

# ruff: noqa: F811 (pytest fixtures imported from term_world and hub_process)
from __future__ import annotations

import datetime
import json
import os
import shlex
import stat

import pytest
import yaml

from aaltohub.announcements import AnnouncementStore
from aaltohub.storage.gradebook_export import ExportError, export_gradebook
from aaltohub.storage.retention_store import Ledger
from hub_process import REPO, hub  # noqa: F401 (fixture)
from term_world import gradebook, run, world  # noqa: F401 (fixtures)

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)


def end_term(capsys, world, *extra):
    """``course end-term intro`` (``capsys``: pytest's, or a Transcript)."""
    ann = world["cat"].parent / "announcements.json"
    call = capsys if isinstance(capsys, Transcript) else lambda *a: run(capsys, *a)
    return call(
        "course",
        "end-term",
        "intro",
        *world["common"],
        "--announcements",
        ann,
        "--audit-log",
        world["cat"].parent / "audit.log",
        *extra,
    )


def test_end_term_in_the_future_sets_dates_and_announces_only(world, capsys):
    at = (datetime.datetime.now(UTC) + 3 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, out, _ = end_term(
        capsys, world, "--at", at, "--grace", "14", "--hub-url", "http://127.0.0.1:9"
    )
    assert code == 0, out
    assert out.splitlines()[0].startswith("access: students lose access at")
    assert "notice: announced to the course until" in out
    assert "run this again after then" in out
    store = AnnouncementStore(world["cat"].parent / "announcements.json")
    (notice,) = store.active("intro")
    assert "students lose access" in notice.text
    c = yaml.safe_load((world["cat"] / "intro.yaml").read_text())
    assert set(c["term"]["end_term"]) == {"access", "notice"}
    assert "archive" not in c
    # Again: nothing new, the same notice.
    code, out, _ = end_term(capsys, world, "--at", at, "--grace", "14")
    assert "access: dates set already" in out and "announced already" in out
    assert len(store.active("intro")) == 1


class Transcript:
    """Runs commands as ``run`` does and keeps them with their output, for
    test-artifacts/term-walkthrough.txt (the issue's closing note)."""

    def __init__(self, capsys, tmp):
        self.capsys, self.tmp, self.lines = capsys, str(tmp), []

    def __call__(self, *argv):
        code, out, err = run(self.capsys, *argv)
        shown = shlex.join(str(a) for a in argv).replace(self.tmp, "$TMP")
        self.lines.append("$ aaltohub " + shown)
        for text in (out, err):
            self.lines += [x.replace(self.tmp, "$TMP") for x in text.splitlines()]
        self.lines.append(f"(exit {code})")
        return code, out, err

    def note(self, text):
        self.lines.append(f"# {text}")

    def save(self):
        out = REPO / "test-artifacts" / "term-walkthrough.txt"
        out.parent.mkdir(exist_ok=True)
        out.write_text("\n".join(self.lines) + "\n")


def test_walk_through_one_course(world, hub, capsys, tmp_path):
    """new-term, end-term and retention for one course, as an operator runs
    them; the output is kept in test-artifacts/term-walkthrough.txt."""
    t = Transcript(capsys, tmp_path)
    _new_term(t, world)
    for name in ("s1", "teacher1", "other"):
        hub.user(name)
    hub.start("s1", "intro")
    hub.start("teacher1", "intro-instructor", server="grading")
    hub.start("other", "ml")
    hub_args = ["--hub-url", hub.url, "--hub-token-file", hub.token_file]
    argv = ["--at", "2026-05-31", "--grace", "3650", *hub_args]
    _end_term_once(t, world, hub, argv)
    _end_term_again(t, world, argv)
    _retention(t, world)
    t.save()


def _new_term(t, world):
    t.note("Next term's course from this one, without the students' work")
    code, out, _ = t(
        "course",
        "new-term",
        "intro",
        "intro-2027",
        "--starts",
        "2027-01-07",
        "--ends",
        "2027-05-30",
        "--name",
        "Intro 2027",
        "--without-student-work",
        *world["common"],
    )
    assert code == 0 and "copied" in out


def _end_term_once(t, world, hub, argv):
    cat, files = world["cat"], world["files"]
    t.note("End this term: s1 and teacher1 run intro servers, other runs ml;")
    t.note("a long grace keeps the instructors' read-only phase whenever this runs")
    code, out, err = end_term(t, world, *argv, "--dry-run")
    assert code == 0, out + err
    assert "servers: stopped 2: s1, teacher1/grading (dry run: not done)" in out
    assert "archive" not in yaml.safe_load((cat / "intro.yaml").read_text())
    assert hub.servers("s1")

    code, out, err = end_term(t, world, *argv)
    assert code == 0, out + err
    assert out.startswith("access: students lose access at 2026-06-01 00:00 UTC")
    assert "gradebook: exported to" in out
    assert "servers: stopped 2: s1, teacher1/grading" in out
    # servers (read-write mounts) are stopped before the export reads
    assert out.index("servers: stopped") < out.index("gradebook: exported")
    assert hub.wait_stopped("s1") and hub.wait_stopped("teacher1", "grading")
    assert hub.servers("other")  # another course's server keeps running
    csv = (files / "gradebook-export.csv").read_text().splitlines()
    assert csv[0].startswith("assignment,duedate,timestamp,student_id")
    assert sorted(line.split(",")[3] for line in csv[1:]) == ["s1", "s2"]
    mode = os.stat(files / "gradebook-export.csv").st_mode
    assert stat.S_IMODE(mode) == 0o440  # 0640, then archived read-only
    data = yaml.safe_load((cat / "intro.yaml").read_text())
    assert data["archive"] is True
    assert set(data["term"]["end_term"]) == {
        "access",
        "notice",
        "gradebook",
        "servers",
        "archive",
    }
    assert not stat.S_IMODE(os.stat(files).st_mode) & 0o222


def _end_term_again(t, world, argv):
    cat = world["cat"]
    t.note("Again: every step finds its work done")
    code, out, _ = end_term(t, world, *argv)
    assert code == 0
    assert out.splitlines() == [
        "access: dates set already",
        "notice: announced already",
        "servers: none running",
        "gradebook: exported already",
        "archive: archived already",
    ]
    code, out, _ = t("course", "list", "--catalog", cat)
    assert "archived" in out and "5/5" in out and "instructors read-only until" in out
    records = [
        json.loads(x) for x in (cat.parent / "audit.log").read_text().splitlines()
    ]
    actions = [r["action"] for r in records if r["outcome"] == "ok"]
    for step in ("access", "notice", "gradebook", "stop", "servers", "flag", "storage"):
        assert f"course.end-term.{step}" in actions
    assert sum(a == "course.end-term.stop" for a in actions) == 2


def _retention(t, world):
    state = world["cat"].parent / "state"
    argv = [*world["common"], "--state-dir", state]
    apply = [
        "retention",
        "apply",
        *argv,
        "--announcements",
        world["cat"].parent / "announcements.json",
        "--audit-log",
        world["cat"].parent / "audit.log",
    ]
    t.note("Retention: exchange kept 90 days, submissions 150, the course 730")
    code, out, _ = t("retention", "report", "--all", *argv)
    assert code == 0 and "warn now" in out
    code, out, err = t(*apply)
    assert code == 0 and "warn 2, delete 0" in err
    code, out, err = t(*apply)
    assert code == 0 and "warn 0, delete 0" in err
    t.note("30 days later (the test moves the ledger's warning times back)")
    with Ledger(state / "retention.json").update() as data:
        for entry in data.values():
            entry["warned"] = "2000-01-01T00:00:00Z"
    code, out, _ = t("retention", "report", *argv)
    assert "due: delete" in out
    code, out, err = t(*apply)
    assert code == 0 and "delete 2" in err
    store = world["store"]
    assert not (store / "exchange/intro").exists()
    assert not (world["files"] / "submitted").exists()
    assert (world["files"] / "source/ps1/ps1.ipynb").exists()
    code, out, err = t(*apply)
    assert code == 0 and "warn 0, delete 0" in err
    code, out, _ = t("retention", "report", "--all", *argv)
    assert out.count("\n") == 2  # the header and the course itself, kept


def test_end_term_without_a_hub_says_what_is_left(world, capsys, monkeypatch):
    (world["files"] / "gradebook.db").unlink()  # the export has its own test
    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    code, out, err = end_term(capsys, world, "--at", "2026-05-31")
    assert code == 1
    assert "servers: FAILED: no hub API: pass --hub-url" in out
    code, out, _ = end_term(capsys, world, "--at", "2026-05-31", "--json")
    assert code == 1
    assert json.loads(out)["done"] == ["access", "notice", "gradebook", "archive"]
    assert "archive: " in out and "1 not" in err


def test_the_export_reads_only_a_plain_gradebook(tmp_path):
    for make in (os.mkfifo, lambda p: os.symlink("/etc/shadow", p)):
        files = tmp_path / str(len(list(tmp_path.iterdir())))
        files.mkdir()
        make(files / "gradebook.db")
        with pytest.raises(
            ExportError, match=r"not a plain file|cannot read the gradebook"
        ):
            export_gradebook(str(files), "intro", None)
        assert not (files / "gradebook-export.csv").exists()


def test_the_export_sets_its_mode_on_the_file_it_wrote(tmp_path, monkeypatch):
    """Instructors can rename the export's temporary file and plant a link
    under its name: mode and group are set on the open file, never by name."""
    from aaltohub.storage import gradebook_export

    files, outside = tmp_path / "files", tmp_path / "shadow"
    files.mkdir()
    outside.write_text("secret")
    outside.chmod(0o600)
    (tmp_path / "grades.csv").write_text("assignment,student_id\n")
    real_copy = gradebook_export.shutil.copyfileobj

    def copy_then_swap(src, dst, *a):
        real_copy(src, dst, *a)
        (tmp,) = files.glob(".gradebook-export-*")
        tmp.rename(files / "moved.csv")
        tmp.symlink_to(outside)

    monkeypatch.setattr(gradebook_export.shutil, "copyfileobj", copy_then_swap)
    gradebook_export._install(str(tmp_path / "grades.csv"), str(files), 0)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o600
    assert outside.read_text() == "secret"
    assert stat.S_IMODE((files / "moved.csv").stat().st_mode) == 0o640


def test_the_export_waits_for_servers_that_are_still_stopping(
    world, capsys, monkeypatch
):
    """A stop the hub answers 202 to goes on after it: while a server of the
    course still runs (read-write mounts), the export is left for a re-run.
    A stand-in for the hub's API (a server that never finishes stopping is
    not something a real hub does on cue); the real API is in the
    walk-through."""
    from aaltohub.commands import course_end_term

    class StuckHub:
        def course_servers(self, slug):
            return [("s1", "")]

        def stop(self, user, name):
            pass

    monkeypatch.setattr(course_end_term, "hub_from_args", lambda args: StuckHub())
    monkeypatch.setattr(course_end_term, "STOP_WAIT", 0)
    code, out, _ = end_term(capsys, world, "--at", "2026-05-31")
    assert code == 1
    assert (
        "servers: FAILED: still stopping after 0 s: s1; check them on the"
        " hub's admin page" in out
    )
    assert "gradebook: not done: servers still running: run this again" in out
    assert not (world["files"] / "gradebook-export.csv").exists()
