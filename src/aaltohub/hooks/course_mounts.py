"""Mount a course's files, data and nbgrader exchange."""

from __future__ import annotations

from traitlets import Dict, List, Unicode

from ..plan import SpawnContext, SpawnPlan
from .base import SpawnHook
from .paths import render_sub_path


class CourseMountsHook(SpawnHook):
    """Course storage, all on the one NFS volume.

    ====================  ==============================  =========================
    mount                 sub-path (default)              when
    ====================  ==============================  =========================
    course files          course/{coursedir_slug}/files   instructor mode, rw
    course data           course/{coursedir_slug}/data    datadir; rw for
                                                          instructors or with
                                                          datadir_readwrite
    exchange              exchange/{coursedir_slug}       gid or instructors;
                                                          ro under restrict_submit
                                                          for the non-enrolled
    ====================  ==============================  =========================
    """

    files_sub_path = Unicode(
        "course/{coursedir_slug}/files",
        help="Storage path of a course's instructor files.",
    ).tag(config=True)
    files_target = Unicode(
        "/course", help="Where instructors see the course files."
    ).tag(config=True)
    data_sub_path = Unicode(
        "course/{coursedir_slug}/data", help="Storage path of a course's data."
    ).tag(config=True)
    data_target = Unicode(
        "/coursedata", help="Where the course data appears (datadir courses)."
    ).tag(config=True)
    exchange_sub_path = Unicode(
        "exchange/{coursedir_slug}",
        help="Storage path of a course's nbgrader exchange.",
    ).tag(config=True)
    exchange_target = Unicode(
        "/srv/nbgrader/exchange",
        help="Where the exchange appears; nbgrader's Exchange.root.",
    ).tag(config=True)
    instructor_umask = Unicode(
        "0007",
        help="NB_UMASK in instructor mode, so course files stay group-shared.",
    ).tag(config=True)

    extra_mounts = List(
        Dict(),
        help="""Deployment-wide mounts for every server, e.g. shared data or
        software: ``[{"target": "/m/software", "sub_path": "software",
        "read_only": true}]``. Sub-paths may use {username} and
        {uid_last2digits}.""",
    ).tag(config=True)

    def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        for extra in self.extra_mounts:
            plan.add_mount(
                extra["target"],
                render_sub_path(extra["sub_path"], ctx),
                bool(extra.get("read_only", True)),
                purpose=extra.get("purpose", "extra"),
            )
        course = ctx.course
        if course is None:
            return
        plan.env["NB_COURSE"] = course.slug
        if ctx.as_instructor:
            plan.add_mount(
                self.files_target,
                render_sub_path(self.files_sub_path, ctx),
                False,
                purpose="course-files",
            )
            plan.env["NB_UMASK"] = self.instructor_umask
        elif course.student_umask:
            plan.env["NB_UMASK"] = course.student_umask
        if course.datadir:
            writable = ctx.as_instructor or course.datadir_readwrite
            plan.add_mount(
                self.data_target,
                render_sub_path(self.data_sub_path, ctx),
                not writable,
                purpose="course-data",
            )
            plan.env["COURSEDATA"] = self.data_target.rstrip("/") + "/"
        if course.has_instructor_mode:
            read_only = course.restrict_submit and not ctx.enrolled
            plan.add_mount(
                self.exchange_target,
                render_sub_path(self.exchange_sub_path, ctx),
                read_only,
                purpose="exchange",
            )
        if course.create_userdata:
            plan.env["CREATE_USERDATA"] = "true"
