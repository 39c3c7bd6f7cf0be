"""The per-user index (aaltohub.catalog.offers): what it offers must be
exactly what the one rule, access.visible_roles, gives when every course
is tested, for every kind of viewer, while it tests far fewer courses."""

from __future__ import annotations

import datetime
import random

import pytest

from aaltohub import access
from aaltohub.access import RoleRules, Viewer, visible_roles
from aaltohub.catalog import offers
from aaltohub.catalog.offers import CourseIndex
from aaltohub.course import build_course

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
USERS = [f"u{i}" for i in range(20)]
GROUPS = [f"g{i}" for i in range(6)]


def random_course(rng: random.Random, i: int):
    data: dict = {"name": f"Course {rng.randrange(30)}"}  # names repeat: order ties
    if rng.random() < 0.4:
        data["private"] = True
    if rng.random() < 0.1:
        data["archive"] = True
    if rng.random() < 0.5:
        data["gid"] = 50000 + i
    data["students"] = rng.sample(USERS, rng.randrange(4))
    data["instructors"] = rng.sample(USERS, rng.randrange(2))
    data["student_groups"] = rng.sample(GROUPS, rng.randrange(2))
    data["instructor_groups"] = rng.sample(GROUPS, rng.randrange(2))
    when = rng.random()
    if when < 0.15:  # ended, instructors still have it
        data["term"] = {"ends": NOW - DAY, "instructors_until": NOW + DAY}
    elif when < 0.25:  # ended for everyone
        data["term"] = {"ends": NOW - 2 * DAY, "instructors_until": NOW - DAY}
    elif when < 0.35:
        data["term"] = {"ends": NOW + DAY}
    return build_course(f"c{i:02d}", data)


def viewers(rng: random.Random) -> list[Viewer]:
    out = [Viewer(""), Viewer("nobody"), Viewer("u1", admin=True), Viewer("boss")]
    for user in USERS:
        groups = set(rng.sample(GROUPS, rng.randrange(3)))
        if rng.random() < 0.2:
            groups.add(f"jupyter-c{rng.randrange(60):02d}")  # a course group
        out.append(Viewer(user, groups=frozenset(groups)))
    return out


def every_course(index: CourseIndex, who: Viewer, rules: RoleRules):
    """The definition: test each course in display order."""
    by_order = sorted(index.courses.values(), key=lambda c: (c.name.lower(), c.slug))
    return [
        (course, roles)
        for course in by_order
        if (roles := visible_roles(course, who, rules, NOW))
    ]


def build_index(rng: random.Random, rules: RoleRules, n: int = 60) -> CourseIndex:
    courses: dict = {}
    index = CourseIndex(courses)
    for i in range(n):
        course = random_course(rng, i)
        courses[course.slug] = course
        index.add(course, rules)
    index.reorder()
    return index


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("cache_seconds", [0.0, 10.0])
def test_offers_are_what_the_rule_gives_for_every_course(seed, cache_seconds):
    rng = random.Random(seed)
    rules = RoleRules(default_instructors=frozenset({"boss"}))
    index = build_index(rng, rules)
    for who in viewers(rng):
        expected = every_course(index, who, rules)
        assert index.offered_to(who, rules, cache_seconds) == expected, who
        assert index.offered_to(who, rules, cache_seconds) == expected, who


def test_changed_and_removed_courses_are_seen_at_the_next_generation():
    rng = random.Random(7)
    rules = RoleRules()
    index = build_index(rng, rules)
    who = Viewer("u3", groups=frozenset({"g1"}))
    index.offered_to(who, rules, 10.0)
    # c00 becomes private with u3 on it; c01 goes away
    old = index.courses["c00"]
    index.remove(old, rules)
    index.courses["c00"] = build_course(
        "c00", {"name": "Renamed", "private": True, "students": ["u3"]}
    )
    index.add(index.courses["c00"], rules)
    index.remove(index.courses.pop("c01"), rules)
    index.reorder()
    got = index.offered_to(who, rules, 10.0)
    assert got == every_course(index, who, rules)
    assert "c00" in {c.slug for c, _ in got} and "c01" not in {c.slug for c, _ in got}


def test_a_user_costs_their_own_courses_not_the_catalog(monkeypatch):
    """The public part is computed once and shared; each further user is
    tested only on the courses that name them."""
    rng = random.Random(3)
    rules = RoleRules()
    index = build_index(rng, rules, n=60)
    calls = []
    real = access.visible_roles

    def counting(course, who, rules, now=None):
        calls.append(who.username)
        return real(course, who, rules, now)

    monkeypatch.setattr(offers, "visible_roles", counting)
    index.offered_to(Viewer("u1"), rules, 10.0)
    strangers = calls.count("")
    assert strangers == len(index.public)
    calls.clear()
    who = Viewer("u2", groups=frozenset({"g2"}))
    index.offered_to(who, rules, 10.0)
    related = set(index.by_user["u2"]) | set(index.by_group["g2"])
    assert sorted(calls) == ["u2"] * len(related)
