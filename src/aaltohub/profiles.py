"""What a user can choose: the per-user profile list, and what a chosen
slug means.

Three kinds of profile sit in one list: the hub's ``general_profiles``
(not courses, but planned: uid, home, git identity), the base spawner's own
profiles (KubeSpawner's ``profile_list``: plain, exactly as without
aaltohub), and the courses the user may start. Course profile dicts are
built once per course version and reused for every user; callers must not
mutate them (KubeSpawner deep-copies the list before it applies overrides).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

from .access import Viewer
from .catalog import CourseCatalog
from .course import ROLE_INSTRUCTOR, ROLE_STUDENT, Course, parse_profile_slug

#: What a profile slug may look like: course slugs and KubeSpawner's own
#: (slugified display names). Always a full match: "intro\n" is not "intro".
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")

#: Kinds of choice. A course gets the course plan; a general profile the
#: plan without a course; a plain profile (the base spawner's own) no plan.
COURSE, GENERAL, PLAIN = "course", "general", "plain"


@dataclass(frozen=True)
class Choice:
    """What a chosen profile slug means (see :func:`resolve`)."""

    slug: str | None
    kind: str
    course: Course | None = None
    role: str = ROLE_STUDENT

    @property
    def planned(self) -> bool:
        return self.kind != PLAIN


def resolve(
    slug: str | None,
    general: list[dict],
    own: list[dict],
    catalog: CourseCatalog,
) -> Choice:
    """Map a slug to a Choice. The deployer's profiles are looked up before
    the courses, so a course file (written by a less trusted editor) can
    never take over a deployer's slug; an unknown slug is a course that does
    not exist, which the access check refuses."""
    if not slug or any(p.get("slug") == slug for p in general):
        return Choice(slug, GENERAL)
    if any(p.get("slug") == slug for p in own):
        return Choice(slug, PLAIN)
    course_slug, role = parse_profile_slug(slug)
    return Choice(slug, COURSE, catalog.get(course_slug), role)


def declared_options(profile: dict | None) -> set[str]:
    """The ``user_options`` keys a spawn of ``profile`` may carry: the
    profile, and each of its ``profile_options`` (KubeSpawner's form sends
    ``<name>`` or ``<name>--unlisted-choice``)."""
    names = {"profile"}
    for name in (profile or {}).get("profile_options", {}):
        names |= {name, f"{name}--unlisted-choice"}
    return names


def options_problem(options: dict, declared: set[str], limit: int) -> str | None:
    """What is wrong with ``user_options``, in words; None if nothing."""
    try:
        size = len(json.dumps(options))
    except (TypeError, ValueError):
        return "the options are not plain JSON data"
    if size > limit:
        return f"the options are {size} bytes, more than the {limit} allowed"
    unknown = sorted(str(k) for k in set(options) - declared)
    if unknown:
        return "unknown option(s) " + ", ".join(repr(k[:40]) for k in unknown[:5])
    return None


class ProfileBuilder:
    """Caches one profile dict per (course version, role)."""

    def __init__(self, catalog: CourseCatalog, instructor_label: str = "instructor"):
        self.catalog = catalog
        self.instructor_label = instructor_label
        self._cache: dict[tuple[str, str], tuple[Course, int, dict]] = {}

    def course_profile(
        self, course: Course, role: str, generation: int | None = None
    ) -> dict:
        """The profile of ``course`` in ``role``, built once per course
        version. ``generation``: the catalog's, if the caller has read it."""
        if generation is None:
            generation = self.catalog.generation
        key = (course.slug, role)
        hit = self._cache.get(key)
        # Images may change without the course changing: key on generation too.
        if hit and hit[0] is course and hit[1] == generation:
            return hit[2]
        name = html.escape(course.name)
        notes = [html.escape(course.slug)]
        if role == ROLE_INSTRUCTOR:
            name += f" ({html.escape(self.instructor_label)})"
        elif course.private:
            notes.append("private")
        override = {**course.kubespawner_override}
        image = self.catalog.image_for(course, role)
        if image:
            override["image"] = image
        profile = {
            "slug": course.profile_slug(role),
            "display_name": name,
            "description": html.escape(course.description) or " · ".join(notes),
            "kubespawner_override": override,
        }
        self._cache[key] = (course, generation, profile)
        return profile

    def profiles_for(self, who: Viewer, general: list[dict]) -> list[dict]:
        """General profiles first, then each offered course and role."""
        offered = self.catalog.offered_to(who)
        generation = self.catalog.generation  # once, not per course
        courses = [
            self.course_profile(course, role, generation)
            for course, roles in offered
            for role in roles
        ]
        out = [dict(p) for p in general] + courses
        defaults = [
            self.course_profile(course, ROLE_STUDENT, generation)
            for course, roles in offered
            if course.default and ROLE_STUDENT in roles
        ]
        if (
            len(offered) == 1
            and not defaults
            and not any(p.get("default") for p in general)
        ):
            defaults = [courses[0]]  # one course and no explicit default
        if defaults:
            # A course default wins over a general one; copy, never mutate
            # the shared cached dict.
            out = [{**p, "default": False} if p.get("default") else p for p in out]
            first = defaults[0]
            i = next(i for i, p in enumerate(out) if p is first)
            out[i] = {**first, "default": True}
        return out
