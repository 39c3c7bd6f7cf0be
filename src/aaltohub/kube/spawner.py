"""CourseSpawner: a KubeSpawner whose profiles are the user's courses.

It stays a drop-in KubeSpawner: every KubeSpawner option (and so every
z2jh ``singleuser.*`` setting) still applies; the course plan is added on
top, in ``load_user_options()``, after KubeSpawner has applied the chosen
profile's overrides (kubespawner issue 339).
"""

from __future__ import annotations

import copy

from jupyterhub.utils import maybe_future
from kubespawner import KubeSpawner
from kubespawner.slugs import multi_slug, safe_slug
from slugify import slugify
from traitlets import Unicode, default

from ..plan import NFS_VOLUME, SpawnPlan
from ..spawn import CourseSpawnMixin
from ..spawn_events import SpawnEventsMixin
from . import capacity_monitor, kubespawner_api
from .starting import FailFastStartMixin

#: Traits a spawn never changes whose dynamic default does real work
#: (reading them renders the options form): not remembered.
_NOT_REMEMBERED = frozenset({"options_form", "options_from_form"})

FILES_VOLUME = "aaltohub-files"
ANNOTATION_PREFIX = "aaltohub/file."


_REMEMBERED_NAMES: dict[type, tuple[str, ...]] = {}


def _remembered_names(cls: type, spawner) -> tuple[str, ...]:
    """The configurable traits a spawn remembers, listed once per class
    (traitlets scans every trait's metadata on each ``trait_names`` call)."""
    names = _REMEMBERED_NAMES.get(cls)
    if names is None:
        names = tuple(
            n for n in spawner.trait_names(config=True) if n not in _NOT_REMEMBERED
        )
        _REMEMBERED_NAMES[cls] = names
    return names


def _literal(value):
    """Protect text from KubeSpawner's ``{field}`` template expansion."""
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    return value


def _annotation_key(path: str) -> str:
    return ANNOTATION_PREFIX + path.replace("/", ".")


class CourseSpawner(
    SpawnEventsMixin, CourseSpawnMixin, FailFastStartMixin, KubeSpawner
):
    """KubeSpawner with course profiles, server-side access checks, and
    per-course mounts, identity and configuration."""

    storage_claim = Unicode(
        "jupyter-nfs",
        help="""PersistentVolumeClaim of the campus NFS share that homes,
        course files, course data and exchanges are sub-paths of.""",
    ).tag(config=True)

    pod_name_course_template = Unicode(
        "jupyter-{username}-{course}",
        help="""Pod name of a course server. ``{username}`` is KubeSpawner's
        safe slug of the user name; ``{course}`` the course slug. Named
        servers get ``-{servername}`` appended.""",
    ).tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._plan: SpawnPlan | None = None
        self._remembered: dict = {}
        self._empty_at_start: set[str] = set()
        self._own_profiles: tuple | None = None
        # The hub's capacity metrics start with its first spawner, whose
        # Kubernetes client they borrow (off unless configured).
        capacity_monitor.watch(self)

    # --- the options form: KubeSpawner's own, over the combined list ------------
    @default("options_form")
    def _options_form_default(self):
        if not self.course_mode:
            return super()._options_form_default()
        return self._render_course_options_form

    async def _render_course_options_form(self, spawner=None) -> str:
        profiles = await self.course_profiles()
        if not profiles:
            return ""
        return kubespawner_api.render_options_form(self, profiles)

    async def own_profiles(self) -> list[dict]:
        """KubeSpawner's ``profile_list`` (a list, a dict or a callable, set
        in config or later by a hook), read now, with KubeSpawner's slugs.

        A callable is called once per spawn (and again only if a hook sets
        another list), so every check of one spawn sees the same list."""
        configured = self.profile_list
        if self._own_profiles is not None and self._own_profiles[0] is configured:
            return self._own_profiles[1]
        profiles = configured
        if callable(profiles):
            profiles = await maybe_future(profiles(self))
        if isinstance(profiles, dict):
            profiles = [profiles[key] for key in sorted(profiles)]
        found = [
            p if "slug" in p else {**p, "slug": slugify(p["display_name"])}
            for p in profiles or []
        ]
        self._own_profiles = (configured, found)
        return found

    # --- no leaks between spawns -------------------------------------------------
    def _remember_config(self) -> None:
        """Remember every configured value before this spawn changes any.

        JupyterHub reuses the spawner object for every start of a server,
        and KubeSpawner merges group and profile overrides into trait dicts
        in place. So each container trait gets a private copy for this spawn
        (nothing mutates the hub's config), and the next clear_state() puts
        the remembered values back. Done in clear_state(), which JupyterHub
        calls first in every spawn, before group overrides, user options and
        hooks; never at construction, so values set later (a per-user
        profile_list from a hook) are read when used.
        """
        remembered, empty = {}, set()
        for name in _remembered_names(type(self), self):
            value = getattr(self, name)
            remembered[name] = value
            if isinstance(value, dict | list):
                if value:
                    setattr(self, name, copy.deepcopy(value))
                else:
                    # Most of KubeSpawner's ~40 container traits are empty:
                    # keep them (a setattr each was most of this method's
                    # cost) and empty them again in _restore_config if this
                    # spawn filled them in place.
                    empty.add(name)
        self._remembered, self._empty_at_start = remembered, empty

    def _restore_config(self) -> None:
        empty = self._empty_at_start
        for name, value in self._remembered.items():
            current = getattr(self, name)
            if current is not value:
                setattr(self, name, value)
            elif name in empty and current:
                current.clear()
        self._remembered, self._empty_at_start = {}, set()

    def clear_state(self):
        self._restore_config()
        self._plan = None
        self._own_profiles = None
        self.start_notices = []
        super().clear_state()
        self._remember_config()

    # --- the spawn sequence --------------------------------------------------------
    async def run_pre_spawn_hook(self):
        # The deployer's own hook first: it may set a per-user profile_list,
        # which decides what the chosen slug means. Then the check, here as
        # well as in the form, because API spawns skip the form (start()
        # checks once more, as the last gate).
        result = await maybe_future(super().run_pre_spawn_hook())
        if self.course_mode:
            profile = (self.user_options or {}).get("profile")
            choice = await self.authorize(await self.effective_profile(profile))
            own = await self.own_profiles()
            self.check_user_options(self.selected_profile(choice, own))
        return result

    async def load_user_options(self):
        # Inside start(), after JupyterHub's pre-spawn steps: the last gate,
        # and late enough that profile overrides cannot undo the plan.
        if not self._remembered:
            self._remember_config()  # a start without clear_state (tests, tools)
        if not self.course_mode:
            await super().load_user_options()
            return
        await self.plan_spawn()

    async def before_plan(self, choice) -> None:
        """Apply the chosen profile's overrides and options as KubeSpawner
        does, from that one profile: listing every course again would make
        each spawn pay for the whole catalog."""
        chosen = self.selected_profile(choice, await self.own_profiles())
        if chosen is not None:
            kubespawner_api.apply_profile(self, chosen)

    async def apply_plan(self, plan: SpawnPlan, course, role) -> dict:
        self._plan = plan
        self.uid, self.gid = plan.uid, plan.gid
        self.supplemental_gids = list(plan.supplemental_gids)
        self.fs_gid = None  # NFS ignores fsGroup; never chown the share
        if not plan.start_as_root:
            self.allow_privilege_escalation = False
            if isinstance(self.container_security_context, dict):
                self.container_security_context = {
                    **self.container_security_context,
                    "runAsNonRoot": True,
                }
        for name, value in vars(plan.resources).items():
            if value is not None:
                setattr(self, name, value)
        if plan.image:
            self.image = plan.image
        else:
            plan.image = self.image  # what the record says the server runs
        if plan.default_url:
            self.default_url = plan.default_url
        if plan.working_dir:
            self.working_dir = plan.working_dir
        self._add_volumes(plan)
        self.extra_labels = {**self.extra_labels, **plan.labels}
        self.extra_annotations = {
            **self.extra_annotations,
            **{_annotation_key(p): _literal(t) for p, t in plan.files.items()},
        }
        if course is not None:
            self.pod_name = self._course_pod_name(course.slug)
            self.dns_name = self.dns_name_template.format(
                namespace=self.namespace, name=self.pod_name
            )
        return {}

    def _add_volumes(self, plan: SpawnPlan) -> None:
        volumes = [
            {
                "name": NFS_VOLUME,
                "persistentVolumeClaim": {"claimName": self.storage_claim},
            }
        ]
        if plan.files:
            volumes.append(
                {
                    "name": FILES_VOLUME,
                    "downwardAPI": {
                        "defaultMode": 0o444,
                        "items": [
                            {
                                "path": path,
                                "fieldRef": {
                                    "fieldPath": "metadata.annotations"
                                    f"['{_annotation_key(path)}']"
                                },
                            }
                            for path in sorted(plan.files)
                        ],
                    },
                }
            )
        mounts = [
            {
                "name": m.volume,
                "mountPath": m.target,
                "subPath": _literal(m.sub_path),
                "readOnly": m.read_only,
            }
            for m in plan.mounts
        ]
        if plan.files:
            mounts.append(
                {"name": FILES_VOLUME, "mountPath": self.files_root, "readOnly": True}
            )
        # A deployer's own definition of the NFS volume wins; course mounts
        # win over configured mounts at the same path.
        self.volumes = _merge(self.volumes, volumes, "name", replace=False)
        self.volume_mounts = _merge(self.volume_mounts, mounts, "mountPath", True)

    def _course_pod_name(self, course: str) -> str:
        username = kubespawner_api.expand_user_properties(self, "{username}")
        name = self.pod_name_course_template.format(username=username, course=course)
        if self.name:
            name = f"{name}-{safe_slug(self.name, max_length=20)}"
        if len(name) > 63:
            name = "jupyter-" + multi_slug([self.user.name, course, self.name], 55)
        return name

    async def progress(self):
        """KubeSpawner's progress events, with the plan's notices (e.g. a
        quota warning) and the start's own (a leftover pod replaced) shown
        on the spawn-pending page as they appear."""
        sent = 0
        try:
            async for event in super().progress():
                plan = self._plan.notices if self._plan is not None else []
                notices = plan + self.start_notices
                for notice in notices[sent:]:
                    yield {"progress": event.get("progress", 0), "message": notice}
                sent = len(notices)
                yield event
        except Exception as e:
            # E.g. the API server is unreachable. Ending the events quietly
            # lets JupyterHub show the start's own failure message, which
            # says why; an exception here would break the page instead.
            self.log.warning("progress events for %s ended: %r", self.pod_name, e)

    def get_env(self):
        env = super().get_env()
        if self._plan is not None:
            # Not passed through KubeSpawner's template expansion: a user's
            # display name may contain braces.
            env.update(self._plan.env)
        return env


def _merge(configured, added: list[dict], key: str, replace: bool):
    """Add entries to a list- or dict-form KubeSpawner trait (z2jh uses
    dicts). With ``replace``, an added entry replaces a configured one with
    the same key; without, the configured one is kept."""
    existing = configured.values() if isinstance(configured, dict) else configured
    taken = {e.get(key) for e in existing if isinstance(e, dict)}
    if not replace:
        added = [e for e in added if e[key] not in taken]
    keys = {e[key] for e in added}

    def keep(e):
        return not (isinstance(e, dict) and e.get(key) in keys)

    if isinstance(configured, dict):
        merged = {k: v for k, v in configured.items() if keep(v)}
        merged.update({f"aaltohub-{e[key]}": e for e in added})
        return merged
    return [e for e in configured if keep(e)] + added
