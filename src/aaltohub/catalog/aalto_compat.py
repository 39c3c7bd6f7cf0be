"""Where a course file in Aalto's syntax behaves differently on aaltohub.

Aalto's course files load unchanged (``uid``, ``archived``, cull limits
and ``x_jupyter_enable_lab`` in ``kubespawner_override``, image aliases by
short or full name). A few of Aalto's behaviours are not kept, because they
were bugs or surprises; each is named here, per course, so ``aaltohub
validate`` can warn and ``aaltohub migrate aalto`` can report it. Pure: no
I/O.
"""

from __future__ import annotations

from collections.abc import Collection

from ..course import Course
from .images import ImageTable

TESTCOURSE = "testcourse"


def _image_notes(course: Course, images: ImageTable) -> list[str]:
    out = []
    for key in ("image", "image_instructor"):
        ref = getattr(course, key)
        if images.before_first(ref):
            out.append(
                f"{key} {ref[0]} {ref[1]} is older than the series' first image:"
                " Aalto's hub used the course default image, aaltohub uses the"
                f" series' oldest, {images.resolve(ref)}; write a later date or"
                " the image name to keep Aalto's choice"
            )
    return out


def _roster_notes(main: object, roster: object) -> list[str]:
    if not isinstance(main, dict) or not isinstance(roster, dict):
        return []
    both = sorted(k for k in ("students", "instructors") if k in main and k in roster)
    return [
        f"'{key}' is in both the course file and its -users.yaml: Aalto's hub"
        " kept only one of the two lists (whichever file it read last),"
        " aaltohub combines them"
        for key in both
    ]


def aalto_notes(
    course: Course,
    main: object = None,
    roster: object = None,
    images: ImageTable | None = None,
    *,
    default_instructors: Collection[str] = (),
    cull_only_lengthens: bool = False,
) -> list[str]:
    """Behaviour differences of one valid course, one sentence each.

    ``main`` and ``roster`` are the parsed files (to see which file set a
    key, and whether the cull limits came from Aalto's override keys).
    """
    notes = []
    if course.restrict_submit:
        notes.append(
            "restrict_submit: Aalto's hub compared a literal string, so the"
            " exchange was read-only for everyone; aaltohub makes it read-only"
            " only for people not on the course (kept: Aalto's was a bug)"
        )
    notes += _image_notes(course, images or ImageTable())
    notes += _roster_notes(main, roster)
    if course.slug == TESTCOURSE:
        notes.append(
            "testcourse: Aalto's hub made every instructor of every course an"
            " instructor here; aaltohub does not: list them in 'instructors' or"
            " 'instructor_groups'"
        )
    if default_instructors and course.gid is None:
        notes.append(
            "c.CourseCatalog.default_instructors apply to every course on"
            " aaltohub; Aalto's DEFAULT_INSTRUCTORS applied only to courses with"
            " a gid"
        )
    override = main.get("kubespawner_override") if isinstance(main, dict) else None
    cull_keys = ("cull_inactive_time", "cull_max_age")
    from_override = isinstance(override, dict) and any(k in override for k in cull_keys)
    if from_override and not cull_only_lengthens:
        notes.append(
            "cull limits: Aalto's culler took the larger of the hub default and"
            " this course's value; aaltohub uses the course's value, also when"
            " shorter, unless c.CourseCatalog.aalto_cull_only_lengthens is set"
        )
    return notes
