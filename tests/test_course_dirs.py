"""Creating, checking and repairing course directories on a real file system.

Ownership tests need root (CI runs as root); everything else also runs as a
normal user, with the course owned by that user and one of their groups.
"""

from __future__ import annotations

import io
import os
import stat

import pytest

from aaltohub.course import build_course
from aaltohub.storage import course_dirs
from aaltohub.storage.layout import StorageLayout

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="changing ownership needs root")
GID = 70001 if ROOT else os.getegid()


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def course():
    return build_course("intro", {"gid": GID, "instructors": ["t1"], "datadir": True})


@pytest.fixture
def layout():
    return StorageLayout(course_uid=os.geteuid())


@pytest.fixture
def store(tmp_path, course, layout):
    """A storage root with the course created correctly."""
    root = tmp_path / "store"
    root.mkdir()
    result = course_dirs.run(str(root), layout.entries(course), fix=True)
    assert not result.unfixed
    return root


def check(root, layout, course):
    return course_dirs.run(str(root), layout.entries(course))


def lines(result):
    return [str(p) for p in result.problems]


def test_create_makes_every_directory_right(store, layout, course):
    for entry in layout.entries(course):
        st = os.lstat(store / entry.path)
        assert stat.S_ISDIR(st.st_mode)
        if entry.mode is not None:
            assert stat.S_IMODE(st.st_mode) == entry.mode, entry.path
            assert (st.st_uid, st.st_gid) == (entry.uid, entry.gid), entry.path
    assert mode(store / "course/intro/files") == 0o2770
    assert mode(store / "exchange/intro/intro/inbound") == 0o2773
    assert check(store, layout, course).problems == []


def test_missing_directories_are_reported_one_line_each(tmp_path, layout, course):
    root = tmp_path / "empty"
    root.mkdir()
    result = check(root, layout, course)
    assert len(result.problems) == len(layout.entries(course))
    assert {p.kind for p in result.problems} == {"missing"}
    assert "course/intro/files: missing (its parent is missing)" in lines(result)


def test_check_reports_wrong_modes_and_leaks(store, layout, course):
    files = store / "course/intro/files"
    os.chmod(files, 0o2775)
    (files / "lecture").mkdir()
    secret = files / "lecture" / "solutions.ipynb"
    secret.write_text("{}")
    os.chmod(secret, 0o644)  # world-readable course file: a leak
    os.chmod(files / "lecture", 0o770)  # lost setgid
    data = store / "course/intro/data/set.csv"
    data.write_text("1,2")
    os.chmod(data, 0o666)  # world-writable data
    ok_data = store / "course/intro/data/ok.csv"
    ok_data.write_text("1")
    os.chmod(ok_data, 0o644)  # readable data is the point of data
    released = store / "exchange/intro/intro/outbound/ps1"
    released.mkdir()
    os.chmod(released, 0o2777)

    result = check(store, layout, course)
    assert sorted(lines(result)) == sorted(
        [
            "course/intro/files: mode 2775, expected 2770",
            "course/intro/files/lecture: directory mode 0770 lacks setgid, so new"
            " files leave the course group",
            "course/intro/files/lecture/solutions.ipynb: world-readable (mode 0644);"
            " course files must not be accessible to others, and must stay in the"
            " course group",
            "course/intro/data/set.csv: world-writable (mode 0666); course data must"
            " not be world-writable",
            "exchange/intro/intro/outbound/ps1: world-writable (mode 2777); released"
            " assignments and feedback must not be world-writable",
        ]
    )


def test_nbgrader_submissions_are_not_flagged(store, layout, course):
    sub = store / "exchange/intro/intro/inbound/student1+ps1+2024-01-01"
    sub.mkdir()
    os.chmod(sub, 0o777)  # what nbgrader submit does on purpose
    assert check(store, layout, course).problems == []


def test_fix_repairs_and_is_idempotent_keeping_ctimes(store, layout, course):
    files = store / "course/intro/files"
    good = files / "good.ipynb"
    good.write_text("{}")
    os.chmod(good, 0o660)
    bad = files / "bad.ipynb"
    bad.write_text("{}")
    os.chmod(bad, 0o664)
    os.chmod(store / "exchange/intro/intro/feedback", 0o755)
    before = {p: os.lstat(p).st_ctime_ns for p in (good, files / ".", store / "course")}

    result = course_dirs.run(str(store), layout.entries(course), fix=True)
    assert sorted(result.actions) == [
        "chmod 0664 -> 0660 course/intro/files/bad.ipynb",
        "chmod 0755 -> 2771 exchange/intro/intro/feedback",
    ]
    assert mode(bad) == 0o660
    assert mode(store / "exchange/intro/intro/feedback") == 0o2771
    # entries that were right were not touched at all
    assert {p: os.lstat(p).st_ctime_ns for p in before} == before
    assert check(store, layout, course).problems == []

    ctimes = {
        os.path.join(d, n): os.lstat(os.path.join(d, n)).st_ctime_ns
        for d, dirs, names in os.walk(store)
        for n in dirs + names
    }
    again = course_dirs.run(str(store), layout.entries(course), fix=True)
    assert again.actions == [] and again.problems == []
    assert {p: os.lstat(p).st_ctime_ns for p in ctimes} == ctimes


def test_dry_run_changes_nothing(tmp_path, store, layout, course):
    bad = store / "course/intro/files/x"
    bad.write_text("")
    os.chmod(bad, 0o606)
    result = course_dirs.run(str(store), layout.entries(course), fix=True, dry_run=True)
    assert result.actions == ["would chmod 0606 -> 0600 course/intro/files/x"]
    assert mode(bad) == 0o606
    empty = tmp_path / "empty"
    empty.mkdir()
    planned = course_dirs.run(
        str(empty), layout.entries(course), fix=True, dry_run=True
    )
    assert planned.actions[0].startswith("would mkdir 0755 ")
    assert os.listdir(empty) == []


def test_symlinks_are_never_followed(tmp_path, store, layout, course):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "passwd"
    target.write_text("x")
    os.chmod(target, 0o644)
    os.chmod(outside, 0o777)
    files = store / "course/intro/files"
    (files / "link").symlink_to(target)
    (files / "dirlink").symlink_to(outside)

    result = course_dirs.run(str(store), layout.entries(course), fix=True)
    assert result.problems == []  # links themselves are not problems
    assert mode(target) == 0o644 and mode(outside) == 0o777

    # an expected directory replaced by a symlink: reported, never repaired
    data = store / "course/intro/data"
    os.rmdir(data)
    data.symlink_to(outside)
    result = course_dirs.run(str(store), layout.entries(course), fix=True)
    assert [p.kind for p in result.problems] == ["symlink"]
    assert "remove it, then run 'aaltohub course fix'" in str(result.problems[0])
    assert result.unfixed and mode(outside) == 0o777
    assert os.path.islink(data)

    # a symlinked parent: nothing below it is touched either
    os.unlink(data)
    os.mkdir(data)
    exch = store / "exchange"
    os.rename(exch, tmp_path / "real-exchange")
    exch.symlink_to(tmp_path / "real-exchange")
    result = course_dirs.run(str(store), layout.entries(course), fix=True)
    assert any(p.kind == "symlink" and p.path == "exchange" for p in result.problems)
    assert not any(a.endswith("exchange/intro") for a in result.actions)


def test_a_file_where_a_directory_belongs(store, layout, course):
    files = store / "course/intro/files"
    os.rmdir(files)
    files.write_text("oops")
    result = course_dirs.run(str(store), layout.entries(course), fix=True)
    assert [p.kind for p in result.problems] == ["not-a-directory"]
    assert files.read_text() == "oops"


def test_archived_layout_makes_everything_read_only(store, layout, course):
    f = store / "course/intro/files/notes.ipynb"
    f.write_text("{}")
    os.chmod(f, 0o660)
    d = store / "course/intro/files/sub"
    d.mkdir()
    os.chmod(d, 0o2770)
    course_dirs.run(str(store), layout.entries(layout.archived(course)), fix=True)
    assert mode(f) == 0o440
    assert mode(d) == 0o2550  # still traversable
    assert mode(store / "course/intro/files") == 0o2550
    assert mode(store / "exchange/intro/intro/inbound") == 0o2551
    assert check(store, layout, layout.archived(course)).problems == []


def test_deep_trees_do_not_hit_the_recursion_limit(store, layout, course):
    top = path = store / "course/intro/files"
    depth = 1200  # deeper than Python's recursion limit
    try:
        for _ in range(depth):
            path = path / "d"
            path.mkdir()
            os.chmod(path, 0o2770)
        os.chmod(path, 0o2777)
        result = check(store, layout, course)
        assert [p.kind for p in result.problems] == ["access"] * 2  # o+r, o+w
        assert result.scanned > depth
    finally:
        # rmtree (and so pytest's cleanup) recurses; remove bottom-up here.
        for _ in range(depth):
            if path == top:
                break
            if path.exists():
                path.rmdir()
            path = path.parent


def test_progress_is_printed_for_long_walks(store, layout, course):
    stream = io.StringIO()
    progress = course_dirs.Progress(enabled=True, stream=stream, delay=0)
    course_dirs.run(str(store), layout.entries(course), progress=progress)
    out = stream.getvalue()
    assert "\r" in out and "entries" in out and out.endswith("\n")
    quiet = io.StringIO()
    course_dirs.run(
        str(store),
        layout.entries(course),
        progress=course_dirs.Progress(stream=quiet),  # not a tty
    )
    assert quiet.getvalue() == ""


def test_missing_storage_root_names_the_fix(tmp_path, layout, course):
    with pytest.raises(course_dirs.StorageRootError, match="--storage-root"):
        course_dirs.run(str(tmp_path / "nope"), layout.entries(course))


@needs_root
def test_wrong_owner_and_group_are_reported_and_fixed(store, layout, course):
    files = store / "course/intro/files"
    os.chown(files, 1234, 4321)
    stray = files / "stray.ipynb"
    stray.write_text("{}")
    os.chmod(stray, 0o660)
    os.chown(stray, 1001234, 70000)  # an instructor's default group
    result = check(store, layout, course)
    assert sorted(lines(result)) == sorted(
        [
            "course/intro/files: group gid 4321, expected 70001",
            "course/intro/files: owner uid 1234, expected 0",
            "course/intro/files/stray.ipynb: group gid 70000, expected 70001",
        ]
    )
    fixed = course_dirs.run(str(store), layout.entries(course), fix=True)
    assert not fixed.unfixed
    st = os.lstat(files)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 70001, 0o2770)
    st = os.lstat(stray)
    # the file keeps its author; only the group changes
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1001234, 70001, 0o660)
    assert check(store, layout, course).problems == []


@needs_root
def test_create_sets_owner_and_group_as_root(tmp_path):
    root = tmp_path / "s"
    root.mkdir()
    course = build_course("ml", {"gid": 70002, "instructors": ["t"]})
    course_dirs.run(str(root), StorageLayout().entries(course), fix=True)
    st = os.lstat(root / "course/ml/files")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 70002, 0o2770)


def test_a_failed_repair_is_reported_not_raised(store, layout, course, monkeypatch):
    bad = store / "course/intro/files/x"
    bad.write_text("")
    os.chmod(bad, 0o644)

    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(course_dirs, "_chmod_nofollow", refuse)
    result = course_dirs.run(str(store), layout.entries(course), fix=True)
    assert [p.path for p in result.unfixed] == ["course/intro/files/x"]
    assert "could not repair: Operation not permitted" in lines(result)[-1]
