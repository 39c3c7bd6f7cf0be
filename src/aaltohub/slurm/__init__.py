"""The Slurm backend: course servers as batch jobs (needs batchspawner)."""

from . import api
from .spawner import SlurmCourseSpawner

# After batchspawner's import added its own handler at the same route.
api.register()

__all__ = ["SlurmCourseSpawner"]
