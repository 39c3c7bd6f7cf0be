"""The local backend: course servers as local processes (demo, non-k8s sites)."""

from .profiles_form import CourseProfilesMixin, profile_form
from .spawner import LocalCourseSpawner

__all__ = ["CourseProfilesMixin", "LocalCourseSpawner", "profile_form"]
