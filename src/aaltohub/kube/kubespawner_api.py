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

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader
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
    # render_options_form() renders KubeSpawner's form template as this does,
    # with a cached template instead of a new jinja Environment per page.
    "_render_options_form": (
        "profile_list = self._get_initialized_profile_list(profile_list)",
        "FileSystemLoader(self.additional_profile_form_template_paths)",
        'PackageLoader("kubespawner", "templates")',
        "env.policies['json.dumps_kwargs'] = {'sort_keys': False}",
        'if self.profile_form_template != "":',
        "env.from_string(self.profile_form_template)",
        'env.get_template("form.html")',
        "profile_form_template.render(",
        "profile_list=profile_list",
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
    given profile list: the same HTML as ``_render_options_form``, at a
    fraction of its cost with hundreds of courses.

    KubeSpawner builds a new jinja Environment, so compiles its template,
    and deep-copies the whole list on every page; both are most of the
    spawn page's hub CPU with ~700 profiles. Here the compiled template is
    kept per (template, paths), and only profiles that need KubeSpawner's
    initialisation (no slug, or profile_options) are copied and initialised
    by KubeSpawner itself. tests/test_kubespawner_api.py compares the HTML
    with KubeSpawner's own for each kind of list."""
    profile_list = initialized_profiles(spawner, profiles)
    user_options = spawner.user_options or {}
    if user_options:
        # As KubeSpawner: stale or API-set options only cost a warning.
        try:
            spawner._validate_user_options(profile_list)
        except ValueError as e:
            spawner.log.warning(
                "Not pre-selecting saved user_options on the spawn form"
                " because they failed validation: %s",
                e,
            )
    template = _form_template(
        spawner.profile_form_template,
        tuple(spawner.additional_profile_form_template_paths),
    )
    return template.render(profile_list=profile_list, user_options=user_options)


def initialized_profiles(spawner: KubeSpawner, profiles: list[dict]) -> list[dict]:
    """``_get_initialized_profile_list`` without copying what needs nothing:
    a profile with a slug and no ``profile_options`` is used as is (the form
    only reads it); the others are initialised by KubeSpawner, one by one."""
    out = []
    for profile in profiles:
        if "slug" in profile and not profile.get("profile_options"):
            out.append(profile)
            continue
        done = spawner._get_initialized_profile_list([profile])[0]
        # a one-item list got the "first is default" rule: undo it here,
        # and apply the rule to the whole list below
        if "default" in profile:
            done["default"] = profile["default"]
        else:
            done.pop("default", None)
        out.append(done)
    if out and not any(p.get("default") for p in out):
        out[0] = {**out[0], "default": True}
    return out


_FORM_ENVIRONMENTS: dict[tuple[str, ...], Environment] = {}
_FORM_STRINGS: dict[tuple, object] = {}


def _form_template(template_text: str, paths: tuple[str, ...]):
    env = _FORM_ENVIRONMENTS.get(paths)
    if env is None:
        loader = ChoiceLoader(
            [FileSystemLoader(list(paths)), PackageLoader("kubespawner", "templates")]
        )
        # No autoescape, as KubeSpawner's own (the HTML must be the same):
        # the text of course files is escaped when profiles are built
        # (profiles.ProfileBuilder); the deployer's own profiles are trusted.
        env = _FORM_ENVIRONMENTS[paths] = Environment(loader=loader)  # noqa: S701
        # KubeSpawner's policy: profiles keep the order the admin gave them
        env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    if template_text == "":
        # jinja's own cache: a form.html edited on disk is picked up
        return env.get_template("form.html")
    key = (template_text, paths)
    if key not in _FORM_STRINGS:
        _FORM_STRINGS[key] = env.from_string(template_text)
    return _FORM_STRINGS[key]


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
