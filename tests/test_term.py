"""A course's term: the rules (aaltohub.term, access, the course mounts),
the course file edits, and ``aaltohub course new-term`` on a real storage
tree. ``end-term`` and the walk-through: test_course_end_term.py."""

# ruff: noqa: F811 (pytest fixtures imported from term_world and hub_process)
from __future__ import annotations

import datetime
import json
import os
import textwrap

import pytest
import yaml

from aaltohub.access import AccessDenied, RoleRules, Viewer, check, visible_roles
from aaltohub.catalog.edit_keys import EditError, edit_keys
from aaltohub.course import CourseError, build_course
from aaltohub.hooks import CourseMountsHook
from aaltohub.identity import Identity
from aaltohub.plan import SpawnContext, SpawnPlan
from aaltohub.storage.paths import StoragePaths
from aaltohub.term import Phase, phase
from term_world import GID, gradebook, run, world  # noqa: F401 (fixtures)

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
ENDS = datetime.datetime(2027, 6, 1, tzinfo=UTC)
RULES = RoleRules()
TEACHER, STUDENT = Viewer("teacher1"), Viewer("s1")


def course(**extra):
    data = {
        "name": "Intro",
        "gid": GID,
        "instructors": ["teacher1"],
        "students": ["s1"],
    }
    return build_course("intro", {**data, **extra})


# --- the rules ----------------------------------------------------------------------
def test_term_keys_are_validated_with_the_fix_in_the_message():
    c = course(term={"starts": "2027-01-08", "ends": datetime.date(2027, 5, 31)})
    assert c.term.ends == ENDS  # a date alone: the end of that day, UTC
    assert c.term.starts == datetime.datetime(2027, 1, 8, tzinfo=UTC)
    bad = {
        "term": {"ends": "soon"},
        "retention": {"course": 0},
    }
    with pytest.raises(CourseError) as e:
        course(**bad)
    assert "key 'term.ends' must be a date such as 2027-05-31" in str(e.value)
    assert "key 'retention.course' must be a whole number of days" in str(e.value)
    for term, message in [
        ({"ends": "2027-01-01", "starts": "2027-02-01"}, "'ends' must be after"),
        ({"instructors_until": "2027-01-01"}, "needs 'ends'"),
        (
            {"ends": "2027-02-01", "instructors_until": "2027-01-01"},
            "must not be before",
        ),
        ({"end": "2027-01-01"}, r"'term.end' is unknown \(did you mean 'ends'\?\)"),
        ({"end_term": {"access": "x", "rm": "y"}}, "written by 'aaltohub course"),
    ]:
        with pytest.raises(CourseError, match=message):
            course(term=term)
    with pytest.raises(CourseError, match=r"retention\.exchang"):
        course(retention={"exchang": 3})
    with pytest.raises(CourseError, match="from 1 to 3650"):
        course(retention={"exchange": True})


def test_phase_and_access_follow_the_term():
    c = course(term={"ends": ENDS, "instructors_until": ENDS + 30 * DAY})
    before, during, after = ENDS - DAY, ENDS + DAY, ENDS + 31 * DAY
    assert [phase(c, t) for t in (before, during, after)] == [
        Phase.OPEN,
        Phase.READ_ONLY,
        Phase.CLOSED,
    ]
    assert visible_roles(c, STUDENT, RULES, before) == ("student",)
    assert visible_roles(c, TEACHER, RULES, before) == ("student", "instructor")
    assert visible_roles(c, STUDENT, RULES, during) == ()
    assert visible_roles(c, TEACHER, RULES, during) == ("instructor",)
    assert visible_roles(c, Viewer("admin", admin=True), RULES, during) == (
        "instructor",
    )
    assert visible_roles(c, TEACHER, RULES, after) == ()
    with pytest.raises(AccessDenied, match="The term of Intro has ended"):
        check(c, STUDENT, "student", RULES, during)
    # Someone not on the course learns nothing about its term.
    with pytest.raises(AccessDenied, match="may not use this course environment"):
        check(c, Viewer("stranger"), "student", RULES, during)
    # archive without dates: closed, as before terms existed
    assert phase(course(archive=True)) is Phase.CLOSED
    assert (
        phase(
            course(
                archive=True, term={"ends": ENDS, "instructors_until": "2999-01-01"}
            ),
            during,
        )
        is Phase.READ_ONLY
    )


def mounts(c, role):
    ctx = SpawnContext(
        TEACHER, Identity("teacher1", 1000, 1000), StoragePaths(), c, role=role
    )
    plan = SpawnPlan()
    CourseMountsHook().apply(ctx, plan)
    return {m.purpose: m.read_only for m in plan.mounts}


def test_instructors_mounts_are_read_only_after_the_term():
    now = datetime.datetime.now(UTC)
    open_course = course(datadir=True, term={"ends": now + DAY})
    assert mounts(open_course, "instructor") == {
        "course-files": False,
        "course-data": False,
        "exchange": False,
    }
    ended = course(
        datadir=True, term={"ends": now - DAY, "instructors_until": now + DAY}
    )
    assert mounts(ended, "instructor") == {
        "course-files": True,
        "course-data": True,
        "exchange": True,
    }


def test_edit_keys_keeps_comments_and_refuses_what_it_cannot_edit():
    text = textwrap.dedent(
        """\
        # Intro, spring
        name: Intro   # shown on the spawn page
        students:
        - s1
        - s2
        # the teachers
        instructors: [t1]
        term:
          ends: 2026-05-31
        """
    )
    new = edit_keys(
        text, {"students": None, "term": {"ends": datetime.date(2027, 5, 31)}}
    )
    assert new == textwrap.dedent(
        """\
        # Intro, spring
        name: Intro   # shown on the spawn page
        # the teachers
        instructors: [t1]
        term:
          ends: 2027-05-31
        """
    )
    with pytest.raises(EditError, match="edit it by hand"):
        edit_keys("name: x\n? students\n: [a]\n", {"students": None})
    with pytest.raises(EditError, match="cannot parse"):
        edit_keys("name: [x\n", {"students": None})


# --- the commands on a real storage tree --------------------------------------------


# --- new-term on a real storage tree ---------------------------------------------
def test_new_term_copies_the_course_for_next_term(world, capsys):
    cat, store, common = world["cat"], world["store"], world["common"]
    argv = ["course", "new-term", "intro", "intro-2027", "--starts", "2027-01-07"]
    argv += ["--ends", "2027-05-30", "--name", "Intro 2027", *common]
    old = world["files"]
    os.mkfifo(old / "source/pipe")  # would hang a copy that opened it
    secret = cat.parent / "secret"  # outside the course
    secret.write_text("not course data")
    os.link(secret, old / "source/hardlink.ipynb")
    os.symlink("/etc", old / "source/etc")
    code, out, _ = run(capsys, *argv, "--without-student-work", "--dry-run")
    assert code == 0 and f"would write {cat}/intro-2027.yaml" in out
    assert not (cat / "intro-2027.yaml").exists()
    assert not (store / "course/intro-2027").exists()

    code, out, err = run(
        capsys, *argv, "--without-student-work", "--audit-log", cat.parent / "a.log"
    )
    assert code == 0, err
    text = (cat / "intro-2027.yaml").read_text()
    assert text.startswith("# Introduction to programming\n")
    data = yaml.safe_load(text)
    assert "students" not in data and data["name"] == "Intro 2027"
    assert data["term"] == {
        "starts": datetime.date(2027, 1, 7),
        "ends": datetime.date(2027, 5, 30),
    }
    assert data["retention"] == {"submissions": 150, "exchange": 90} and data[
        "instructors"
    ] == ["teacher1"]
    assert yaml.safe_load((cat / "intro-2027-users.yaml").read_text()) == {
        "instructors": ["teacher2"]
    }
    new = store / "course/intro-2027/files"
    assert (new / "nbgrader_config.py").read_text().startswith("c = get_config()")
    assert (new / "source/ps1/ps1.ipynb").exists()
    assert os.readlink(new / "source/etc") == "/etc"  # a link, not /etc's files
    for planted in ("source/pipe", "source/hardlink.ipynb"):
        assert f"not copied: {planted}" in out
        assert not os.path.lexists(new / planted)
    for work in ("submitted", "autograded", "feedback", "gradebook.db"):
        assert not (new / work).exists()
    assert (store / "exchange/intro-2027/intro-2027/inbound").is_dir()
    code, out, _ = run(capsys, "course", "check", "intro-2027", *common)
    assert code == 0, out
    log = [json.loads(x) for x in (cat.parent / "a.log").read_text().splitlines()]
    assert {r["action"] for r in log} == {
        "course.new-term.course-file",
        "course.new-term.files",
    }
    # Again: nothing changes, nothing is overwritten.
    before = text
    code, out, _ = run(capsys, *argv, "--without-student-work")
    assert code == 0 and "kept" in out and "copied 0 entries" in out
    assert (cat / "intro-2027.yaml").read_text() == before
    # NEW must be new and a slug
    code, _, err = run(capsys, "course", "new-term", "intro", "Bad/Slug", *common)
    assert code == 2 and "give a new slug" in err


def test_new_term_never_writes_through_a_directory_swapped_mid_copy(
    world, capsys, monkeypatch
):
    """The new course's instructors can write its files directory while
    root copies into it: a directory swapped for a link to outside, after
    it was entered or before, gets nothing written through it."""
    from aaltohub.storage import retention_store

    new = world["store"] / "course/intro-2027/files"
    outside = world["cat"].parent / "etc"
    (outside / "ps1").mkdir(parents=True)  # what a path-based copy writes into
    real_copy, swapped = retention_store._copy_file, []

    def copy_and_swap(name, srcfd, destfd, rel, copier):
        if rel == "release/ps1/ps1.ipynb" and not swapped:
            # release/ps1 is open already; source/ is not made yet
            os.rename(new / "release", new / "release.moved")
            os.symlink(outside, new / "release")
            os.symlink(outside, new / "source")
            swapped.append(rel)
        real_copy(name, srcfd, destfd, rel, copier)

    monkeypatch.setattr(retention_store, "_copy_file", copy_and_swap)
    argv = ["course", "new-term", "intro", "intro-2027", *world["common"]]
    code, _, err = run(capsys, *argv)
    assert swapped and code == 2
    assert "refusing source: source is a symbolic link" in err
    assert list(outside.rglob("*")) == [outside / "ps1"]  # nothing written outside
    # the copy went on into the directory it had opened, wherever it is now
    assert (new / "release.moved/ps1/ps1.ipynb").read_text() == "{}"


# --- the server-side check and the pod, through CourseSpawner (kmock-free:
# refusals and manifests need no Kubernetes API) -------------------------------
async def test_course_spawner_enforces_the_term(catalog_dir, users_file):
    from tornado import web

    from kube_helpers import base_config, make_spawner, spawn_manifest, to_dict

    now = datetime.datetime.now(UTC)
    intro = catalog_dir / "intro.yaml"
    intro.write_text(
        intro.read_text()
        + yaml.safe_dump({"term": {"ends": now - DAY, "instructors_until": now + DAY}})
    )
    config = base_config(catalog_dir, users_file)
    spawner = make_spawner(config, "student1")
    spawner.user_options = {"profile": "intro"}
    with pytest.raises(web.HTTPError) as info:
        await spawner.run_pre_spawn_hook()
    assert info.value.status_code == 403
    assert "The term of Introduction to Programming has ended" in str(
        info.value.jupyterhub_message
    )
    pod = to_dict(
        await spawn_manifest(make_spawner(config, "instructor1"), "intro-instructor")
    )
    read_only = {
        m["mountPath"]: m.get("readOnly", False)
        for m in pod["spec"]["containers"][0]["volumeMounts"]
    }
    assert read_only["/course"] and read_only["/coursedata"]
    assert read_only["/srv/nbgrader/exchange"]
