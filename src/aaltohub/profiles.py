"""Build the per-user list of profiles (general ones, then courses).

Course profile dicts are built once per course version and reused for
every user; callers must not mutate them (KubeSpawner deep-copies the list
before it applies overrides).
"""

from __future__ import annotations

import html

from .access import Viewer
from .catalog import CourseCatalog
from .course import ROLE_INSTRUCTOR, ROLE_STUDENT, Course


class ProfileBuilder:
    """Caches one profile dict per (course version, role)."""

    def __init__(self, catalog: CourseCatalog, instructor_label: str = "instructor"):
        self.catalog = catalog
        self.instructor_label = instructor_label
        self._cache: dict[tuple[str, str], tuple[Course, int, dict]] = {}

    def course_profile(self, course: Course, role: str) -> dict:
        key = (course.slug, role)
        hit = self._cache.get(key)
        # Images may change without the course changing: key on generation too.
        if hit and hit[0] is course and hit[1] == self.catalog.generation:
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
        self._cache[key] = (course, self.catalog.generation, profile)
        return profile

    def profiles_for(self, who: Viewer, general: list[dict]) -> list[dict]:
        """General profiles first, then each offered course and role."""
        offered = self.catalog.offered_to(who)
        courses = [
            self.course_profile(course, role)
            for course, roles in offered
            for role in roles
        ]
        out = [dict(p) for p in general] + courses
        defaults = [
            self.course_profile(course, ROLE_STUDENT)
            for course, roles in offered
            if course.default and ROLE_STUDENT in roles
        ]
        if len(offered) == 1 and not defaults:
            defaults = [courses[0]]
        if defaults:
            # A course default wins over a general one; copy, never mutate
            # the shared cached dict.
            out = [{**p, "default": False} if p.get("default") else p for p in out]
            first = defaults[0]
            i = next(i for i, p in enumerate(out) if p is first)
            out[i] = {**first, "default": True}
        return out
