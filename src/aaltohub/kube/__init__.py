"""The Kubernetes adapter: CourseSpawner, a KubeSpawner that applies the
course plan to the pod."""

from .spawner import CourseSpawner

__all__ = ["CourseSpawner"]
