"""The access rules: one function decides, every caller uses it."""

from __future__ import annotations

import pytest

from aaltohub.access import (
    AccessDenied,
    Enrolment,
    RoleRules,
    Viewer,
    check,
    enrolment,
    visible_roles,
)
from aaltohub.course import build_course

RULES = RoleRules(default_instructors=frozenset({"boss"}))
PUBLIC = build_course("pub", {"gid": 1, "instructors": ["teach"]})
PRIVATE = build_course(
    "priv", {"private": True, "gid": 2, "students": ["stud"], "instructors": ["teach"]}
)
ARCHIVED = build_course("arch", {"archive": True, "gid": 3, "instructors": ["teach"]})
NO_STORAGE = build_course("plain", {})
GROUPED = build_course(
    "grp", {"private": True, "student_groups": ["cs-101"], "instructor_groups": ["ta"]}
)


@pytest.mark.parametrize(
    "course,who,roles",
    [
        (PUBLIC, Viewer("anyone"), ("student",)),
        (PUBLIC, Viewer("teach"), ("student", "instructor")),
        (PUBLIC, Viewer("boss"), ("student", "instructor")),
        (
            PUBLIC,
            Viewer("x", groups=frozenset({"jupyter-pub"})),
            ("student", "instructor"),
        ),
        (PRIVATE, Viewer("anyone"), ()),
        (PRIVATE, Viewer("stud"), ("student",)),
        (PRIVATE, Viewer("admin", admin=True), ("student", "instructor")),
        (ARCHIVED, Viewer("teach"), ()),
        (ARCHIVED, Viewer("admin", admin=True), ()),
        (NO_STORAGE, Viewer("admin", admin=True), ("student",)),
        (GROUPED, Viewer("x", groups=frozenset({"cs-101"})), ("student",)),
        (GROUPED, Viewer("x", groups=frozenset({"ta"})), ("student",)),
        (GROUPED, Viewer("x"), ()),
    ],
)
def test_visible_roles(course, who, roles):
    assert visible_roles(course, who, RULES) == roles


def test_instructor_group_without_storage_gets_no_instructor_variant():
    # grp has neither gid nor listed instructors: the reference rule says no
    # instructor mode, even for members of its instructor group.
    assert "instructor" not in visible_roles(
        GROUPED, Viewer("x", groups=frozenset({"ta"})), RULES
    )


def test_check_messages_name_user_and_fix():
    with pytest.raises(AccessDenied, match=r"You \(anyone\) may not use"):
        check(PRIVATE, Viewer("anyone"), "student", RULES)
    with pytest.raises(AccessDenied, match="not an instructor of"):
        check(PUBLIC, Viewer("anyone"), "instructor", RULES)
    check(PUBLIC, Viewer("teach"), "instructor", RULES)  # allowed: no raise


def test_unknown_and_private_courses_get_the_same_answer():
    with pytest.raises(AccessDenied) as unknown:
        check(None, Viewer("anyone"), "student", RULES)
    with pytest.raises(AccessDenied) as private:
        check(PRIVATE, Viewer("anyone"), "student", RULES)
    assert str(unknown.value) == str(private.value)  # no leak of private names


@pytest.mark.parametrize(
    "course,who,expected",
    [
        (PRIVATE, Viewer("stud"), Enrolment.STUDENT),  # roster
        (GROUPED, Viewer("x", groups=frozenset({"cs-101"})), Enrolment.STUDENT),
        (GROUPED, Viewer("x", groups=frozenset({"ta"})), Enrolment.INSTRUCTOR),
        (PUBLIC, Viewer("teach"), Enrolment.INSTRUCTOR),  # listed instructor
        (PUBLIC, Viewer("boss"), Enrolment.INSTRUCTOR),  # hub-wide instructor
        (PUBLIC, Viewer("x", groups=frozenset({"jupyter-pub"})), Enrolment.INSTRUCTOR),
        (PUBLIC, Viewer("anyone"), Enrolment.NONE),  # public, but not enrolled
        (PRIVATE, Viewer("admin", admin=True), Enrolment.NONE),  # admins see all
    ],
)
def test_enrolment_is_one_answer_for_every_route(course, who, expected):
    assert enrolment(course, who, RULES) is expected
    assert enrolment(course, who, RULES).enrolled is (expected is not Enrolment.NONE)
