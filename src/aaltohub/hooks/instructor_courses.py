"""Aalto's extra course mounts: an instructor's other courses (opt-in).

Aalto's hub (``MOUNT_EXTRA_COURSES``) gave an instructor, in a general
server or in instructor mode, every other course they teach that has a
``gid``: the course's group as a supplementary group, and its base
directory mounted at ``/m/jhnas/jupyter/course/<name>/``, read-only when
the course file says ``archived: true``. Not in student mode. Off by
default; add it to ``c.CourseSpawner.hooks`` to enable.

One deliberate change: the mount follows the course's ``coursedir_slug``
(where its files really are), where Aalto's used the slug.
"""

from __future__ import annotations

import posixpath

from traitlets import Unicode

from ..access import Enrolment, enrolment
from ..catalog import CourseCatalog
from ..plan import SpawnContext, SpawnPlan
from ..shared import shared
from .base import SpawnHook


class InstructorCoursesHook(SpawnHook):
    """Mount the other courses a user teaches (read-only when archived)."""

    target_template = Unicode(
        "/m/jhnas/jupyter/course/{directory}",
        help="""Where another course's base directory appears in the server;
        ``{directory}`` is its directory name (coursedir_slug). Aalto's
        path by default, so notebooks that refer to it keep working.""",
    ).tag(config=True)

    group_template = Unicode(
        "jupyter-{slug}",
        help="Name of the supplementary group created for another course's gid.",
    ).tag(config=True)

    def _catalog(self, ctx: SpawnContext) -> CourseCatalog:
        provided = ctx.providers.get("catalog")
        if provided is not None:
            return provided
        # the hub's one catalog (the spawner's), not a new one
        return shared(
            CourseCatalog, self.config, lambda: CourseCatalog(config=self.config)
        )

    def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        if ctx.course is not None and not ctx.as_instructor:
            return  # Aalto: not when testing a course in student mode
        catalog = self._catalog(ctx)
        current = ctx.course.slug if ctx.course is not None else None
        for slug, course in sorted(catalog.courses.items()):
            if slug == current or course.gid is None:
                continue
            if enrolment(course, ctx.viewer, catalog.rules) is not Enrolment.INSTRUCTOR:
                continue
            plan.add_group(course.gid, self.group_template.format(slug=slug))
            base = posixpath.dirname(ctx.paths.course_files(course))
            plan.add_mount(
                self.target_template.format(directory=course.directory),
                base,
                course.archived,
                purpose=f"instructor-course:{slug}",
            )
