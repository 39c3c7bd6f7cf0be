"""Per-course backends: CourseWrapSpawner runs each course's servers on the
backend its course file names (wrapspawner's WrapSpawner underneath)."""

from .backends import Backend, backend_problems
from .spawner import BackendConfigError, CourseWrapSpawner

__all__ = ["Backend", "BackendConfigError", "CourseWrapSpawner", "backend_problems"]
