"""Retention rules: what data is due for deletion, when, and when it may go.

Pure: the periods (a course file's ``retention:`` or the deployer's
``c.Retention``), the items of an archived course or an archived home, and
the one decision :func:`decide` that ``aaltohub retention report`` shows
and ``aaltohub retention apply`` acts on. Reading sizes, the warning ledger
and deleting are in :mod:`aaltohub.storage.retention_store`.

The rule, for every item::

    due        = term end (course) or archive time (home) + days kept
    warn from  = due - warning_days        instructors told: announcement
                                           + report file, recorded
    delete     = when now >= due and now >= warned + warning_days

so nothing is deleted that was not announced at least ``warning_days``
before, even if the warning came late or the period was shortened.
"""

from __future__ import annotations

import datetime
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from traitlets import Integer, TraitError, Unicode, validate
from traitlets.config import Configurable

from .storage.paths import StoragePaths, UnsafePath, safe_relpath
from .term import MAX_RETENTION_DAYS, Phase, phase

DAY = datetime.timedelta(days=1)

#: Decisions, in the order a report sorts them.
DELETE, WARNED, WARN, KEEP, UNSCHEDULED = (
    "delete",
    "warned",
    "warn",
    "keep",
    "unscheduled",
)
#: Not warned or deleted: another course that is not closed uses its storage.
HELD = "held"

#: Inside a course's files directory (nbgrader's CourseDirectory.root):
#: the students' work.
SUBMISSION_DIRS = ("submitted", "autograded", "feedback")


class Retention(Configurable):
    """How long archived course data and archived homes are kept."""

    course_days = Integer(
        730,
        help="""Days after a course's term ends (``term.ends``) that an
        archived course's files and data are kept. A course file's
        ``retention.course`` overrides it.""",
    ).tag(config=True)
    submissions_days = Integer(
        365,
        help="""Days after the term ends that students' nbgrader work
        (submitted, autograded, feedback in the course files) is kept.
        A course file's ``retention.submissions`` overrides it.""",
    ).tag(config=True)
    exchange_days = Integer(
        180,
        help="""Days after the term ends that the course's nbgrader exchange
        is kept. A course file's ``retention.exchange`` overrides it.""",
    ).tag(config=True)
    homes_days = Integer(
        180,
        help="""Days an archived home (``aaltohub users archive``) is kept
        before it is deleted.""",
    ).tag(config=True)
    warning_days = Integer(
        30,
        help="""Days between telling instructors (a course announcement and a
        report file) and deleting. ``retention apply`` deletes nothing that
        was not announced at least this long before.""",
    ).tag(config=True)
    homes_archive = Unicode(
        "archive/homes",
        help="""Where ``aaltohub users archive`` moves leavers' homes, relative
        to the storage root (the same volume, so the move is a rename).""",
    ).tag(config=True)
    state_dir = Unicode(
        "",
        help="""Directory for the warning ledger (retention.json) and the
        report files for instructors (reports/<course>.txt), e.g.
        /srv/jupyterhub/retention on the hub's volume. The CLI also reads
        $AALTOHUB_RETENTION_DIR.""",
    ).tag(config=True)

    @validate("course_days", "submissions_days", "exchange_days", "homes_days")
    def _valid_days(self, proposal):
        if not 1 <= proposal.value <= MAX_RETENTION_DAYS:
            raise TraitError(
                f"c.Retention.{proposal.trait.name} = {proposal.value}: use 1 to"
                f" {MAX_RETENTION_DAYS} days"
            )
        return proposal.value

    @validate("homes_archive")
    def _valid_archive(self, proposal):
        try:
            return safe_relpath(proposal.value.rstrip("/"))
        except UnsafePath as e:
            raise TraitError(f"c.Retention.homes_archive: {e}") from None

    @validate("warning_days")
    def _valid_warning(self, proposal):
        if not 1 <= proposal.value <= 365:
            raise TraitError("c.Retention.warning_days: use 1 to 365 days")
        return proposal.value


@dataclass(frozen=True)
class Item:
    """Data that a retention period covers."""

    kind: str  # course, submissions, exchange or home
    owner: str  # the course slug, or the username of a home
    paths: tuple[str, ...]  # relative to the storage root
    due: datetime.datetime | None
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.owner}"


@dataclass(frozen=True)
class Decision:
    action: str
    #: When the item may be deleted (None: not scheduled or not warned yet).
    delete_after: datetime.datetime | None


def course_items(course, paths: StoragePaths, settings: Retention, now=None) -> list:
    """The retention items of one course: none while it is open."""
    if not course.archive and phase(course, now) is Phase.OPEN:
        return []
    ends = course.term.ends
    days = {
        "course": course.retention.course or settings.course_days,
        "submissions": course.retention.submissions or settings.submissions_days,
        "exchange": course.retention.exchange or settings.exchange_days,
    }
    files = paths.course_files(course)
    where = {
        "course": (files, paths.course_data(course)) if course.datadir else (files,),
        "submissions": tuple(f"{files}/{d}" for d in SUBMISSION_DIRS),
        "exchange": (paths.exchange(course),) if course.has_instructor_mode else (),
    }
    note = "" if ends else "no term.ends: run 'aaltohub course end-term' or set it"
    return [
        Item(
            kind,
            course.slug,
            where[kind],
            ends + days[kind] * DAY if ends else None,
            note,
        )
        for kind in ("submissions", "exchange", "course")
        if where[kind]
    ]


def in_use(course, paths: StoragePaths, now=None) -> tuple[str, ...]:
    """The storage a course may still use: all of it (files, data, exchange,
    whether or not it has them) until it is closed (:class:`Phase`)."""
    if phase(course, now) is Phase.CLOSED:
        return ()
    return (
        paths.course_files(course),
        paths.course_data(course),
        paths.exchange(course),
    )


def overlaps(a: str, b: str) -> bool:
    """True if the relative paths are the same or one contains the other."""
    a, b = posixpath.normpath(a), posixpath.normpath(b)
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def held_by(item: Item, used: dict[str, tuple[str, ...]]) -> list[str]:
    """The other courses (``used``: slug to :func:`in_use`) whose storage
    overlaps the item's: courses share directories through
    ``coursedir_slug`` (terms reuse it; a course file may name any), and
    deleting a closed course's item must never delete an open one's data."""
    return sorted(
        slug
        for slug, where in used.items()
        if not (item.kind != "home" and slug == item.owner)
        and any(overlaps(p, u) for p in item.paths for u in where)
    )


def home_item(username: str, path: str, archived: datetime.datetime, settings) -> Item:
    return Item("home", username, (path,), archived + settings.homes_days * DAY)


def decide(
    item: Item,
    warned: datetime.datetime | None,
    now,
    warning_days: int,
    *,
    holders: Sequence[str],
):
    """The one decision: held, keep, warn now, wait after a warning, or
    delete. ``holders`` (:func:`held_by`, required so no caller forgets
    it): open courses whose storage overlaps the item; while there are any,
    the item is held, whatever its date."""
    if holders:
        return Decision(HELD, None)
    if item.due is None:
        return Decision(UNSCHEDULED, None)
    period = warning_days * DAY
    if warned is None:
        return Decision(WARN if now >= item.due - period else KEEP, None)
    after = max(item.due, warned + period)
    return Decision(DELETE if now >= after else WARNED, after)
