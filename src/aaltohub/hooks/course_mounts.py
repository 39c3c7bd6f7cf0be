"""Mount a course's files, data and nbgrader exchange."""

from __future__ import annotations

from traitlets import Unicode

from ..plan import SpawnContext, SpawnPlan
from ..term import Phase, phase
from .base import SpawnHook


class CourseMountsHook(SpawnHook):
    """Course storage, all on the one storage volume, at the sub-paths and
    targets of ``c.StoragePaths``.

    ====================  ==============================  =========================
    mount                 sub-path (default)              when
    ====================  ==============================  =========================
    extra mounts          ``StoragePaths.extra_mounts``   every server
    course files          course/{coursedir_slug}/files   instructor mode, rw
    course data           course/{coursedir_slug}/data    datadir; rw for
                                                          instructors or with
                                                          datadir_readwrite
    exchange              exchange/{coursedir_slug}       gid or instructors;
                                                          ro under restrict_submit
                                                          for the non-enrolled
    ====================  ==============================  =========================

    "Enrolled" is :func:`aaltohub.access.enrolment`: the roster,
    ``student_groups``, instructors and instructor groups.
    After the course's term ends (:func:`aaltohub.term.phase`), the
    instructors who may still start it get every course mount read-only.
    """

    instructor_umask = Unicode(
        "0007",
        help="NB_UMASK in instructor mode, so course files stay group-shared.",
    ).tag(config=True)

    def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        paths = ctx.paths
        for extra in paths.extra_mounts:
            plan.add_mount(
                extra["target"],
                paths.extra_sub_path(extra, ctx.username, ctx.identity.uid),
                bool(extra.get("read_only", True)),
                purpose=extra.get("purpose", "extra"),
            )
        course = ctx.course
        if course is None:
            return
        plan.env["NB_COURSE"] = course.slug
        # After the term (aaltohub.term.phase) instructors may still start
        # the course, but everything of it is mounted read-only.
        ended = phase(course) is not Phase.OPEN
        if ctx.as_instructor:
            plan.add_mount(
                paths.files_target,
                paths.course_files(course),
                ended,
                purpose="course-files",
            )
            plan.env["NB_UMASK"] = self.instructor_umask
        elif course.student_umask:
            plan.env["NB_UMASK"] = course.student_umask
        if course.datadir:
            writable = (ctx.as_instructor or course.datadir_readwrite) and not ended
            plan.add_mount(
                paths.data_target,
                paths.course_data(course),
                not writable,
                purpose="course-data",
            )
            plan.env["COURSEDATA"] = paths.data_target.rstrip("/") + "/"
        if course.has_instructor_mode:
            read_only = ended or (course.restrict_submit and not ctx.enrolled)
            plan.add_mount(
                paths.exchange_target,
                paths.exchange(course),
                read_only,
                purpose="exchange",
            )
        if course.create_userdata:
            plan.env["CREATE_USERDATA"] = "true"
