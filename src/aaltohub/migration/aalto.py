"""What changes for each course when Aalto's hub moves to aaltohub.

``aaltohub migrate aalto META_DIR`` prints this report. It reads Aalto's
``/courses/meta`` directory (course files, rosters and ``IMAGES.py``,
parsed without running it) and the Aalto hub's data directory for its hook
files, and writes nothing. A course "loses access" when it would not be
offered at all (a file aaltohub refuses, where Aalto skipped the bad file
and kept the rest) or when people who could start it on Aalto's hub could
not (``testcourse``); it "loses data" when Aalto's directories are not where
aaltohub mounts them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from ..catalog import CourseCatalog
from ..catalog.images_import import ImagesImport, import_images
from ..course import Course
from ..storage.paths import StoragePaths

#: Where Aalto's hub mounted a course's storage (jupyterhub_config.py).
AALTO_SUB_PATHS = {
    "course files": "course/{dir}/files",
    "course data": "course/{dir}/data",
    "exchange": "exchange/{dir}",
}
HOOK_FILES = ("hooks-all.py", "hooks-user/", "hooks-course/{slug}.py")


@dataclass
class CourseReport:
    slug: str
    name: str = ""
    offered: bool = True
    changes: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    loses_access: list[str] = field(default_factory=list)
    loses_data: list[str] = field(default_factory=list)

    @property
    def at_risk(self) -> bool:
        return bool(self.loses_access or self.loses_data)


@dataclass
class Report:
    meta_dir: str
    courses: list[CourseReport] = field(default_factory=list)
    #: Hub-wide findings: images, hook files.
    general: list[str] = field(default_factory=list)

    @property
    def at_risk(self) -> bool:
        return any(c.at_risk for c in self.courses)

    def as_dict(self) -> dict:
        return {
            "meta_dir": self.meta_dir,
            "at_risk": self.at_risk,
            "general": self.general,
            "courses": [{**asdict(c), "at_risk": c.at_risk} for c in self.courses],
        }


def _storage(course: Course, paths: StoragePaths, out: CourseReport) -> None:
    if course.gid is None and not course.datadir:
        out.changes.append("storage: none (no gid, no datadir), as on Aalto's hub")
        return
    ours = {
        "course files": paths.course_files(course),
        "course data": paths.course_data(course),
        "exchange": paths.exchange(course),
    }
    used = {
        "course files": course.has_instructor_mode,
        "course data": course.datadir,
        "exchange": course.has_instructor_mode,
    }
    for what, template in AALTO_SUB_PATHS.items():
        if not used[what]:
            continue
        theirs = template.format(dir=course.directory)
        if ours[what] == theirs:
            out.changes.append(f"mount {what}: {theirs} (unchanged)")
        else:
            out.loses_data.append(
                f"{what}: Aalto's hub used {theirs}, aaltohub mounts {ours[what]};"
                " move the directory or set c.StoragePaths to Aalto's layout"
            )
    owner = course.uid if course.uid is not None else "c.StorageLayout.course_uid"
    out.changes.append(
        f"owner of the course directories (aaltohub course create|check|fix): {owner}"
    )


def _access(course: Course, catalog: CourseCatalog, out: CourseReport) -> None:
    if course.archive:
        who = "nobody (archive: true hides it, as on Aalto's hub)"
    elif course.private:
        who = "its roster, instructors, groups and admins (private)"
    else:
        who = "everyone (public)"
    out.changes.append(
        f"offered to {who}; {len(course.students)} student(s),"
        f" {len(course.instructors)} instructor(s) listed, and members of"
        f" {catalog.rules.instructor_group(course)} as instructors"
    )
    if course.archived:
        out.changes.append(
            "archived: its directories are mounted read-only in its instructors'"
            " other servers only with InstructorCoursesHook (off by default)"
        )


def _images(course: Course, catalog: CourseCatalog, out: CourseReport) -> None:
    student = catalog.image_for(course, "student") or "the spawner's image"
    out.changes.append(f"image: {student}")
    if course.image_instructor is not None:
        out.changes.append(
            f"instructor image: {catalog.image_for(course, 'instructor')}"
        )
    cull = course.cull
    if cull.inactive_timeout is not None or cull.max_age is not None:
        rule = " (only lengthens the hub default)" if cull.only_lengthens else ""
        timeout, age = (
            "the hub default" if v is None else f"{v} s"
            for v in (cull.inactive_timeout, cull.max_age)
        )
        out.changes.append(f"cull limits: inactive {timeout}, max age {age}{rule}")


def _hook_files(slug: str, hub_dir: str | None, out: CourseReport) -> None:
    if hub_dir and os.path.exists(os.path.join(hub_dir, "hooks-course", f"{slug}.py")):
        out.unsupported.append(
            f"hooks-course/{slug}.py runs only with AaltoHookFilesHook (off by"
            " default); enable it or move what it does into the course file"
        )


def course_report(
    slug: str, catalog: CourseCatalog, paths: StoragePaths, hub_dir: str | None
) -> CourseReport:
    course = catalog.get(slug)
    if course is None:
        out = CourseReport(slug, offered=False)
        error = catalog.errors.get(slug, "not loaded")
        out.loses_access.append(
            f"not offered: {error} (Aalto's hub skipped the bad file and kept the"
            " rest of the course; aaltohub withholds the course until it is fixed)"
        )
        return out
    out = CourseReport(slug, name=course.name)
    _storage(course, paths, out)
    _access(course, catalog, out)
    _images(course, catalog, out)
    out.differences = list(catalog.notes.get(slug, []))
    if slug == "testcourse":
        out.loses_access.append(
            "instructors of other courses were instructors of testcourse on"
            " Aalto's hub and are not here; list them to keep their access"
        )
    _hook_files(slug, hub_dir, out)
    return out


def _load_images(meta_dir: str) -> ImagesImport | None:
    path = os.path.join(meta_dir, "IMAGES.py")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return import_images(f.read(1024 * 1024), "IMAGES.py")


def build_report(
    meta_dir: str,
    *,
    catalog: CourseCatalog | None = None,
    paths: StoragePaths | None = None,
    hub_dir: str | None = None,
) -> Report:
    """The report for every course of ``meta_dir``. Blocking; reads only."""
    catalog = catalog or CourseCatalog(path=meta_dir)
    report = Report(meta_dir)
    have_yaml = os.path.exists(os.path.join(meta_dir, catalog.images_file))
    imported = None if have_yaml else _load_images(meta_dir)
    if imported is not None:
        catalog.use_images(imported.table())  # before loading: checked with it
        report.general = [
            f"not converted from IMAGES.py: {s}" for s in imported.skipped
        ]
        if imported.old:
            report.general.append(
                f"{len(imported.old)} old-version profile(s) in IMAGES_OLD: add"
                " them to c.CourseSpawner.general_profiles"
            )
    catalog.load()
    if catalog.images_error:
        report.general.append(catalog.images_error)
    if hub_dir and os.path.exists(os.path.join(hub_dir, "hooks-all.py")):
        report.general.append(
            "hooks-all.py and hooks-user/*.py run only with AaltoHookFilesHook"
        )
    slugs = set(catalog.courses) | set(catalog.errors)
    report.courses = [
        course_report(s, catalog, paths or StoragePaths(), hub_dir)
        for s in sorted(slugs)
    ]
    return report
