"""Spawn hooks: one class per concern, applied in order to a SpawnPlan."""

from .aalto_hook_files import AaltoHookFilesHook
from .base import SpawnHook, run_hooks
from .course_mounts import CourseMountsHook
from .environment import EnvironmentHook
from .git_identity import GitIdentityHook
from .home import HomeHook
from .instructor_courses import InstructorCoursesHook
from .nbgrader import NbgraderHook
from .resources import ResourcesHook
from .threads import ThreadsHook
from .uid import UIDHook

#: The default order. Later hooks may read what earlier ones planned
#: (ThreadsHook reads ResourcesHook's CPU limit). Opt-in, not listed:
#: InstructorCoursesHook and AaltoHookFilesHook (Aalto compatibility, see
#: docs/migrating-from-aalto.md).
DEFAULT_HOOKS = [
    UIDHook,
    HomeHook,
    CourseMountsHook,
    NbgraderHook,
    GitIdentityHook,
    ResourcesHook,
    ThreadsHook,
    EnvironmentHook,
]

__all__ = [
    "DEFAULT_HOOKS",
    "AaltoHookFilesHook",
    "CourseMountsHook",
    "EnvironmentHook",
    "GitIdentityHook",
    "HomeHook",
    "InstructorCoursesHook",
    "NbgraderHook",
    "ResourcesHook",
    "SpawnHook",
    "ThreadsHook",
    "UIDHook",
    "run_hooks",
]
