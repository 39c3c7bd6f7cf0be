"""The deployer's named backends, and what each must be able to honour.

A backend is a name, a spawner class and that class's settings::

    c.CourseWrapSpawner.backends = {
        "kubernetes": {"spawner_class": "course"},
        "slurm": {
            "spawner_class": "course-slurm",
            "settings": {"storage_root": "/m/jupyter", "req_partition": "gpu"},
        },
    }

Every problem is found here, when the hub starts (``aaltohub
check-config`` and the hub's start check, and again when the first
CourseWrapSpawner is built), never in the middle of a user's spawn: a class
that is not a course adapter (it would skip the access check and the
plan), a setting the class does not have, or a plan part the class cannot
honour with these settings (the class's ``backend_problems``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from jupyterhub.spawner import Spawner
from traitlets.utils.importstring import import_item

from ..config_check import Problem, configured
from ..course import BACKEND_RE
from ..spawn import CourseSpawnMixin

KEY = "c.CourseWrapSpawner.backends"
DEFAULT_BACKENDS = {"kubernetes": {"spawner_class": "aaltohub.kube.CourseSpawner"}}
_ENTRY_KEYS = ("spawner_class", "settings")
#: Settings a built-in adapter cannot run without (it would refuse every spawn).
_REQUIRED = {"LocalCourseSpawner": ("storage_root", "servers_dir")}


@dataclass(frozen=True)
class Backend:
    """One named backend: the child spawner class and its settings."""

    name: str
    spawner_class: type
    settings: dict[str, Any] = field(default_factory=dict, hash=False)


def load_class(value) -> type:
    """A spawner class from a class, an entry-point name of
    ``jupyterhub.spawners`` (``course``) or a dotted import path."""
    if isinstance(value, type):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a class name")
    return _load_named(value)


@functools.lru_cache(maxsize=64)
def _load_named(value: str) -> type:
    # Cached: listing entry points reads every installed package's metadata
    # (~15 ms), and the hub builds one wrapper per user when it starts.
    for ep in entry_points(group="jupyterhub.spawners"):
        if ep.name == value:
            return ep.load()
    return import_item(value)


def setting(cls: type, settings: dict, config, name: str):
    """What ``name`` will be on a child of ``cls``: the backend's settings
    first, then the hub's config for the class, then the class default."""
    if name in settings:
        return settings[name]
    trait = cls.class_traits().get(name)
    default = trait.default_value if trait is not None else None
    return configured(config, cls, name, default)


def parse(definitions: dict, config) -> tuple[dict[str, Backend], list[Problem]]:
    """The usable backends of ``definitions`` and the problems of the rest."""
    backends: dict[str, Backend] = {}
    problems: list[Problem] = []
    for name, entry in definitions.items():
        where = f"{KEY}[{name!r}]"
        found = _entry_problems(name, entry, where)
        if not found:
            backend, found = _backend(name, entry, where, config)
            if backend is not None:
                backends[name] = backend
        problems += found
    return backends, problems


def _entry_problems(name, entry, where: str) -> list[Problem]:
    if not isinstance(name, str) or not BACKEND_RE.fullmatch(name):
        return [
            Problem(
                where,
                "is not a usable backend name",
                "name backends with lowercase letters, digits, '-' and '_'"
                " (course files refer to them as backend: <name>)",
            )
        ]
    if not isinstance(entry, dict) or "spawner_class" not in entry:
        return [
            Problem(
                where,
                "must be a dict with 'spawner_class' (and optional 'settings')",
                "write {'spawner_class': 'course', 'settings': {...}}",
            )
        ]
    unknown = sorted(set(entry) - set(_ENTRY_KEYS))
    settings = entry.get("settings", {})
    if unknown or not isinstance(settings, dict):
        return [
            Problem(
                where,
                f"has unknown keys {unknown}"
                if unknown
                else "has settings that are not a dict of option names to values",
                "keep only 'spawner_class' and 'settings' (a dict of the class's"
                " options)",
            )
        ]
    return []


def _backend(name: str, entry: dict, where: str, config):
    try:
        cls = load_class(entry["spawner_class"])
    except (ImportError, AttributeError, ValueError) as e:
        return None, [
            Problem(
                f"{where}['spawner_class']",
                f"cannot be loaded: {e}",
                "use an installed entry-point name ('course', 'course-local',"
                " 'course-slurm') or a full import path, and check the package"
                " (e.g. batchspawner) is installed in the hub",
            )
        ]
    if not (isinstance(cls, type) and issubclass(cls, Spawner)) or not issubclass(
        cls, CourseSpawnMixin
    ):
        return None, [
            Problem(
                f"{where}['spawner_class']",
                f"is {cls!r}, which is not a course spawner: it would skip the"
                " server-side access check and the spawn plan",
                "use CourseSpawner, LocalCourseSpawner, SlurmCourseSpawner or"
                " your own class with aaltohub.spawn.CourseSpawnMixin first in"
                " its bases",
            )
        ]
    settings = dict(entry.get("settings", {}))
    options = cls.class_trait_names(config=True)
    problems = [
        Problem(
            f"{where}['settings'][{key!r}]",
            f"is not an option of {cls.__name__}, so it would be ignored",
            "correct the name; every option is listed in docs/reference.md",
        )
        for key in sorted(str(k) for k in settings)
        if key not in options
    ]
    problems += honour_problems(cls, settings, config, where)
    return Backend(name, cls, settings), problems


def honour_problems(cls: type, settings: dict, config, where: str) -> list[Problem]:
    """What the class says it cannot honour with these settings."""
    value: Callable[[str], Any] = lambda n: setting(cls, settings, config, n)  # noqa: E731
    problems = []
    for klass in cls.__mro__:
        for name in _REQUIRED.get(klass.__name__, ()):
            if not value(name):
                problems.append(
                    Problem(
                        f"{where}['settings'][{name!r}]",
                        f"is not set, and {cls.__name__} cannot prepare a"
                        " server's storage without it",
                        f"set it in the backend's settings or as c.{cls.__name__}."
                        f"{name}",
                    )
                )
    check = getattr(cls, "backend_problems", None)
    if check is not None:
        for message, fix in check(value):
            problems.append(Problem(where, message, fix))
    return problems


def backend_problems(
    definitions: dict, default: str, config, general_profiles: Iterable[dict] = ()
) -> list[Problem]:
    """Every problem of a CourseWrapSpawner's backends, for the start check."""
    return check_backends(definitions, default, config, general_profiles)[1]


def check_backends(
    definitions: dict, default: str, config, general_profiles: Iterable[dict] = ()
) -> tuple[dict[str, Backend], list[Problem]]:
    """The usable backends and every problem of the definitions."""
    backends, problems = parse(definitions, config)
    if default not in definitions:
        problems.append(
            Problem(
                "c.CourseWrapSpawner.default_backend",
                f"is {default!r}, which {KEY} does not define",
                f"define it, or set default_backend to one of {sorted(definitions)}",
            )
        )
    for i, profile in enumerate(general_profiles):
        name = profile.get("backend") if isinstance(profile, dict) else None
        if name is not None and name not in definitions:
            problems.append(
                Problem(
                    f"c.CourseSpawnMixin.general_profiles[{i}]['backend']",
                    f"is {name!r}, which {KEY} does not define",
                    f"use one of {sorted(definitions)}, or remove the key",
                )
            )
    return backends, problems
