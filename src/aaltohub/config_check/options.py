"""Unknown options: settings that no aaltohub class reads.

traitlets ignores a misspelt option (``c.StoragePaths.home_sub_pth``) or a
section that is no class (``c.StoragePath``) without a word, so the hub
would run with the default instead of what the deployer wrote. These
checks name such keys and the likely intended name. Old names that still
work (a class's ``MOVED``) are not reported.
"""

from __future__ import annotations

import difflib
import importlib

from traitlets.config import Config, Configurable

from .problems import Problem

# Modules whose configurable classes are aaltohub's. Imported on demand; a
# module whose optional dependency is missing is skipped.
CONFIGURABLE_MODULES = """
    aaltohub.auth aaltohub.spawn aaltohub.catalog aaltohub.identity
    aaltohub.hooks aaltohub.hooks.provision aaltohub.hooks.quota
    aaltohub.storage aaltohub.storage.layout aaltohub.storage.paths
    aaltohub.storage.quota aaltohub.storage.quota_policy
    aaltohub.storage.user_dirs aaltohub.web.quota aaltohub.kube aaltohub.local
    aaltohub.demo.auth aaltohub.wrap aaltohub.slurm
    aaltohub.announcements aaltohub.web.announcements
""".split()  # noqa: SIM905 (one word per module, short)


def aaltohub_classes() -> dict[str, list[type]]:
    """aaltohub's configurable classes by name (importing their modules)."""
    for name in CONFIGURABLE_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue  # an optional dependency (kubespawner...) is missing
    out: dict[str, list[type]] = {}
    for cls in _all_configurables():
        if cls.__module__.startswith("aaltohub."):
            out.setdefault(cls.__name__, []).append(cls)
    return out


def _all_configurables() -> set[type]:
    seen: set[type] = set()
    todo = [Configurable]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return seen


def _moved_names() -> dict[str, set[str]]:
    """Old option names that still work (with a DeprecationWarning)."""
    out: dict[str, set[str]] = {}
    for classes in aaltohub_classes().values():
        for cls in classes:
            for old_class, old_name in getattr(cls, "MOVED", {}):
                out.setdefault(old_class, set()).add(old_name)
    return out


def unknown_keys(config: Config) -> list[Problem]:
    """Options no aaltohub class has, and near-misses of aaltohub class names."""
    ours = aaltohub_classes()
    moved = _moved_names()
    known = {cls.__name__ for cls in _all_configurables()}
    problems = []
    for section in sorted(config):
        if not section[:1].isupper():
            continue
        if section in ours:
            allowed = set().union(
                *(c.class_trait_names(config=True) for c in ours[section])
            ) | moved.get(section, set())
            for key in sorted(config[section]):
                if key[:1].isupper() or key in allowed:
                    continue
                problems.append(_unknown_option(section, key, allowed))
        elif section not in known:
            close = difflib.get_close_matches(section, list(ours), n=1, cutoff=0.85)
            if close:
                problems.append(
                    Problem(
                        f"c.{section}",
                        "is not a configurable class, so none of its settings is used",
                        f"did you mean c.{close[0]}? Rename the section.",
                    )
                )
    return problems


def _unknown_option(section: str, key: str, allowed: set[str]) -> Problem:
    close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
    hint = f"did you mean c.{section}.{close[0]}? " if close else ""
    return Problem(
        f"c.{section}.{key}",
        f"is not an option of {section}, so the setting is ignored",
        f"{hint}Correct the name; every option is listed in docs/reference.md",
    )
