"""Who may see and start which course, in which role.

This is the only place the rules live. :func:`enrolment` answers "what is
this person in this course" (roster, ``student_groups``, instructors,
instructor groups, hub-wide instructors); the profile list, the server-side
check on spawn, the course mounts and the nbgrader exchange, the CLI and
the tests all go through it. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .course import COURSE_GROUP_TEMPLATE, ROLE_INSTRUCTOR, ROLE_STUDENT, Course
from .term import Phase, phase


@dataclass(frozen=True)
class Viewer:
    """The facts about a user that access depends on."""

    username: str
    admin: bool = False
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RoleRules:
    """Deployment-wide inputs to the rules (from CourseCatalog config)."""

    default_instructors: frozenset[str] = frozenset()
    instructor_group_template: str = COURSE_GROUP_TEMPLATE

    def instructor_group(self, course: Course) -> str:
        return self.instructor_group_template.format(slug=course.slug)


class Enrolment(Enum):
    """What a person is in one course. Hub admins are not enrolled by
    being admins: they may start any course, but submit nothing."""

    INSTRUCTOR = "instructor"
    STUDENT = "student"
    NONE = "none"

    @property
    def enrolled(self) -> bool:
        return self is not Enrolment.NONE


class AccessDenied(Exception):
    """Refusal with a message meant for the user (HTTP 403)."""


def enrolment(course: Course, who: Viewer, rules: RoleRules) -> Enrolment:
    """The one answer to "is ``who`` on this course, and as what"."""
    if (
        who.username in course.instructors
        or who.username in rules.default_instructors
        or rules.instructor_group(course) in who.groups
        or not course.instructor_groups.isdisjoint(who.groups)
    ):
        return Enrolment.INSTRUCTOR
    if who.username in course.students or not course.student_groups.isdisjoint(
        who.groups
    ):
        return Enrolment.STUDENT
    return Enrolment.NONE


def visible_roles(
    course: Course, who: Viewer, rules: RoleRules, now=None
) -> tuple[str, ...]:
    """The roles in which ``who`` may start ``course`` (empty: not offered).

    The term (:func:`aaltohub.term.phase`) comes first: after it ends (or
    once archived) students have no access, and instructors only until
    ``term.instructors_until`` (their course mounts are then read-only,
    hooks.course_mounts)."""
    current = phase(course, now)
    if current is Phase.CLOSED:
        return ()
    status = enrolment(course, who, rules)
    instructor = who.admin or status is Enrolment.INSTRUCTOR
    if current is Phase.READ_ONLY:
        return (ROLE_INSTRUCTOR,) if instructor and course.has_instructor_mode else ()
    roles: list[str] = []
    if not course.private or instructor or status.enrolled:
        roles.append(ROLE_STUDENT)
    if instructor and course.has_instructor_mode:
        roles.append(ROLE_INSTRUCTOR)
    return tuple(roles)


def check(
    course: Course | None, who: Viewer, role: str, rules: RoleRules, now=None
) -> None:
    """Raise AccessDenied unless ``who`` may start ``course`` as ``role``.

    An unknown course and a course the user may not see get the same
    answer, so private course names do not leak.
    """
    roles = visible_roles(course, who, rules, now) if course is not None else ()
    if role in roles:
        return
    if course is not None and role == ROLE_INSTRUCTOR and ROLE_STUDENT in roles:
        raise AccessDenied(
            f"You ({who.username}) are not an instructor of {course.name}, so its"
            f" instructor environment is not available. Start '{course.slug}'"
            " instead, or ask the course's teachers to add you as an instructor."
        )
    if (
        course is not None
        and phase(course, now) is not Phase.OPEN
        and enrolment(course, who, rules).enrolled
    ):
        # Only the enrolled learn that it ended: they know the course exists.
        raise AccessDenied(
            f"The term of {course.name} has ended, so its environment is no"
            " longer available. Ask its instructors for a copy of your work."
        )
    raise AccessDenied(
        f"You ({who.username}) may not use this course environment. If you take"
        " this course, ask its instructors to add you to the course list; the"
        " courses you can start are listed on the spawn page."
    )


def manages(course: Course, who: Viewer, rules: RoleRules) -> bool:
    """Whether ``who`` may see ``course``'s management page (its roster,
    running servers and failures): its instructors and the hub's admins.
    The same "instructor" as in :func:`visible_roles`, whatever the term."""
    return who.admin or enrolment(course, who, rules) is Enrolment.INSTRUCTOR
