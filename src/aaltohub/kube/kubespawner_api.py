"""The KubeSpawner internals CourseSpawner relies on, and nothing else.

KubeSpawner has no public call for "apply this one profile", "render your
form for this list" or "expand ``{username}`` like you do"; it has private
methods. Every use of them is
here, so a kubespawner upgrade that changes them breaks one small module,
and ``tests/test_kubespawner_api.py`` says which name changed. The same
goes for the order of KubeSpawner's start that the fail-fast watch relies
on (:data:`START_SEQUENCE`).

Tested with kubespawner 7.x (``pyproject.toml`` pins ``<8``).
"""

from __future__ import annotations

import asyncio
import inspect

from kubespawner import KubeSpawner

TESTED_MAJOR = 7

#: private method -> the parameters CourseSpawner passes to it.
REQUIRED = {
    "_get_initialized_profile_list": ("profile_list",),
    "_validate_user_options": ("profile_list",),
    "_load_profile": ("slug", "profile_list"),
    "_expand_user_properties": ("template",),
    "_render_options_form": ("profile_list",),
}


#: CourseSpawner's fail-fast watch calls no private method, but relies on
#: the order of KubeSpawner's start: method -> what its source does, in order.
#: start() runs _start() as the future progress() follows; _start() loads
#: its reflectors, asks for the manifest, then creates the pod (so a pod of
#: our name seen at get_pod_manifest() is a leftover); on 409 Conflict the
#: create request stop()s the leftover and retries.
START_SEQUENCE = {
    "start": ("self._start_future = asyncio.ensure_future(self._start())",),
    "progress": ("self._start_future", "start_future.done()"),
    "_start": (
        "await self.load_user_options()",
        "self._start_watching_pods()",
        "await self.get_pod_manifest()",
        "self._make_create_pod_request",
        "self.is_pod_running(",
    ),
    "_make_create_pod_request": (
        "e.status != 409",
        "await self.stop(True)",
        "return False",
    ),
}


def incompatibilities(cls: type = KubeSpawner) -> list[str]:
    """What is missing or changed in ``cls``, in words (empty: all fine)."""
    problems = _sequence_changes(cls)
    for name, params in REQUIRED.items():
        method = getattr(cls, name, None)
        if not callable(method):
            problems.append(f"KubeSpawner.{name} no longer exists")
            continue
        have = list(inspect.signature(method).parameters)[1:]  # without self
        if have[: len(params)] != list(params):
            problems.append(
                f"KubeSpawner.{name} takes {have}, expected {list(params)} first"
            )
    return problems


def _sequence_changes(cls: type) -> list[str]:
    problems = []
    for name, steps in START_SEQUENCE.items():
        try:
            source = inspect.getsource(getattr(cls, name))
        except (AttributeError, OSError, TypeError):
            problems.append(f"KubeSpawner.{name} no longer exists (or has no source)")
            continue
        at = 0
        for step in steps:
            at = source.find(step, at)
            if at < 0:
                problems.append(f"KubeSpawner.{name} no longer does {step!r} in order")
                break
    return problems


def apply_profile(spawner: KubeSpawner, profile: dict) -> None:
    """Apply one profile's options and overrides as KubeSpawner's own
    ``load_user_options`` would, without listing every profile."""
    profiles = spawner._get_initialized_profile_list([profile])
    spawner._validate_user_options(profiles)
    spawner._load_profile(profiles[0]["slug"], profiles)


def expand_user_properties(spawner: KubeSpawner, template: str) -> str:
    """``{username}`` and friends, escaped as KubeSpawner names pods."""
    return spawner._expand_user_properties(template)


def render_options_form(spawner: KubeSpawner, profiles: list[dict]) -> str:
    """KubeSpawner's own options form (its template and JavaScript) for a
    given profile list."""
    return spawner._render_options_form(profiles)


_STOPPING: set[asyncio.Future] = set()


def forget_failed_reflectors(spawner: KubeSpawner) -> list[str]:
    """Stop and forget the shared reflectors whose first list failed (e.g.
    RBAC refused it): KubeSpawner keeps them, and later spawns would wait
    start_timeout for events they never deliver. Returns their kinds."""
    kinds = []
    for key, reflector in list(spawner.reflectors.items()):
        loaded = reflector.first_load_future
        if loaded.done() and not loaded.cancelled() and loaded.exception():
            del spawner.reflectors[key]
            stopping = asyncio.ensure_future(reflector.stop())
            _STOPPING.add(stopping)  # keep a reference until it is done
            stopping.add_done_callback(_STOPPING.discard)
            kinds.append(reflector.kind)
    return kinds
