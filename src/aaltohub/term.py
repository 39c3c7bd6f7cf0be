"""A course's term: its dates, its retention periods, and its access phase.

Course files may say when a term ends and how long its data is kept::

    term:
      starts: 2027-01-08
      ends: 2027-05-31T23:59+03:00     # students lose access
      instructors_until: 2027-06-30    # instructors keep read-only access
    retention:                         # days after the term ends
      course: 730                      # the course's files and data
      submissions: 365                 # submitted, autograded, feedback
      exchange: 180                    # the nbgrader exchange

These are untrusted input like every course key: each value is checked
here and a bad one fails the course closed, with the fix in the message.
:func:`phase` is the one answer to "where is this course in its term";
:func:`aaltohub.access.visible_roles` and the course mounts use it. No I/O.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from enum import Enum

from .course_values import CourseError, reject_unknown, show

UTC = datetime.UTC

#: end-term steps, in the order they run (recorded under ``term.end_term``).
END_TERM_STEPS = ("access", "notice", "servers", "gradebook", "archive")
#: What retention periods a course file may set (days after the term ends).
RETENTION_KINDS = ("course", "submissions", "exchange")
#: The longest retention a course file may ask for (ten years).
MAX_RETENTION_DAYS = 3650


class Phase(Enum):
    """Where a course is in its term."""

    OPEN = "open"
    #: Students have lost access; instructors may start it, read-only.
    READ_ONLY = "instructors read-only"
    CLOSED = "closed"


@dataclass(frozen=True)
class Term:
    starts: datetime.datetime | None = None
    #: From this time students may not start the course.
    ends: datetime.datetime | None = None
    #: Until this time instructors may start it, with course storage read-only.
    instructors_until: datetime.datetime | None = None
    #: What ``aaltohub course end-term`` has done: step -> ISO time (display only;
    #: each step checks the facts itself, so editing this cannot skip one).
    end_term: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class RetentionDays:
    """Days after the term ends that each kind of data is kept (None: the
    deployer's default, ``c.Retention``)."""

    course: int | None = None
    submissions: int | None = None
    exchange: int | None = None


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(UTC)


def as_time(value, key: str, end_of_day: bool = False) -> datetime.datetime:
    """A YAML date or datetime (or ISO text) as an aware UTC datetime.

    A date alone means the start of that day in UTC, or with ``end_of_day``
    the end of it (so ``ends: 2027-05-31`` keeps the course open that day).
    A time without an offset is taken as UTC.
    """
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            if len(text) == 10:  # YYYY-MM-DD: a date, as YAML would read it
                value = datetime.date.fromisoformat(text)
            else:
                value = datetime.datetime.fromisoformat(text)
        except ValueError:
            pass
    if type(value) is datetime.date:
        day = value + datetime.timedelta(days=1) if end_of_day else value
        return datetime.datetime(day.year, day.month, day.day, tzinfo=UTC)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    raise CourseError(
        f"key '{key}' must be a date such as 2027-05-31 or a time such as"
        f" 2027-05-31T23:59+03:00, not {show(value)}"
    )


def _term(value, key):
    if not isinstance(value, dict):
        raise CourseError(
            f"key '{key}' must be a mapping of starts, ends, instructors_until"
        )
    reject_unknown(value, ("starts", "ends", "instructors_until", "end_term"), key)
    times = {}
    for name in ("starts", "ends", "instructors_until"):
        if value.get(name) is not None:
            times[name] = as_time(value[name], f"{key}.{name}", name != "starts")
    steps = value.get("end_term") or {}
    if not isinstance(steps, dict) or not all(
        k in END_TERM_STEPS and isinstance(v, str | datetime.datetime | datetime.date)
        for k, v in steps.items()
    ):
        raise CourseError(
            f"key '{key}.end_term' is written by 'aaltohub course end-term'"
            f" (steps {', '.join(END_TERM_STEPS)}); remove it to start over"
        )
    term = Term(**times, end_term={k: str(v) for k, v in steps.items()})
    if term.starts and term.ends and term.ends <= term.starts:
        raise CourseError(f"key '{key}': 'ends' must be after 'starts'")
    if term.instructors_until and not term.ends:
        raise CourseError(
            f"key '{key}': 'instructors_until' needs 'ends' (when students lose access)"
        )
    if term.instructors_until and term.ends and term.instructors_until < term.ends:
        raise CourseError(
            f"key '{key}': 'instructors_until' must not be before 'ends'; instructors"
            " keep access at least as long as students"
        )
    return term


def retention_days(value, key: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= MAX_RETENTION_DAYS
    ):
        raise CourseError(
            f"key '{key}' must be a whole number of days from 1 to"
            f" {MAX_RETENTION_DAYS}, not {show(value)}"
        )
    return value


def _retention(value, key):
    if not isinstance(value, dict):
        raise CourseError(
            f"key '{key}' must map {', '.join(RETENTION_KINDS)} to days kept"
            " after the term ends"
        )
    reject_unknown(value, RETENTION_KINDS, key)
    return RetentionDays(
        **{
            k: retention_days(v, f"{key}.{k}")
            for k, v in value.items()
            if v is not None
        }
    )


#: Course file keys this module validates (merged into ``course.FIELDS``).
FIELDS = {"term": _term, "retention": _retention}


def phase(course, now: datetime.datetime | None = None) -> Phase:
    """The one rule of term access, for a :class:`aaltohub.course.Course`.

    After ``term.ends`` (or once archived) students have no access;
    instructors keep read-only access until ``term.instructors_until``.
    An archived course without those dates is closed, as before terms
    existed.
    """
    term: Term | None = getattr(course, "term", None)
    if term is None or (term.ends is None and term.instructors_until is None):
        # No dates (most courses): nothing to compare, no clock to read.
        return Phase.CLOSED if course.archive else Phase.OPEN
    now = now or now_utc()
    ended = term.ends is not None and now >= term.ends
    if not ended and not course.archive:
        return Phase.OPEN
    if term.instructors_until is not None and now < term.instructors_until:
        return Phase.READ_ONLY
    return Phase.CLOSED


def describe(course, now: datetime.datetime | None = None) -> str:
    """Short words for ``course list``."""
    now = now or now_utc()
    term: Term = getattr(course, "term", None) or Term()
    current = phase(course, now)
    if current is Phase.OPEN:
        return f"open until {day(term.ends)} UTC" if term.ends else "open"
    if current is Phase.READ_ONLY:
        return f"instructors read-only until {day(term.instructors_until)} UTC"
    return "closed"


def day(when: datetime.datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if when else "-"


def with_end(
    term: Term, ends: datetime.datetime, instructors_until: datetime.datetime | None
) -> Term:
    return replace(term, ends=ends, instructors_until=instructors_until)


def iso(when: datetime.datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
