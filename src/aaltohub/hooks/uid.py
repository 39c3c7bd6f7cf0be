"""Run the server under the user's institutional uid and gid."""

from __future__ import annotations

from traitlets import Enum, Int, Unicode

from ..plan import SpawnContext, SpawnPlan
from .base import SpawnHook


class UIDHook(SpawnHook):
    """Set uid, gid and supplementary groups from the identity and course.

    In ``direct`` mode (the default) the container runs as the user's uid
    from the first instruction, with no root anywhere in the pod. In
    ``root-then-switch`` mode it starts as root and the docker-stacks start
    script switches to ``NB_UID``/``NB_GID`` (needed by images that create
    users or groups at start); deployers must opt in to that.
    """

    mode = Enum(
        ["direct", "root-then-switch"],
        default_value="direct",
        help="""How the server gets the user's uid: ``direct`` runs the
        container as that uid (no root); ``root-then-switch`` starts as root
        and lets the image's start script switch to NB_UID/NB_GID.""",
    ).tag(config=True)

    primary_gid = Int(
        None,
        allow_none=True,
        help="""Primary gid for every user instead of the directory's
        (Aalto used 70000, ``domain-users``). None: the identity's gid.""",
    ).tag(config=True)

    primary_group_name = Unicode(
        "",
        help="Group name for NB_GROUP in root-then-switch mode (optional).",
    ).tag(config=True)

    def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        ident = ctx.identity
        gid = self.primary_gid if self.primary_gid is not None else ident.gid
        course = ctx.course
        if ctx.as_instructor and course.gid is not None:
            # Course files are group-shared through the course group.
            plan.add_group(course.gid, ctx.course_group or None)
        if course is not None:
            extra = (
                course.extra_instructor_groups
                if ctx.as_instructor
                else course.extra_student_groups
            )
            for name, extra_gid in extra:
                plan.add_group(extra_gid, name)
        plan.env.update(NB_USER=ident.username, NB_UID=str(ident.uid), NB_GID=str(gid))
        if self.mode == "direct":
            plan.uid, plan.gid = ident.uid, gid
            return
        plan.start_as_root = True
        plan.uid, plan.gid = 0, 0
        if ctx.as_instructor and course.gid is not None:
            # The start script only keeps NB_GID, so make the course group
            # primary for instructors (the reference deployment's choice).
            plan.env["NB_GID"] = str(course.gid)
            if ctx.course_group:
                plan.env["NB_GROUP"] = ctx.course_group
        elif self.primary_group_name:
            plan.env["NB_GROUP"] = self.primary_group_name
        if plan.supplemental_gids:
            plan.env["NB_SUPPLEMENTARY_GROUPS"] = ",".join(
                str(g) for g in plan.supplemental_gids
            )
        if plan.create_groups:
            plan.env["NB_CREATE_GROUPS"] = ",".join(
                f"{n}:{g}" for n, g in plan.create_groups
            )
