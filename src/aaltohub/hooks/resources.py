"""Per-role CPU and memory, and the idle-cull limits of a course."""

from __future__ import annotations

from dataclasses import fields

from traitlets import Dict, Int

from ..course import ROLE_INSTRUCTOR, Resources
from ..plan import SpawnContext, SpawnPlan
from .base import SpawnHook

_KEYS = [f.name for f in fields(Resources)]


class ResourcesHook(SpawnHook):
    """Start from the spawner's configured resources (so z2jh's
    ``singleuser.cpu`` / ``memory`` still apply), then the hub-wide
    instructor defaults, then the course's own ``resources`` for the role.
    Also sets the cull limits and tells the server about them."""

    instructor_resources = Dict(
        {"mem_guarantee": "1G"},
        help="""Resources for every instructor-mode server, on top of the
        spawner defaults, before a course's own values. Keys: cpu_limit,
        cpu_guarantee, mem_limit, mem_guarantee.""",
    ).tag(config=True)

    cull_inactive_timeout = Int(
        3600,
        help="Seconds of inactivity before a server is culled (course may override).",
    ).tag(config=True)

    cull_max_age = Int(
        8 * 3600,
        help="Maximum server age in seconds before culling (course may override).",
    ).tag(config=True)

    def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        values = {k: ctx.defaults.get(k) for k in _KEYS}
        if ctx.as_instructor:
            values.update(
                {k: v for k, v in self.instructor_resources.items() if k in _KEYS}
            )
        course = ctx.course
        if course is not None and ctx.role in course.resources:
            spec = course.resources[ctx.role]
            values.update(
                {k: getattr(spec, k) for k in _KEYS if getattr(spec, k) is not None}
            )
        plan.resources = Resources(**values)

        timeout, max_age = self.cull_inactive_timeout, self.cull_max_age
        if course is not None:
            timeout, max_age = course.cull.effective(timeout, max_age)
        plan.cull_inactive_timeout, plan.cull_max_age = timeout, max_age
        # The server shows users how long they have left (reference names).
        plan.env["JUPYTERHUB_CULL_TIMEOUT"] = str(timeout)
        plan.env["JUPYTERHUB_CULL_MAX_AGE"] = str(max_age)
        plan.labels["aaltohub/role"] = (
            ROLE_INSTRUCTOR if ctx.as_instructor else "student"
        )
