"""aaltohub: pluggable JupyterHub extensions for university course hubs.

Public names are imported lazily, so ``import aaltohub`` (and the CLI) stay
fast and do not pull in kubespawner unless CourseSpawner is used.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "CourseCatalog": "aaltohub.catalog",
    "Course": "aaltohub.course",
    "CourseSpawner": "aaltohub.kube",
    "StoragePaths": "aaltohub.storage.paths",
    "ServerRecord": "aaltohub.servers",
    "LocalCourseSpawner": "aaltohub.local",
    "CourseWrapSpawner": "aaltohub.wrap",
    "Identity": "aaltohub.identity",
    "LDAPIdentity": "aaltohub.identity",
    "NSSIdentity": "aaltohub.identity",
    "StaticIdentity": "aaltohub.identity",
    "LDAPIdentityAuthenticator": "aaltohub.auth",
    "IdentityAuthenticatorMixin": "aaltohub.auth",
    "SpawnHook": "aaltohub.hooks",
    "SpawnPlan": "aaltohub.plan",
    "SpawnContext": "aaltohub.plan",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'aaltohub' has no attribute {name!r}")
