"""Every storage path rule, in one place.

:class:`StoragePaths` owns where things live on the campus storage volume
(a user's home, a course's files, data and nbgrader exchange, deployment
wide extra mounts) and where each appears inside a server. The spawn hooks,
the ``aaltohub course`` commands, the home provisioners, the storage helper,
the quota sources, the local spawner and the demo all ask it, so what the
CLI creates is what the servers mount.

Templates are checked when the object is built, which is at hub start
(the authenticator and every spawner build it): an unknown placeholder or
a path that could leave the volume is refused with the setting's name,
never discovered as an error in the middle of a spawn.
"""

from __future__ import annotations

import posixpath
import string
from collections.abc import Mapping

from traitlets import Dict, List, TraitError, Unicode, validate
from traitlets.config import Configurable

from ..deprecation import adopt_moved_options

DEFAULT_HOME_SUB_PATH = "u/{uid_last2digits}/{username}"

#: Placeholders a user template may use (home, per-user quota paths).
USER_FIELDS = ("username", "uid", "uid_last2digits")
#: Placeholders a course template may use.
COURSE_FIELDS = ("course", "coursedir_slug")


class UnsafePath(ValueError):
    """A path (or template) could leave the storage root, or cannot be filled."""


def uid_last2digits(uid: int) -> str:
    """The two-digit bucket that spreads homes over ``u/00`` .. ``u/99``."""
    return f"{int(uid) % 100:02d}"


def user_fields(username: str, uid: int) -> dict[str, object]:
    """Template fields of one user."""
    return {"username": username, "uid": uid, "uid_last2digits": uid_last2digits(uid)}


def course_fields(course) -> dict[str, object]:
    """Template fields of one course (a :class:`aaltohub.course.Course`)."""
    return {"course": course.slug, "coursedir_slug": course.directory}


def safe_relpath(path: str) -> str:
    """Return ``path`` if it is a clean relative path, else raise UnsafePath.

    The storage side checks again, independently of the hub: the CLI and
    the storage helper run on hosts where a bad path would be written as
    root.
    """
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\0" in path
        or any(p in ("", ".", "..") or len(p.encode()) > 255 for p in parts)
        or posixpath.normpath(path) != path
    ):
        raise UnsafePath(
            f"refusing storage path {path!r}: it must be relative,"
            " without '..', empty parts or NUL"
        )
    return path


def placeholders(template: str) -> set[str]:
    """The ``{names}`` a template uses; UnsafePath if it is not a template."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise UnsafePath(f"{template!r} is not a valid template: {e}") from None
    names = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or spec or conversion or not name.isidentifier():
            raise UnsafePath(
                f"{template!r}: use plain placeholders such as {{username}},"
                f" not {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}}"
            )
        names.add(name)
    return names


def render(template: str, fields: Mapping[str, object], setting: str = "") -> str:
    """Fill ``template`` and check the result with :func:`safe_relpath`.

    ``setting`` names the configuration option in error messages.
    """
    where = f"{setting} = {template!r}" if setting else repr(template)
    try:
        unknown = placeholders(template) - set(fields)
    except UnsafePath as e:
        raise UnsafePath(f"{setting}: {e}" if setting else str(e)) from None
    if unknown:
        raise UnsafePath(
            f"{where}: placeholder {{{sorted(unknown)[0]}}} is not available here;"
            f" use {', '.join('{' + f + '}' for f in sorted(fields))}"
        )
    path = template.format(**fields)
    # A trailing slash is harmless in a template; anything else is refused.
    try:
        return safe_relpath(path.rstrip("/"))
    except UnsafePath as e:
        raise UnsafePath(f"{where}: {e}") from None


def _check_template(setting: str, template: str, allowed: tuple[str, ...]) -> str:
    sample = {"username": "user", "uid": 1234, "uid_last2digits": "34"}
    sample.update({"course": "course", "coursedir_slug": "course"})
    try:
        render(template, {k: sample[k] for k in allowed}, setting)
    except UnsafePath as e:
        raise TraitError(str(e)) from None
    return template


class StoragePaths(Configurable):
    """Where homes, course files, course data and exchanges live on the
    storage volume, and where they appear inside a server."""

    home_sub_path = Unicode(
        DEFAULT_HOME_SUB_PATH,
        help="""Path of a user's home on the storage volume. Placeholders:
        ``{username}`` (the unescaped institutional name), ``{uid}`` and
        ``{uid_last2digits}``.""",
    ).tag(config=True)
    home_target = Unicode(
        "/notebooks", help="Where the home directory appears inside a server."
    ).tag(config=True)

    files_sub_path = Unicode(
        "course/{coursedir_slug}/files",
        help="""Path of a course's instructor files on the storage volume.
        Placeholders: ``{course}`` (the slug) and ``{coursedir_slug}``.""",
    ).tag(config=True)
    files_target = Unicode(
        "/course",
        help="Where instructors see the course files; nbgrader's CourseDirectory.root.",
    ).tag(config=True)

    data_sub_path = Unicode(
        "course/{coursedir_slug}/data",
        help="""Path of a course's data (``datadir`` courses). Placeholders:
        ``{course}`` and ``{coursedir_slug}``.""",
    ).tag(config=True)
    data_target = Unicode(
        "/coursedata", help="Where the course data appears inside a server."
    ).tag(config=True)

    exchange_sub_path = Unicode(
        "exchange/{coursedir_slug}",
        help="""Path of a course's nbgrader exchange. Placeholders:
        ``{course}`` and ``{coursedir_slug}``.""",
    ).tag(config=True)
    exchange_target = Unicode(
        "/srv/nbgrader/exchange",
        help="Where the exchange appears inside a server; nbgrader's Exchange.root.",
    ).tag(config=True)

    extra_mounts = List(
        Dict(),
        help="""Deployment-wide mounts for every server, e.g. shared data or
        software: ``[{"target": "/m/software", "sub_path": "software",
        "read_only": true}]``. Sub-paths may use the user placeholders
        ``{username}``, ``{uid}`` and ``{uid_last2digits}``.""",
    ).tag(config=True)

    # Where each option lived before it moved here: (class, old name) -> new.
    # The old names keep working, with a DeprecationWarning.
    MOVED = {
        ("HomeHook", "sub_path"): "home_sub_path",
        ("HomeHook", "target"): "home_target",
        ("ProvisionHomeHook", "sub_path"): "home_sub_path",
        ("CourseMountsHook", "files_sub_path"): "files_sub_path",
        ("CourseMountsHook", "files_target"): "files_target",
        ("CourseMountsHook", "data_sub_path"): "data_sub_path",
        ("CourseMountsHook", "data_target"): "data_target",
        ("CourseMountsHook", "exchange_sub_path"): "exchange_sub_path",
        ("CourseMountsHook", "exchange_target"): "exchange_target",
        ("CourseMountsHook", "extra_mounts"): "extra_mounts",
        ("StorageLayout", "files_sub_path"): "files_sub_path",
        ("StorageLayout", "data_sub_path"): "data_sub_path",
        ("StorageLayout", "exchange_sub_path"): "exchange_sub_path",
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        adopt_moved_options(self, self.MOVED)

    # --- checked when set: at hub start, never during a spawn --------------------
    @validate("home_sub_path")
    def _valid_home(self, proposal):
        return _check_template(
            "c.StoragePaths.home_sub_path", proposal.value, USER_FIELDS
        )

    @validate("files_sub_path", "data_sub_path", "exchange_sub_path")
    def _valid_course_path(self, proposal):
        name = proposal.trait.name
        return _check_template(f"c.StoragePaths.{name}", proposal.value, COURSE_FIELDS)

    @validate("home_target", "files_target", "data_target", "exchange_target")
    def _valid_target(self, proposal):
        value = proposal.value
        if not value.startswith("/") or "\0" in value or "{" in value:
            raise TraitError(
                f"c.StoragePaths.{proposal.trait.name} = {value!r}: a mount target"
                " must be an absolute path inside the server, without placeholders"
            )
        return value

    @validate("extra_mounts")
    def _valid_extra(self, proposal):
        for i, mount in enumerate(proposal.value):
            setting = f"c.StoragePaths.extra_mounts[{i}]"
            if not isinstance(mount.get("target"), str) or not isinstance(
                mount.get("sub_path"), str
            ):
                raise TraitError(f"{setting}: needs 'target' and 'sub_path' strings")
            if not mount["target"].startswith("/"):
                raise TraitError(f"{setting}: 'target' must be an absolute path")
            _check_template(f"{setting}['sub_path']", mount["sub_path"], USER_FIELDS)
        return proposal.value

    # --- paths ------------------------------------------------------------------
    def home(self, username: str, uid: int) -> str:
        """A user's home, relative to the storage root."""
        return render(
            self.home_sub_path,
            user_fields(username, uid),
            "c.StoragePaths.home_sub_path",
        )

    def course_files(self, course) -> str:
        return render(
            self.files_sub_path, course_fields(course), "c.StoragePaths.files_sub_path"
        )

    def course_data(self, course) -> str:
        return render(
            self.data_sub_path, course_fields(course), "c.StoragePaths.data_sub_path"
        )

    def exchange(self, course) -> str:
        return render(
            self.exchange_sub_path,
            course_fields(course),
            "c.StoragePaths.exchange_sub_path",
        )

    def extra_sub_path(self, mount: dict, username: str, uid: int) -> str:
        """The sub-path of one of :attr:`extra_mounts` for a user."""
        return render(mount["sub_path"], user_fields(username, uid), "extra_mounts")
