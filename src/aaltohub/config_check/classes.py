"""The hub's authenticator and spawner classes, as the config names them.

The other checks need the classes (and an authenticator instance) that
``c.JupyterHub.authenticator_class`` and ``spawner_class`` name, and a
name that cannot be loaded is itself a problem: the hub would fail at
start with an import error. Building these starts and connects to
nothing. :func:`configured` reads a setting as traitlets would, without
creating the class; :func:`spawner_config_problems` asks a spawner class
that checks its own config (CourseWrapSpawner).
"""

from __future__ import annotations

from importlib.metadata import entry_points

from traitlets.config import Config
from traitlets.utils.importstring import import_item

from .problems import NAME_FIX, TRAIT_FIX, Problem


def _resolve(value, group: str):
    """A class from a class, an entry-point name or a dotted import path."""
    if isinstance(value, type):
        return value
    for ep in entry_points(group=group):
        if ep.name == value:
            return ep.load()
    return import_item(value)


def hub_authenticator(config: Config, given):
    """The hub's authenticator, or one built from the config (no I/O)."""
    if given is not None:
        return given, []
    value = config.get("JupyterHub", {}).get("authenticator_class")
    if value is None:
        return None, []  # JupyterHub's default (PAM): nothing of ours
    key = "c.JupyterHub.authenticator_class"
    try:
        cls = _resolve(value, "jupyterhub.authenticators")
    except (ImportError, AttributeError, ValueError) as e:
        return None, [Problem(key, f"{value!r} cannot be loaded: {e}", NAME_FIX)]
    try:
        return cls(config=config), []
    except Exception as e:
        # TraitError, or a third-party class checking its own settings
        problem = f"cannot be created: {type(e).__name__}: {e}"
        return None, [Problem(key, problem, TRAIT_FIX)]


def hub_spawner_class(config: Config):
    value = config.get("JupyterHub", {}).get("spawner_class")
    if value is None:
        return None, []
    try:
        return _resolve(value, "jupyterhub.spawners"), []
    except (ImportError, AttributeError, ValueError) as e:
        key = "c.JupyterHub.spawner_class"
        return None, [Problem(key, f"{value!r} cannot be loaded: {e}", NAME_FIX)]


def spawner_config_problems(config: Config, spawner_cls) -> list[Problem]:
    """What the spawner class finds wrong in the config, if it checks
    (CourseWrapSpawner: its backends and what each can honour)."""
    check = getattr(spawner_cls, "config_problems", None)
    return list(check(config)) if callable(check) else []


def configured(config: Config, cls: type, name: str, default=None):
    """The value traitlets would give ``cls.name`` from ``config``: the most
    specific class section in the MRO that sets it, else ``default``."""
    value = default
    for klass in reversed(cls.mro()):
        section = config.get(klass.__name__) if klass.__name__ in config else None
        if section is not None and name in section:
            value = section[name]
    return value
