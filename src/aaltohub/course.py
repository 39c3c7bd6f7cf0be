"""The Course model and the validation of one course file.

Course files are read exactly as the reference (Aalto) deployment writes
them; everything it did not have is optional. Validation is strict: an
unknown or mistyped key makes the course fail closed, with a message that
names the file, the key and the likely fix.

Course files are untrusted input: a course editor is trusted less than the
deployer. Above all, ``kubespawner_override`` is an allow-list of options
that cannot weaken a server's isolation (see ``ALLOWED_OVERRIDE_KEYS`` and
``REFUSED_OVERRIDE_KEYS``), and every value is type-checked.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from .course_overrides import AALTO_OVERRIDE_KEYS, split_aalto_keys, validate_override
from .course_values import (
    CourseError,
    combine,
    memory,
    number,
    reject_unknown,
    show,
    unknown_key,
)
from .grading.limits import DEFAULT as DEFAULT_GRADING
from .grading.limits import GradingLimits, parse_grading
from .term import FIELDS as TERM_FIELDS
from .term import RetentionDays, Term

__all__ = ["Course", "CourseError", "Resources", "build_course", "parse_profile_slug"]

SLUG_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
ROLE_STUDENT = "student"
ROLE_INSTRUCTOR = "instructor"
ROLES = (ROLE_STUDENT, ROLE_INSTRUCTOR)
INSTRUCTOR_SUFFIX = "-instructor"
#: Default name of a course's directory group (the reference's jupyter-<slug>):
#: its members are instructors, and it owns the course files.
COURSE_GROUP_TEMPLATE = "jupyter-{slug}"

_UMASK_RE = re.compile(r"^0?[0-7]{3}$")


@dataclass(frozen=True)
class Resources:
    """CPU and memory for one role; None means "use the hub's default"."""

    cpu_limit: float | None = None
    cpu_guarantee: float | None = None
    mem_limit: str | int | None = None
    mem_guarantee: str | int | None = None


@dataclass(frozen=True)
class Cull:
    """Idle-cull limits for a course's servers, in seconds (None: hub default)."""

    inactive_timeout: int | None = None
    max_age: int | None = None
    #: Aalto's rule (``c.CourseCatalog.aalto_cull_only_lengthens``): the
    #: larger of the hub default and the course value, so a course can only
    #: lengthen its limits.
    only_lengthens: bool = False

    def effective(self, default_timeout: int, default_max_age: int) -> tuple[int, int]:
        """(inactive_timeout, max_age) of a server, given the hub defaults.
        The one home of the rule; the spawn hooks and the culler use it."""
        timeout, age = self.inactive_timeout, self.max_age
        if timeout is None:
            timeout = default_timeout
        elif self.only_lengthens:
            timeout = max(timeout, default_timeout)
        if age is None:
            age = default_max_age
        elif self.only_lengthens:
            age = max(age, default_max_age)
        return timeout, age


@dataclass(frozen=True)
class Course:
    """One course, validated. Immutable: a reload builds a new object."""

    slug: str
    name: str
    source: str = ""
    gid: int | None = None
    #: Owner of the course directories (Aalto's managecourse.py); None:
    #: the hub-wide ``c.StorageLayout.course_uid``.
    uid: int | None = None
    instructors: frozenset[str] = frozenset()
    students: frozenset[str] = frozenset()
    private: bool = False
    archive: bool = False
    #: Aalto's ``archived``: the course's directories are mounted read-only
    #: when its instructors start another course (InstructorCoursesHook).
    archived: bool = False
    default: bool = False
    image: Any = None
    image_instructor: Any = None
    datadir: bool = False
    datadir_readwrite: bool = False
    restrict_submit: bool = False
    coursedir_slug: str = ""
    nbgrader_config: str = ""
    student_umask: str | None = None
    create_userdata: bool = False
    extra_instructor_groups: tuple[tuple[str, int], ...] = ()
    extra_student_groups: tuple[tuple[str, int], ...] = ()
    kubespawner_override: dict = field(default_factory=dict, hash=False)
    jupyterlab: bool = True
    resources: dict[str, Resources] = field(default_factory=dict, hash=False)
    cull: Cull = Cull()
    #: Limits of ``aaltohub grade``'s isolated runs (docs/grading.md).
    grading: GradingLimits = DEFAULT_GRADING
    instructor_groups: frozenset[str] = frozenset()
    student_groups: frozenset[str] = frozenset()
    description: str = ""
    #: The deployer's backend that runs this course's servers (a name in
    #: ``c.CourseWrapSpawner.backends``); "" for the hub's default.
    backend: str = ""
    #: Term dates and end-term progress; retention periods (aaltohub.term).
    term: Term = field(default_factory=Term)
    retention: RetentionDays = field(default_factory=RetentionDays)

    @property
    def has_instructor_mode(self) -> bool:
        """Reference rule: only courses with a gid or listed instructors get
        an instructor variant (and course storage)."""
        return self.gid is not None or bool(self.instructors)

    @property
    def directory(self) -> str:
        """Name of the course's directories on storage."""
        return self.coursedir_slug or self.slug

    def profile_slug(self, role: str) -> str:
        return self.slug + (INSTRUCTOR_SUFFIX if role == ROLE_INSTRUCTOR else "")


def parse_profile_slug(profile: str) -> tuple[str, str]:
    """``intro-instructor`` -> (``intro``, instructor); ``intro`` -> student."""
    if profile.endswith(INSTRUCTOR_SUFFIX):
        return profile[: -len(INSTRUCTOR_SUFFIX)], ROLE_INSTRUCTOR
    return profile, ROLE_STUDENT


# --- field validators: each returns the clean value or raises CourseError ----
def _bool(value, key):
    if not isinstance(value, bool):
        raise CourseError(f"key '{key}' must be true or false, not {show(value)}")
    return value


def _str(value, key):
    if not isinstance(value, str):
        raise CourseError(f"key '{key}' must be text, not {show(value)}")
    return value


def _gid(value, key):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CourseError(f"key '{key}' must be a positive group id, not {show(value)}")
    return value


def _uid(value, key):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CourseError(
            f"key '{key}' must be the numeric user id that owns the course"
            f" directories, not {show(value)}"
        )
    return value


def _usernames(value, key):
    if value is None:
        return frozenset()
    if not isinstance(value, list | tuple | set) or not all(
        isinstance(u, str) for u in value
    ):
        raise CourseError(f"key '{key}' must be a list of usernames")
    return frozenset(u.strip() for u in value if u.strip())


def _groups(value, key):
    names = _usernames(value, key)
    return names


def _dirslug(value, key):
    value = _str(value, key)
    if not SLUG_RE.fullmatch(value):
        raise CourseError(
            f"key '{key}' must be a directory name of lowercase letters, digits,"
            f" '-' and '_' (no '/', no '..'), not {show(value)}"
        )
    return value


def _umask(value, key):
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o777:
        # YAML 1.1 reads an unquoted 0007 as the octal number 7.
        return f"{value:04o}"
    if isinstance(value, str) and _UMASK_RE.fullmatch(value):
        return value.rjust(4, "0")
    raise CourseError(f"key '{key}' must be an octal umask such as '0007'")


def _extra_groups(value, key):
    if value is None:
        return ()
    out = []
    for item in value if isinstance(value, list) else [None]:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not isinstance(item[0], str)
            or isinstance(item[1], bool)
            or not isinstance(item[1], int)
        ):
            raise CourseError(
                f"key '{key}' must be a list of [group-name, gid] pairs,"
                f" e.g. [[jupyter-other, 70123]]; got {show(value)}"
            )
        out.append((item[0], item[1]))
    return tuple(out)


def _image(value, key):
    if isinstance(value, str) and value:
        return value
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        # a date, not a datetime: the two cannot be compared with each other
        and type(value[1]) is datetime.date
    ):
        return (value[0], value[1])
    raise CourseError(
        f"key '{key}' must be an image name, an alias such as DEFAULT, or"
        f" [series, YYYY-MM-DD]; got {show(value)}"
    )


_RESOURCE_KEYS = ("cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee")


def _resources(value, key):
    if not isinstance(value, dict):
        raise CourseError(f"key '{key}' must map roles (student, instructor) to limits")
    out = {}
    for role, spec in value.items():
        where = f"key '{key}.{role}'"
        if role not in ROLES:
            raise CourseError(f"{where}: unknown role; use one of {list(ROLES)}")
        if not isinstance(spec, dict):
            raise CourseError(f"{where} must be a mapping of {list(_RESOURCE_KEYS)}")
        reject_unknown(spec, _RESOURCE_KEYS, f"{key}.{role}")
        out[role] = Resources(
            cpu_limit=number(spec.get("cpu_limit"), where, "cpu_limit"),
            cpu_guarantee=number(spec.get("cpu_guarantee"), where, "cpu_guarantee"),
            mem_limit=memory(spec.get("mem_limit"), where, "mem_limit"),
            mem_guarantee=memory(spec.get("mem_guarantee"), where, "mem_guarantee"),
        )
    return out


def _cull(value, key):
    if not isinstance(value, dict):
        raise CourseError(f"key '{key}' must be a mapping of inactive_timeout, max_age")
    reject_unknown(value, ("inactive_timeout", "max_age"), key)
    where = f"key '{key}'"
    timeout = number(value.get("inactive_timeout"), where, "inactive_timeout")
    max_age = number(value.get("max_age"), where, "max_age")
    return Cull(
        inactive_timeout=None if timeout is None else int(timeout),
        max_age=None if max_age is None else int(max_age),
    )


BACKEND_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")


def _backend_name(value, key):
    if not isinstance(value, str) or not BACKEND_RE.fullmatch(value):
        raise CourseError(
            f"key '{key}' must be the name of one of the hub's backends"
            f" (lowercase letters, digits, '-' and '_'), not {show(value)}"
        )
    return value


def _check_backend(values: dict, backends: Collection[str] | None, problems) -> None:
    """A course may only name a backend the deployer defined."""
    name = values.get("backend")
    if not name or backends is None or name in backends:
        return
    known = ", ".join(sorted(backends)) or "none: this hub has one backend"
    problems.append(
        f"key 'backend': this hub defines no backend {name!r} (it has {known});"
        " use one of those names, or remove the key for the hub's default"
    )


# key -> validator. The first block is the reference deployment's vocabulary.
FIELDS = {
    "name": _str,
    "gid": _gid,
    "uid": _uid,
    "instructors": _usernames,
    "students": _usernames,
    "private": _bool,
    "archive": _bool,
    "archived": _bool,
    "default": _bool,
    "image": _image,
    "image_instructor": _image,
    "datadir": _bool,
    "datadir_readwrite": _bool,
    "restrict_submit": _bool,
    "coursedir_slug": _dirslug,
    "nbgrader_config": _str,
    "student_umask": _umask,
    "create_userdata": _bool,
    "extra_instructor_groups": _extra_groups,
    "extra_student_groups": _extra_groups,
    "kubespawner_override": validate_override,
    "jupyterlab": _bool,
    # aaltohub additions
    "resources": _resources,
    "cull": _cull,
    "grading": parse_grading,
    "instructor_groups": _groups,
    "student_groups": _groups,
    "description": _str,
    "backend": _backend_name,
    **TERM_FIELDS,
}
ROSTER_FIELDS = ("students", "instructors")


def _aalto_override(aalto: dict, values: dict, problems: list) -> None:
    """Move Aalto's course settings out of kubespawner_override."""
    cull = {}
    for name, item in aalto.items():
        target = AALTO_OVERRIDE_KEYS[name]
        where = f"key 'kubespawner_override.{name}'"
        try:
            if target == "jupyterlab":
                values.setdefault(
                    "jupyterlab", _bool(item, f"kubespawner_override.{name}")
                )
            else:
                seconds = number(item, where, name)
                cull[target] = None if seconds is None else int(seconds)
        except CourseError as e:
            problems.extend(e.problems)
    if not cull:
        return
    if "cull" in values:
        problems.append(
            "key 'cull' and kubespawner_override's cull_inactive_time /"
            " cull_max_age both set the cull limits; keep one of them"
        )
        return
    values["cull"] = Cull(**cull)


def _course_values(data: dict, extra_override_keys, problems: list) -> dict:
    values: dict[str, Any] = {}
    aalto: dict = {}
    for key, value in data.items():
        try:
            if key not in FIELDS:
                problems.append(unknown_key(key, FIELDS, ""))
            elif key == "kubespawner_override":
                kube, aalto = split_aalto_keys(value)
                values[key] = validate_override(kube, key, extra_override_keys)
            else:
                values[key] = FIELDS[key](value, key)
        except CourseError as e:
            problems.extend(e.problems)
    _aalto_override(aalto, values, problems)
    return values


def build_course(
    slug: str,
    data: Any,
    roster: Any = None,
    source: str = "",
    roster_source: str = "",
    *,
    extra_override_keys: Collection[str] = (),
    backends: Collection[str] | None = None,
) -> Course:
    """Validate parsed YAML (and an optional roster) into a Course.

    ``extra_override_keys`` are kubespawner_override keys the deployer allows
    beyond ``ALLOWED_OVERRIDE_KEYS`` (``c.CourseCatalog.extra_override_keys``);
    ``REFUSED_OVERRIDE_KEYS`` stay refused. ``backends`` are the names a
    ``backend:`` key may give (``c.CourseCatalog.backends``); None: any
    well-formed name. Every key is checked: the
    CourseError's message starts with the file name and lists each problem
    (``.problems`` has them one by one).
    """
    where = source or f"{slug}.yaml"
    if not SLUG_RE.fullmatch(slug) or slug.endswith(INSTRUCTOR_SUFFIX):
        raise CourseError(
            f"course file {where}: the file name must be <slug>.yaml with a slug of"
            " lowercase letters, digits, '-' and '_', not ending in -instructor"
        )
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CourseError(f"course file {where}: expected a mapping of course keys")
    problems: list[str] = []
    values = _course_values(data, extra_override_keys, problems)
    _check_backend(values, backends, problems)
    if problems:
        raise combine(f"course file {where}", problems)
    if roster is not None:
        rwhere = roster_source or f"{slug}-users.yaml"
        if not isinstance(roster, dict):
            raise CourseError(f"roster file {rwhere}: expected students:/instructors:")
        for key in roster:
            if key not in ROSTER_FIELDS:
                problems.append(
                    unknown_key(key, ROSTER_FIELDS, "")
                    + "; a roster file holds only students and instructors"
                    f" (move other keys to {where})"
                )
            else:
                try:
                    values[key] = values.get(key, frozenset()) | _usernames(
                        roster[key], key
                    )
                except CourseError as e:
                    problems.extend(e.problems)
        if problems:
            raise combine(f"roster file {rwhere}", problems)
    values.setdefault("name", slug)
    values.setdefault("coursedir_slug", slug)
    return Course(slug=slug, source=where, **values)
