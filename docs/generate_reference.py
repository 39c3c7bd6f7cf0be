"""Write docs/reference.md from the traitlets help of every public class.

Run with ``tox -e docs`` (or ``python docs/generate_reference.py``); the
test suite checks that the committed file is up to date.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

CLASSES = [
    "aaltohub.kube:CourseSpawner",
    "aaltohub.catalog:CourseCatalog",
    "aaltohub.storage.paths:StoragePaths",
    "aaltohub.identity:LDAPIdentity",
    "aaltohub.identity:NSSIdentity",
    "aaltohub.identity:StaticIdentity",
    "aaltohub.auth:IdentityAuthenticatorMixin",
    "aaltohub.auth:LDAPIdentityAuthenticator",
    "aaltohub.hooks:UIDHook",
    "aaltohub.hooks:HomeHook",
    "aaltohub.hooks:CourseMountsHook",
    "aaltohub.hooks:NbgraderHook",
    "aaltohub.hooks:GitIdentityHook",
    "aaltohub.hooks:ResourcesHook",
    "aaltohub.hooks:ThreadsHook",
    "aaltohub.hooks:EnvironmentHook",
    "aaltohub.hooks.quota:QuotaHook",
    "aaltohub.hooks.provision:ProvisionHomeHook",
    "aaltohub.hooks.instructor_courses:InstructorCoursesHook",
    "aaltohub.hooks.aalto_hook_files:AaltoHookFilesHook",
    "aaltohub.local:LocalCourseSpawner",
    "aaltohub.wrap:CourseWrapSpawner",
    "aaltohub.slurm:SlurmCourseSpawner",
    "aaltohub.storage:StorageLayout",
    "aaltohub.storage:LocalHomeProvisioner",
    "aaltohub.storage:RemoteCommandHomeProvisioner",
    "aaltohub.storage:ReportFileQuota",
    "aaltohub.storage:StatvfsQuota",
    "aaltohub.storage.quota_policy:QuotaPolicy",
    "aaltohub.web.quota:QuotaWarnings",
    "aaltohub.announcements:Announcements",
    "aaltohub.retention:Retention",
    "aaltohub.web.announcements:AnnouncementBoard",
    "aaltohub.kube.capacity_monitor:CapacityMonitor",
    "aaltohub.web.course_page:CoursePage",
]

# Only the options a class adds; inherited JupyterHub/KubeSpawner options are
# documented upstream.
INHERITED_FROM = (
    "jupyterhub.",
    "kubespawner.",
    "traitlets.",
    "wrapspawner.",
    "batchspawner.",
)


def load(spec: str):
    # A class that moved must fail here, not vanish from the reference.
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def own_traits(cls):
    for name, trait in sorted(cls.class_traits(config=True).items()):
        owner = next(k for k in cls.__mro__ if name in vars(k))
        if owner.__module__.startswith(INHERITED_FROM):
            continue
        yield name, trait


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from the code by `docs/generate_reference.py`; do not edit.",
        "Every option is a traitlets trait, so `jupyterhub --help-all` shows it too.",
        "",
    ]
    for spec in CLASSES:
        cls = load(spec)
        out += [f"## `{cls.__module__}.{cls.__name__}`", ""]
        doc = inspect.getdoc(cls) or ""
        out += [doc.split("\n\n")[0], ""]
        for name, trait in own_traits(cls):
            default = trait.default_value_repr()
            help_text = " ".join((trait.help or "").split())
            out.append(f"- **`c.{cls.__name__}.{name}`** ({type(trait).__name__},")
            out.append(f"  default `{default}`): {help_text}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    target = Path(__file__).with_name("reference.md")
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if target.exists() and target.read_text() == text else 1)
    target.write_text(text)
    print(f"wrote {target}")
