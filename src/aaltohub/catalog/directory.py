"""CourseCatalog: a directory of course YAML files, reloaded as it changes.

Layout of ``c.CourseCatalog.path``::

    intro.yaml            one course per file, named <slug>.yaml
    intro-users.yaml      optional roster: students: [...], instructors: [...]
    IMAGES.yaml           optional image aliases and dated series

Reading files happens in a thread (they live on NFS in production); the
in-memory index is only changed on the event loop, so readers never see it
half-updated. Only files whose mtime or size changed are parsed again.

The files are untrusted input (course editors write them): only regular
files are read, never more than ``max_file_size`` bytes, symlinks only while
they stay inside the directory, and the YAML loader refuses deep nesting,
alias bombs and duplicate keys. A bad file fails alone.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field, replace

import yaml
from traitlets import Bool, Float, Int, Set, TraitError, Unicode, observe, validate
from traitlets.config import LoggingConfigurable

from .. import metrics
from ..access import RoleRules, Viewer
from ..course import (
    COURSE_GROUP_TEMPLATE,
    ROLE_INSTRUCTOR,
    Course,
    CourseError,
    build_course,
)
from ..course_overrides import override_key_refused
from .aalto_compat import aalto_notes
from .images import ImageTable, parse_images
from .offers import CourseIndex
from .safe_files import Refused, read_bytes
from .safe_yaml import load_yaml

ROSTER_SUFFIX = "-users"


@dataclass
class _FileState:
    stamp: tuple[int, int]  # (mtime_ns, size)
    data: object = None
    error: str | None = None


@dataclass
class ScanResult:
    """What a scan found changed; produced in a thread, applied on the loop."""

    files: dict[str, _FileState] = field(default_factory=dict)
    changed_slugs: set[str] = field(default_factory=set)
    images_changed: bool = False


# --- a YAML loader for untrusted files ---------------------------------------------
def _read_yaml(root: int, name: str, stamp, max_size: int) -> _FileState:
    try:
        text = read_bytes(root, name, max_size).decode("utf-8")
        return _FileState(stamp, load_yaml(text))
    except Refused as e:
        return _FileState(stamp, error=str(e))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        return _FileState(stamp, error=f"invalid YAML{where}: {problem}")
    except UnicodeDecodeError as e:
        return _FileState(stamp, error=f"cannot read file: not UTF-8 text ({e.reason})")
    except OSError as e:
        return _FileState(stamp, error=f"cannot read file: {e.strerror or e}")
    except (ValueError, OverflowError) as e:
        # PyYAML resolves e.g. 2024-13-45 as a date and then fails to build it
        return _FileState(stamp, error=f"invalid YAML value: {e}")


def _slug_of(filename: str) -> str:
    stem = filename[: -len(".yaml")]
    return stem[: -len(ROSTER_SUFFIX)] if stem.endswith(ROSTER_SUFFIX) else stem


class CourseCatalog(LoggingConfigurable):
    """The courses of the hub, loaded from ``path`` and kept up to date."""

    path = Unicode(
        "",
        help="""Directory holding one ``<slug>.yaml`` per course, optional
        ``<slug>-users.yaml`` rosters and an optional images file.""",
    ).tag(config=True)

    images_file = Unicode(
        "IMAGES.yaml",
        help="""File name, inside ``path``, of the image aliases and dated
        image series that course files may refer to.""",
    ).tag(config=True)

    default_image = Unicode(
        "",
        help="""Image for courses that name none. May be an alias from the
        images file, e.g. ``DEFAULT``. Empty: the spawner's own image.""",
    ).tag(config=True)

    default_instructors = Set(
        Unicode(),
        help="""Usernames that are instructors of every course (the
        reference deployment's DEFAULT_INSTRUCTORS).""",
    ).tag(config=True)

    instructor_group_template = Unicode(
        COURSE_GROUP_TEMPLATE,
        help="""Directory group whose members are instructors of a course;
        ``{slug}`` is the course slug. Resolved through the identity
        provider's group list for the user.""",
    ).tag(config=True)

    reload_interval = Float(
        10.0,
        help="""Seconds between checks of the course directory for changed
        files. Checks happen in a thread, on demand, at most this often.""",
    ).tag(config=True)

    offer_cache_seconds = Float(
        10.0,
        help="""Seconds a user's list of offered courses is reused (for the
        spawn page and the default choice of a spawn without one); a changed
        course file invalidates it at once. Only what is *shown* is cached:
        every spawn is authorized afresh. 0 turns the cache off.""",
    ).tag(config=True)

    max_file_size = Int(
        1024 * 1024,
        min=1,
        help="""Largest course, roster or images file read, in bytes. A
        larger file is reported as an error of its course (which is then not
        offered) and not read at all: course files are written by course
        editors, and one huge file must not stall or exhaust the hub.""",
    ).tag(config=True)

    extra_override_keys = Set(
        Unicode(),
        help="""KubeSpawner options that course files may set in
        ``kubespawner_override``, besides the built-in allow-list (image,
        cpu and memory limits and guarantees, extra resource limits and
        guarantees, node_selector, tolerations, extra_labels,
        extra_annotations, environment, default_url). E.g.
        ``{"priority_class_name", "node_affinity_preferred"}``. Values of
        these keys are passed to KubeSpawner unchecked. Keys that change
        uid, gid, security context, privileges, host namespaces, volumes,
        service account, init containers, lifecycle hooks, what the server
        runs or how it reaches the hub can never be allowed: listing one is
        a configuration error.""",
    ).tag(config=True)

    aalto_cull_only_lengthens = Bool(
        False,
        help="""Aalto's culling rule: a server's idle timeout and maximum age
        are the larger of the hub default (``c.ResourcesHook``) and the
        course's value, so a course can only lengthen its limits. Off: a
        course's ``cull`` (or Aalto's ``kubespawner_override``
        ``cull_inactive_time`` / ``cull_max_age``) is used as written, also
        when shorter. Set it while moving from Aalto's hub.""",
    ).tag(config=True)

    #: Backend names a course file may give (``backend: <name>``). Set by
    #: CourseWrapSpawner from its ``backends``; empty: a course naming a
    #: backend is refused (this hub runs every server one way).
    backends = Set(Unicode())

    @observe("backends")
    def _backends_changed(self, change):
        # In memory, no I/O: every course is validated again by the new list
        # (not while __init__ sets traits: nothing is loaded yet).
        if hasattr(self, "_files"):
            self.apply(ScanResult(images_changed=True))

    @validate("extra_override_keys")
    def _check_extra_override_keys(self, proposal):
        for key in proposal.value:
            if not key.isidentifier():
                raise TraitError(
                    f"c.CourseCatalog.extra_override_keys: {key!r} is not the"
                    " name of a KubeSpawner option"
                )
            if override_key_refused(key):
                raise TraitError(
                    f"c.CourseCatalog.extra_override_keys: {key!r} can never be"
                    " set by a course file: it changes uid, gid, security"
                    " context, privileges, host namespaces, volumes, service"
                    " account, init containers, lifecycle hooks, what the"
                    " server runs or how it reaches the hub; set it in the"
                    " hub's configuration instead"
                )
        return proposal.value

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._files: dict[str, _FileState] = {}
        self.courses: dict[str, Course] = {}
        self.errors: dict[str, str] = {}
        #: slug -> behaviour differences from Aalto's hub (warnings).
        self.notes: dict[str, list[str]] = {}
        self.images = ImageTable()
        self.images_error: str | None = None
        #: Who is offered what, kept current as files change (offers.py).
        self.index = CourseIndex(self.courses)
        self._last_scan = 0.0
        self._scan_lock: asyncio.Lock | None = None

    @property
    def rules(self) -> RoleRules:
        return RoleRules(
            default_instructors=frozenset(self.default_instructors),
            instructor_group_template=self.instructor_group_template,
        )

    # --- loading ---------------------------------------------------------------
    def scan(self) -> ScanResult:
        """Blocking: stat the directory and parse what changed."""
        result = ScanResult()
        try:
            # Listing and reading go through one directory fd, so the files
            # read are the ones listed even if the path is swapped meanwhile.
            root = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            self.log.error("catalog path=%s outcome=unreadable error=%s", self.path, e)
            metrics.CATALOG_RELOAD_FAILURES.inc()
            return result  # keep serving what we have
        try:
            self._scan_into(result, root)
        finally:
            os.close(root)
        return result

    def _scan_into(self, result: ScanResult, root: int) -> None:
        seen = set()
        try:
            entries = list(os.scandir(root))
        except OSError as e:
            self.log.error("catalog path=%s outcome=unreadable error=%s", self.path, e)
            metrics.CATALOG_RELOAD_FAILURES.inc()
            return
        for entry in entries:
            if not entry.name.endswith(".yaml") or entry.name.startswith("."):
                continue
            try:
                st = entry.stat()
            except OSError:
                continue
            seen.add(entry.name)
            stamp = (st.st_mtime_ns, st.st_size)
            old = self._files.get(entry.name)
            if old is not None and old.stamp == stamp:
                continue
            result.files[entry.name] = _read_yaml(
                root, entry.name, stamp, self.max_file_size
            )
            self._note_change(result, entry.name)
        for gone in set(self._files) - seen:
            result.files[gone] = None
            self._note_change(result, gone)

    def _note_change(self, result: ScanResult, filename: str) -> None:
        if filename == self.images_file:
            result.images_changed = True
        else:
            result.changed_slugs.add(_slug_of(filename))

    def apply(self, result: ScanResult) -> set[str]:
        """Non-blocking: fold a scan into the catalog. Returns changed slugs."""
        for name, state in result.files.items():
            if state is None:
                self._files.pop(name, None)
            else:
                self._files[name] = state
        slugs = set(result.changed_slugs)
        if result.images_changed:
            self._load_images()
            slugs |= {_slug_of(n) for n in self._files if n != self.images_file}
        for slug in slugs:
            self._rebuild(slug)
        metrics.CATALOG_COURSES.set(len(self.courses))
        metrics.CATALOG_ERRORS.set(len(self.problems()))
        if slugs:
            self.index.reorder()
        return slugs

    def load(self) -> CourseCatalog:
        """Blocking full load; for startup, the CLI and tests."""
        self.apply(self.scan())
        self._last_scan = time.monotonic()
        return self

    async def ensure_fresh(self) -> None:
        """Rescan in a thread if the last scan is older than reload_interval."""
        if time.monotonic() - self._last_scan < self.reload_interval:
            return
        if self._scan_lock is None:
            self._scan_lock = asyncio.Lock()
        async with self._scan_lock:
            if time.monotonic() - self._last_scan < self.reload_interval:
                return  # another request just did it
            result = await asyncio.to_thread(self.scan)
            changed = self.apply(result)
            self._last_scan = time.monotonic()
            if changed:
                self.log.info("catalog reloaded courses=%s", ",".join(sorted(changed)))

    def _load_images(self) -> None:
        state = self._files.get(self.images_file)
        self.images_error = None
        if state is None:
            self.images = ImageTable()
            return
        try:
            if state.error:
                raise CourseError(f"images file {self.images_file}: {state.error}")
            self.images = parse_images(state.data, self.images_file)
        except CourseError as e:
            # Keep the last good table: one typo must not re-image every course.
            self.images_error = str(e)
            self.log.error("%s (keeping the previous images)", e)
        except Exception:
            # as in _rebuild: a bug here must not stop every reload
            self.images_error = (
                f"images file {self.images_file}: internal error while validating"
                " it; see the hub's log (keeping the previous images)"
            )
            self.log.exception("catalog images outcome=internal-error")

    def _rebuild(self, slug: str) -> None:
        old = self.courses.pop(slug, None)
        if old is not None:
            self.index.remove(old, self.rules)
        self.errors.pop(slug, None)
        self.notes.pop(slug, None)
        main = self._files.get(f"{slug}.yaml")
        roster = self._files.get(f"{slug}{ROSTER_SUFFIX}.yaml")
        if main is None:
            if roster is not None:
                self.errors[slug] = (
                    f"roster file {slug}{ROSTER_SUFFIX}.yaml has no course file"
                    f" {slug}.yaml; the roster is ignored"
                )
            return
        try:
            for name, state in ((f"{slug}.yaml", main), (f"{slug}-users.yaml", roster)):
                if state is not None and state.error:
                    raise CourseError(f"course file {name}: {state.error}")
            course = build_course(
                slug,
                main.data,
                roster.data if roster else None,
                source=f"{slug}.yaml",
                roster_source=f"{slug}{ROSTER_SUFFIX}.yaml",
                extra_override_keys=self.extra_override_keys,
                backends=self.backends,
            )
            for key in ("image", "image_instructor"):
                try:
                    self.images.check(getattr(course, key), key)
                except CourseError as e:
                    raise CourseError(f"course file {slug}.yaml: {e}") from None
        except CourseError as e:
            # Fail closed: the course is not offered until the file is fixed.
            self.errors[slug] = str(e)
            self.log.error("catalog course=%s outcome=invalid error=%s", slug, e)
            return
        except Exception:
            # A validator bug must fail this course only, not every reload
            # (the fuzz tests look for these).
            self.errors[slug] = (
                f"course file {slug}.yaml: internal error while validating it;"
                " see the hub's log"
            )
            self.log.exception("catalog course=%s outcome=internal-error", slug)
            return
        if self.aalto_cull_only_lengthens:
            course = replace(course, cull=replace(course.cull, only_lengthens=True))
        notes = aalto_notes(
            course,
            main.data,
            roster.data if roster else None,
            self.images,
            default_instructors=self.default_instructors,
            cull_only_lengthens=self.aalto_cull_only_lengthens,
        )
        if notes:
            self.notes[slug] = notes
        self.courses[slug] = course
        self.index.add(course, self.rules)

    def use_images(self, table: ImageTable) -> None:
        """Check every course against ``table`` instead of the images file
        (``aaltohub images import`` before the file is written)."""
        self.images, self.images_error = table, None
        slugs = {_slug_of(n) for n in self._files if n != self.images_file}
        self.apply(ScanResult(changed_slugs=slugs))

    # --- queries ----------------------------------------------------------------
    def get(self, slug: str) -> Course | None:
        return self.courses.get(slug)

    @property
    def generation(self) -> int:
        """Changes whenever a course changed: caches of course data key on it."""
        return self.index.generation

    def offered_to(self, who: Viewer) -> list[tuple[Course, tuple[str, ...]]]:
        """Courses ``who`` may start, with roles, in display order (see
        ``offers.py``); reused for ``offer_cache_seconds``."""
        return self.index.offered_to(who, self.rules, self.offer_cache_seconds)

    def image_for(self, course: Course, role: str) -> str:
        """The image name for a course and role, aliases and series resolved."""
        ref = course.image
        if role == ROLE_INSTRUCTOR and course.image_instructor is not None:
            ref = course.image_instructor
        if ref is None:
            ref = self.default_image
        return self.images.resolve(ref) if ref else ""

    def warnings(self) -> list[str]:
        """Every behaviour difference from Aalto's hub, one line each."""
        return [
            f"course file {s}.yaml: {n}"
            for s in sorted(self.notes)
            for n in self.notes[s]
        ]

    def problems(self) -> list[str]:
        """Every current error, one line each (for validate and the log)."""
        out = [self.images_error] if self.images_error else []
        return out + [self.errors[s] for s in sorted(self.errors)]
