"""The expected storage tree of a course: paths, modes, owners and rules."""

from __future__ import annotations

import os
import stat

import pytest
from traitlets.config import Config

from aaltohub.course import build_course
from aaltohub.storage.layout import (
    NBGRADER_COURSE_MODE,
    NBGRADER_FEEDBACK_MODE,
    NBGRADER_INBOUND_MODE,
    NBGRADER_OUTBOUND_MODE,
    LayoutError,
    StorageLayout,
)


def course(slug="intro", **data):
    return build_course(slug, data)


def by_path(entries):
    return {e.path: e for e in entries}


def test_full_course_layout():
    c = course(gid=70001, instructors=["t1"], datadir=True, coursedir_slug="intro-2024")
    entries = StorageLayout().entries(c)
    got = {e.path: (e.mode, e.uid, e.gid) for e in entries}
    assert got == {
        "course": (None, None, None),
        "exchange": (None, None, None),
        "course/intro-2024": (0o755, 0, 70001),
        "course/intro-2024/files": (0o2770, 0, 70001),
        "course/intro-2024/data": (0o2775, 0, 70001),
        "exchange/intro-2024": (0o2775, 0, 70001),
        # nbgrader's course_id is the slug, inside the course's exchange root
        "exchange/intro-2024/intro": (0o2775, 0, 70001),
        "exchange/intro-2024/intro/outbound": (0o2775, 0, 70001),
        # nbgrader's 2773 plus the sticky bit: nobody replaces another's
        "exchange/intro-2024/intro/inbound": (0o3773, 0, 70001),
        "exchange/intro-2024/intro/feedback": (0o2771, 0, 70001),
    }
    # parents come before children, so a walk can create them in order
    paths = [e.path for e in entries]
    for i, p in enumerate(paths):
        assert all(not p.startswith(q + "/") for q in paths[i + 1 :])
    shared = by_path(entries)
    assert shared["course"].forbid == 0o022  # nobody but the owner may rename
    files_rule = shared["course/intro-2024/files"].tree
    assert files_rule.forbid == 0o007 and files_rule.gid == 70001
    assert files_rule.dir_require == 0o2000
    assert shared["course/intro-2024/data"].tree.forbid == 0o002
    # submissions are 0777 by nbgrader's design: inbound's contents not walked
    assert shared["exchange/intro-2024/intro/inbound"].tree is None


def test_course_uid_and_modes_are_configurable():
    cfg = Config()
    cfg.StorageLayout.course_uid = 990
    cfg.StorageLayout.files_mode = 0o2750
    layout = StorageLayout(config=cfg)
    e = by_path(layout.entries(course(gid=5, instructors=["t"])))
    assert e["course/intro/files"].mode == 0o2750
    assert {x.uid for x in e.values() if x.mode is not None} == {990}


def test_a_course_uid_owns_that_course_only():
    # Aalto's managecourse.py chowned a course's directories to its 'uid'
    cfg = Config()
    cfg.StorageLayout.course_uid = 990
    layout = StorageLayout(config=cfg)
    own = by_path(layout.entries(course(gid=5, uid=1000010, instructors=["t"])))
    assert {x.uid for x in own.values() if x.mode is not None} == {1000010}
    other = by_path(layout.entries(course("other", gid=6, instructors=["t"])))
    assert {x.uid for x in other.values() if x.mode is not None} == {990}


def test_templates_come_from_storage_paths():
    cfg = Config()
    cfg.StoragePaths.files_sub_path = "courses/{coursedir_slug}/instructors"
    cfg.StoragePaths.exchange_sub_path = "nbx/{course}"
    e = by_path(StorageLayout(config=cfg).entries(course(gid=5, instructors=["t"])))
    assert "courses/intro/instructors" in e
    assert e["courses/intro"].purpose == "course-base"
    assert "nbx/intro/intro/inbound" in e


def test_template_without_a_course_level_has_no_course_base():
    cfg = Config()
    cfg.StoragePaths.files_sub_path = "coursefiles/{coursedir_slug}"
    e = by_path(StorageLayout(config=cfg).entries(course(gid=5, instructors=["t"])))
    # the shared parent must not become the course's (group-owned) base
    assert e["coursefiles"].purpose == "parent" and e["coursefiles"].gid is None


def test_courses_without_storage_and_without_gid():
    layout = StorageLayout()
    assert layout.entries(course(name="Public")) == []
    with pytest.raises(LayoutError, match=r"add 'gid: <number>' to intro.yaml"):
        layout.entries(course(instructors=["t1"]))
    # datadir without a group: admin-maintained data, no group write
    e = by_path(layout.entries(course(datadir=True)))
    assert e["course/intro/data"].mode == 0o755 and e["course/intro/data"].gid == 0
    assert "exchange/intro" not in e


def test_datadir_readwrite_is_sticky_and_writable():
    e = by_path(
        StorageLayout().entries(course(gid=7, datadir=True, datadir_readwrite=True))
    )
    assert e["course/intro/data"].mode == 0o3777
    assert e["course/intro/data"].tree is None


def test_archived_course_is_read_only_everywhere():
    entries = StorageLayout().entries(
        course(gid=7, instructors=["t"], datadir=True, archive=True)
    )
    for e in entries:
        if e.mode is not None:
            assert e.mode & 0o222 == 0, e
            assert e.mode & 0o111, "directories must stay traversable"
        if e.tree is not None:
            assert e.tree.forbid & 0o222 == 0o222
    e = by_path(entries)
    assert e["exchange/intro/intro/inbound"].tree.forbid == 0o222


def test_exchange_modes_match_what_nbgrader_creates(tmp_path):
    """Let nbgrader itself create a group-shared exchange and compare."""
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default.release_assignment import (
        ExchangeReleaseAssignment,
    )
    from nbgrader.exchange.default.release_feedback import ExchangeReleaseFeedback

    coursedir = CourseDirectory(course_id="intro", groupshared=True)
    root = str(tmp_path)
    release = ExchangeReleaseAssignment(coursedir=coursedir, root=root)
    release.init_dest()
    feedback = ExchangeReleaseFeedback(coursedir=coursedir, root=root)
    feedback.init_dest()

    def mode(*parts):
        return stat.S_IMODE(os.stat(os.path.join(root, "intro", *parts)).st_mode)

    assert mode() == NBGRADER_COURSE_MODE
    assert mode("outbound") == NBGRADER_OUTBOUND_MODE
    # ours adds only the sticky bit to inbound
    assert mode("inbound") | stat.S_ISVTX == NBGRADER_INBOUND_MODE
    assert mode("feedback") == NBGRADER_FEEDBACK_MODE


def test_nbgrader_keeps_the_sticky_inbound(tmp_path):
    """Releasing into an existing exchange leaves our inbound mode alone."""
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default.release_assignment import (
        ExchangeReleaseAssignment,
    )

    inbound = tmp_path / "intro" / "inbound"
    inbound.mkdir(parents=True)
    os.chmod(inbound, NBGRADER_INBOUND_MODE)
    coursedir = CourseDirectory(course_id="intro", groupshared=True)
    ExchangeReleaseAssignment(coursedir=coursedir, root=str(tmp_path)).init_dest()
    assert stat.S_IMODE(inbound.stat().st_mode) == 0o3773
