"""The expected storage tree of a course, as data.

``StorageLayout.entries(course)`` is a pure function: from a Course and the
layout settings it returns every directory the course needs, with the mode,
owner and group it must have, and the rules for what may live inside it.
``course_dirs`` creates, checks and repairs storage from that list; nothing
else in the project decides course modes.

Paths come from :class:`~aaltohub.storage.paths.StoragePaths`, the same
object the spawn hooks use, so what the CLI creates is what the servers
mount::

    course/<dir>/                 0755  course uid : course gid
    course/<dir>/files            2770  (instructors only)
    course/<dir>/data             2775  (datadir; 3777 with datadir_readwrite)
    exchange/<dir>/               2775
    exchange/<dir>/<slug>/        2775  nbgrader's course directory
    exchange/<dir>/<slug>/outbound 2775 released assignments, readable
    exchange/<dir>/<slug>/inbound  3773 students write, cannot list, sticky
    exchange/<dir>/<slug>/feedback 2771 students reach their own, cannot list

``<dir>`` is the course's ``coursedir_slug`` (default: its slug) and
``<slug>`` is nbgrader's course_id (``Exchange.path_includes_course``).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace

from traitlets import Instance, Int, default
from traitlets.config import Configurable

from ..course import Course
from ..shared import shared_instance
from .paths import StoragePaths

# nbgrader's own modes for a group-shared exchange (CourseDirectory.groupshared,
# which NbgraderHook sets), from nbgrader/exchange/default/release_*.py:
# the course directory and outbound 0755 + setgid + g+w; inbound 0733 + setgid
# + g+r; feedback 0711 + setgid + g+rw.
NBGRADER_COURSE_MODE = 0o2775
NBGRADER_OUTBOUND_MODE = 0o2775
# Inbound adds the sticky bit to nbgrader's mode: everyone who may submit can
# write there, and without it any of them could rename or remove another
# student's submission (or put their own in its place). Instructors still
# list and read (group r-x) and nbgrader's collect only copies; removing a
# submission now takes its owner or root. nbgrader leaves the mode of an
# existing inbound alone when groupshared, so the bit stays.
NBGRADER_INBOUND_MODE = 0o3773
NBGRADER_FEEDBACK_MODE = 0o2771

WRITE_BITS = 0o222
OTHER_BITS = 0o007
OTHER_WRITE = 0o002


class LayoutError(ValueError):
    """The course cannot be laid out; str() names the course and the fix."""


@dataclass(frozen=True)
class TreeRule:
    """What every entry *inside* an expected directory must satisfy."""

    #: Permission bits no entry may have (e.g. 0o007: nothing for others).
    forbid: int = 0
    #: Bits every sub-directory must have (setgid keeps the course group).
    dir_require: int = 0
    #: Group every entry must have; None: any group.
    gid: int | None = None
    #: Why, for messages: "course files must not be readable by others".
    why: str = ""


@dataclass(frozen=True)
class Entry:
    """One directory the course needs."""

    #: Path relative to the storage root, with '/' separators.
    path: str
    #: Exact permission bits including setgid/sticky; None: not enforced.
    mode: int | None
    uid: int | None
    gid: int | None
    purpose: str
    #: Bits the entry itself must not have (checked when ``mode`` is None).
    forbid: int = 0
    #: Mode, uid and gid to create it with when ``mode`` etc. are None.
    create_mode: int = 0o755
    #: Rules for everything below it; None: its contents are not walked.
    tree: TreeRule | None = None

    @property
    def depth(self) -> int:
        return self.path.count("/")


class StorageLayout(Configurable):
    """Where and how a course's directories live on the storage volume."""

    course_uid = Int(
        0,
        help="""Owner of every course directory. Root (0) by default, so no
        instructor can change the modes; set a service account's uid if the
        storage is managed without root. A course file's ``uid`` (Aalto's
        key) overrides it for that course.""",
    ).tag(config=True)

    base_mode = Int(
        0o755, help="Mode of the course base directory ``course/<dir>``."
    ).tag(config=True)
    files_mode = Int(
        0o2770,
        help="""Mode of ``course/<dir>/files``: the course group (instructors)
        read and write, setgid keeps new files in the group, others nothing.""",
    ).tag(config=True)
    data_mode = Int(
        0o2775,
        help="""Mode of ``course/<dir>/data`` for ``datadir`` courses:
        instructors write, students read.""",
    ).tag(config=True)
    data_readwrite_mode = Int(
        0o3777,
        help="""Mode of the data directory of ``datadir_readwrite`` courses:
        everyone may write; the sticky bit stops students deleting each
        other's files.""",
    ).tag(config=True)
    exchange_mode = Int(
        0o2775,
        help="""Mode of ``exchange/<dir>``, the directory mounted as nbgrader's
        exchange root. The directories inside it follow nbgrader's own modes.""",
    ).tag(config=True)
    parent_mode = Int(
        0o755,
        help="""Mode for shared parents such as ``course/`` and ``exchange/``
        when the CLI has to create them. Existing parents are only checked
        for group or world write access.""",
    ).tag(config=True)

    paths = Instance(
        StoragePaths,
        help="""Where the course's directories are (not configured here: the
        hub's ``c.StoragePaths``, shared with the spawn hooks).""",
    )

    @default("paths")
    def _paths_default(self):
        return shared_instance(StoragePaths, self.config)

    # --- the pure part ---------------------------------------------------------
    def needs_storage(self, course: Course) -> bool:
        return course.has_instructor_mode or course.datadir

    def entries(self, course: Course) -> list[Entry]:
        """Every directory ``course`` needs, parents first."""
        if not self.needs_storage(course):
            return []
        if course.has_instructor_mode and course.gid is None:
            raise LayoutError(
                f"course {course.slug}: it has instructors but no 'gid', so its"
                f" files cannot be group-shared; add 'gid: <number>' to"
                f" {course.source or course.slug + '.yaml'}"
            )
        # Aalto's course files name the owner ('uid', as managecourse.py read it)
        uid = course.uid if course.uid is not None else self.course_uid
        gid = course.gid if course.gid is not None else 0
        ro = WRITE_BITS if course.archive else 0
        archived = " (the course is archived: read-only)" if course.archive else ""
        out: dict[str, Entry] = {}

        def add(entry: Entry) -> None:
            for parent in _parents(entry.path):
                out.setdefault(
                    parent,
                    Entry(
                        parent,
                        None,
                        None,
                        None,
                        "parent",
                        forbid=0o022,
                        create_mode=self.parent_mode,
                    ),
                )
            out[entry.path] = entry

        def add_base(path: str) -> None:
            # course/<dir> is the course's own; a template without such a
            # level (e.g. coursefiles/<dir>) has only shared parents.
            base = posixpath.dirname(path)
            if posixpath.basename(base) == course.directory and base not in out:
                add(Entry(base, self.base_mode & ~ro, uid, gid, "course-base"))

        if course.has_instructor_mode:
            files = self.paths.course_files(course)
            add_base(files)
            add(
                Entry(
                    files,
                    self.files_mode & ~ro,
                    uid,
                    gid,
                    "course-files",
                    tree=TreeRule(
                        forbid=OTHER_BITS | ro,
                        dir_require=0o2000,
                        gid=gid,
                        why="course files must not be accessible to others, and"
                        " must stay in the course group" + archived,
                    ),
                )
            )
        if course.datadir:
            data = self.paths.course_data(course)
            add_base(data)
            if course.datadir_readwrite:
                mode, forbid, why = self.data_readwrite_mode, ro, "writable by all"
            elif course.gid is None:
                mode, forbid, why = 0o755, OTHER_WRITE | ro, "course data"
            else:
                mode, forbid, why = self.data_mode, OTHER_WRITE | ro, "course data"
            add(
                Entry(
                    data,
                    mode & ~ro,
                    uid,
                    gid,
                    "course-data",
                    tree=TreeRule(
                        forbid=forbid,
                        why=why + " must not be world-writable" + archived,
                    )
                    if forbid
                    else None,
                )
            )
        if course.has_instructor_mode:
            root = self.paths.exchange(course)
            course_dir = f"{root}/{course.slug}"
            shared = TreeRule(
                forbid=OTHER_WRITE | ro,
                why="released assignments and feedback must not be"
                " world-writable" + archived,
            )
            add(Entry(root, self.exchange_mode & ~ro, uid, gid, "exchange"))
            add(
                Entry(
                    course_dir, NBGRADER_COURSE_MODE & ~ro, uid, gid, "exchange-course"
                )
            )
            add(
                Entry(
                    f"{course_dir}/outbound",
                    NBGRADER_OUTBOUND_MODE & ~ro,
                    uid,
                    gid,
                    "exchange-outbound",
                    tree=shared,
                )
            )
            # nbgrader makes each submission 0777 on purpose (hidden by the
            # unlistable inbound), so only an archive restricts what is inside.
            add(
                Entry(
                    f"{course_dir}/inbound",
                    NBGRADER_INBOUND_MODE & ~ro,
                    uid,
                    gid,
                    "exchange-inbound",
                    tree=TreeRule(forbid=ro, why="the course is archived")
                    if ro
                    else None,
                )
            )
            add(
                Entry(
                    f"{course_dir}/feedback",
                    NBGRADER_FEEDBACK_MODE & ~ro,
                    uid,
                    gid,
                    "exchange-feedback",
                    tree=shared,
                )
            )
        return sorted(out.values(), key=lambda e: (e.depth, e.path))

    def archived(self, course: Course) -> Course:
        """The same course with ``archive: true``: its read-only layout."""
        return replace(course, archive=True)


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
