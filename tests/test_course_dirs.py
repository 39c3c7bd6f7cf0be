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
    assert mode(store / "exchange/intro/intro/inbound") == 0o3773  # sticky
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
    assert mode(store / "exchange/intro/intro/inbound") == 0o3551
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

    monkeypatch.setattr(course_dirs, "change_inode", refuse)
    result = course_dirs.run(str(store), layout.entries(course), fix=True)
    assert [p.path for p in result.unfixed] == ["course/intro/files/x"]
    assert "could not repair: Operation not permitted" in lines(result)[-1]


def test_fix_adds_the_sticky_bit_to_an_existing_inbound(store, layout, course):
    inbound = store / "exchange/intro/intro/inbound"
    os.chmod(inbound, 0o2773)  # as laid out before, and as nbgrader makes it
    assert lines(check(store, layout, course)) == [
        "exchange/intro/intro/inbound: mode 2773, expected 3773"
    ]
    result = course_dirs.run(str(store), layout.entries(course), fix=True)
    assert result.actions == ["chmod 2773 -> 3773 exchange/intro/intro/inbound"]
    assert mode(inbound) == 0o3773


# --- hard links: an inode with other names is never changed ------------------------
@pytest.fixture
def outside(tmp_path):
    """A file outside the course tree (another course's, a system file)."""
    other = tmp_path / "other-course"
    other.mkdir()
    secret = other / "solutions.ipynb"
    secret.write_text("{}")
    os.chmod(secret, 0o644)
    if ROOT:
        os.chown(secret, 1001234, 4242)
    return secret


def test_fix_never_changes_a_hard_linked_file(store, layout, course, outside):
    link = store / "course/intro/files/solutions.ipynb"
    os.link(outside, link)  # the instructor's link from outside the tree
    before = os.lstat(outside)

    fixed = course_dirs.run(str(store), layout.entries(course), fix=True)
    after = os.lstat(outside)
    assert (after.st_mode, after.st_uid, after.st_gid, after.st_ctime_ns) == (
        before.st_mode,
        before.st_uid,
        before.st_gid,
        before.st_ctime_ns,
    )
    assert not any("solutions" in a for a in fixed.actions), fixed.actions
    report = (
        "course/intro/files/solutions.ipynb: has 2 hard links, so 'aaltohub course"
        " fix' leaves it alone: another link may be outside the course, and"
        " changing the file would change it there too. Find the links with 'find"
        f" {store} -xdev -inum {before.st_ino}', replace the one in the course with"
        " a copy (or remove it), then run 'aaltohub course fix'"
    )
    assert report in [str(p) for p in fixed.unfixed]

    found = check(store, layout, course)  # check names it too, with its problems
    assert report in lines(found)
    assert "course/intro/files/solutions.ipynb: world-readable (mode 0644); course" in (
        "\n".join(lines(found))
    )
    assert not any(p.fixable for p in found.problems)
    dry = course_dirs.run(str(store), layout.entries(course), fix=True, dry_run=True)
    assert dry.actions == [] and report in [str(p) for p in dry.unfixed]


def test_a_file_swapped_for_a_hard_link_during_the_walk_is_not_changed(
    store, layout, course, outside, monkeypatch
):
    """The walk saw a lone file; before fix changes it, someone replaces it
    with a hard link to a file outside. The change goes to the inode that
    was checked or nowhere."""
    victim = store / "course/intro/files/notes.ipynb"
    victim.write_text("{}")
    os.chmod(victim, 0o644)
    real_scandir = os.scandir

    def scandir_then_swap(fd):
        entries = list(real_scandir(fd))
        for e in entries:
            e.stat(follow_symlinks=False)  # what the walk sees: one link
        if any(e.name == "notes.ipynb" for e in entries):
            os.unlink(victim)
            os.link(outside, victim)
        return iter(entries)

    monkeypatch.setattr(course_dirs.os, "scandir", scandir_then_swap)
    before = os.lstat(outside)
    result = course_dirs.run(str(store), layout.entries(course), fix=True)
    monkeypatch.undo()
    after = os.lstat(outside)
    assert (after.st_mode, after.st_gid) == (before.st_mode, before.st_gid)
    assert "course/intro/files/notes.ipynb: could not repair: it was replaced" in (
        "\n".join(lines(result))
    )


# --- nbgrader submissions ------------------------------------------------------------
def submit(inbound, name, uid):
    path = inbound / name
    path.mkdir()
    os.chmod(path, 0o777)  # as nbgrader submit leaves it
    os.chown(path, uid, 70000)
    return path


@needs_root
def test_check_names_a_submission_made_by_another_student(store, layout, course):
    inbound = store / "exchange/intro/intro/inbound"
    submit(inbound, "student1+ps1+2024-01-01 10:00:00 UTC+aa", 1001234)
    submit(inbound, "student1+ps1+2024-01-02 10:00:00 UTC+bb", 1001235)  # planted
    submit(inbound, "student2+ps1+2024-01-01 11:00:00 UTC+cc", 1001235)
    submit(inbound, "student3+ps1+2024-01-01 11:00:00 UTC+dd", 1001236)
    known = {"student1": 1001234, "student2": 1001235}.get

    def run(**kw):
        return course_dirs.run(str(store), layout.entries(course), **kw)

    assert run().problems == []  # only check and fix look at submissions
    planted = "exchange/intro/intro/inbound/student1+ps1+2024-01-02 10:00:00 UTC+bb"
    with_uids = run(submissions=True, student_uid=known)
    assert lines(with_uids) == [
        f"{planted}: claims to be student1's (uid 1001234) but is owned by uid"
        " 1001235; nbgrader collect would take it as that student's. Look at it"
        " ('ls -lan'), remove it as root if the student did not make it (inbound"
        " is sticky), then run 'aaltohub course check'",
        "exchange/intro/intro/inbound/student3+ps1+2024-01-01 11:00:00 UTC+dd:"
        " claims to be student3's but no uid is known for student3, so its owner"
        " cannot be verified; nbgrader collect would take it as that student's."
        " Look at it ('ls -lan'), remove it as root if the student did not make it"
        " (inbound is sticky), then run 'aaltohub course check'",
    ]
    assert not any(p.fixable for p in with_uids.problems)
    # without a uid source: every submission of the disputed name, and the
    # other names of the uid that planted one, are reported
    without = {p.path.rsplit("/", 1)[1] for p in run(submissions=True).problems}
    assert without == {
        "student1+ps1+2024-01-01 10:00:00 UTC+aa",
        "student1+ps1+2024-01-02 10:00:00 UTC+bb",
        "student2+ps1+2024-01-01 11:00:00 UTC+cc",
    }
    fixed = run(fix=True, submissions=True, student_uid=known)
    assert fixed.actions == [] and len(fixed.unfixed) == 2
