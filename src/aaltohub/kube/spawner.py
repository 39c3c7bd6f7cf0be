"""CourseSpawner: a KubeSpawner whose profiles are the user's courses.

It stays a drop-in KubeSpawner: every KubeSpawner option (and so every
z2jh ``singleuser.*`` setting) still applies; the course plan is added on
top, in ``load_user_options()``, after KubeSpawner has applied the chosen
profile's overrides (kubespawner issue 339).
"""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import dataclass, field

from jupyterhub.utils import maybe_future
from kubespawner import KubeSpawner
from kubespawner.slugs import multi_slug, safe_slug
from slugify import slugify
from tornado import web
from traitlets import Bool, Float, Unicode, default

from ..plan import NFS_VOLUME, SpawnPlan
from ..spawn import CourseSpawnMixin, user_error
from . import failures, kubespawner_api

FILES_VOLUME = "aaltohub-files"
ANNOTATION_PREFIX = "aaltohub/file."


def _literal(value):
    """Protect text from KubeSpawner's ``{field}`` template expansion."""
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    return value


def _annotation_key(path: str) -> str:
    return ANNOTATION_PREFIX + path.replace("/", ".")


@dataclass
class _Attempt:
    """What CourseSpawner knows about the start under way."""

    creating: bool = False  # KubeSpawner asked for the manifest: create is next
    stale: set = field(default_factory=set)  # uids of leftover pods of our name
    pod_seen: bool = False  # this start's pod is in the reflector
    replaced_stale: bool = False  # KubeSpawner met 409 and deleted a leftover
    started: float = field(default_factory=time.monotonic)


class CourseSpawner(CourseSpawnMixin, KubeSpawner):
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

    fail_fast = Bool(
        True,
        help="""Stop waiting as soon as Kubernetes reports that the server
        cannot start (image not found, a crash, a failed mount, no node for
        it …), delete the pod and tell the user why, instead of waiting for
        ``start_timeout``. The rules are in ``aaltohub.kube.failures`` and
        docs/kubernetes.md ("When a spawn fails").""",
    ).tag(config=True)

    transient_failure_grace = Float(
        30.0,
        help="""Seconds a start problem that may clear by itself may last
        before the start fails: FailedScheduling (no node has room, or none
        matches) while no cluster autoscaler is adding a node, an image
        download failing with a network or rate-limit error, an NFS mount
        timing out. While an autoscaler scales up (TriggeredScaleUp), only
        ``start_timeout`` applies; problems that cannot clear by themselves
        fail the start at once.""",
    ).tag(config=True)

    failure_check_interval = Float(
        1.0,
        help="""Seconds between two looks at a starting pod's status and
        events (from KubeSpawner's reflectors, no API calls) for a reason
        to give up.""",
    ).tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._plan: SpawnPlan | None = None
        self._remembered: dict = {}
        self._attempt: _Attempt | None = None
        self._start_notices: list[str] = []

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
        in config or later by a hook), read now, with KubeSpawner's slugs."""
        profiles = self.profile_list
        if callable(profiles):
            profiles = await maybe_future(profiles(self))
        if isinstance(profiles, dict):
            profiles = [profiles[key] for key in sorted(profiles)]
        return [
            p if "slug" in p else {**p, "slug": slugify(p["display_name"])}
            for p in profiles or []
        ]

    # --- no leaks between spawns -------------------------------------------------
    def _remember_config(self) -> None:
        """Remember every configured value before this spawn changes any.

        JupyterHub reuses the spawner object for every start of a server,
        and KubeSpawner merges profile overrides into trait dicts in place.
        So each container trait gets a private copy for this spawn (nothing
        mutates the hub's config), and clear_state() puts the remembered
        values back. Read now, not at construction: a hook may have set a
        per-user value (e.g. profile_list) since.
        """
        remembered = {}
        for name in self.trait_names(config=True):
            value = getattr(self, name)
            remembered[name] = value
            if isinstance(value, dict | list):
                setattr(self, name, copy.deepcopy(value))
        self._remembered = remembered

    def _restore_config(self) -> None:
        for name, value in self._remembered.items():
            if getattr(self, name) is not value:
                setattr(self, name, value)
        self._remembered = {}

    def clear_state(self):
        self._restore_config()
        self._plan = None
        self._start_notices = []
        super().clear_state()

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
        self._remember_config()
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
                notices = plan + self._start_notices
                for notice in notices[sent:]:
                    yield {"progress": event.get("progress", 0), "message": notice}
                sent = len(notices)
                yield event
        except Exception as e:
            # E.g. the API server is unreachable. Ending the events quietly
            # lets JupyterHub show the start's own failure message, which
            # says why; an exception here would break the page instead.
            self.log.warning("progress events for %s ended: %r", self.pod_name, e)

    # --- fail fast, in words (failures.py decides, this watches and acts) --------
    def start(self):
        # KubeSpawner's start() runs _start() as the future its progress()
        # follows; wrapping that future keeps progress ending with it.
        self._attempt = _Attempt()
        starting = super().start()
        return asyncio.ensure_future(self._start_or_fail(starting))

    async def _start_or_fail(self, starting: asyncio.Future):
        try:
            failure = await self._first_failure(starting)
            if failure is None:
                return await self._started(starting)
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            self._log_failure(failure)
            await self._remove_failed_pod()
            raise user_error(failure.status, failure.message)
        finally:
            if not starting.done():
                starting.cancel()  # JupyterHub gave up (start_timeout, cancel)
            self._attempt = None

    async def _first_failure(self, starting) -> failures.Failure | None:
        """What the pod watch found wrong before the start finished."""
        if not self.fail_fast:
            return None
        watching = asyncio.ensure_future(self._watch_start())
        try:
            await asyncio.wait([starting, watching], return_when="FIRST_COMPLETED")
        finally:
            if not watching.done():
                watching.cancel()
        if starting.done() or watching.cancelled():
            return None
        if watching.exception() is not None:  # a bug here must not fail spawns
            self.log.error("pod watch failed", exc_info=watching.exception())
            return None
        return watching.result()

    async def _watch_start(self) -> failures.Failure:
        watch = failures.StartWatch(self.transient_failure_grace)
        while True:
            await asyncio.sleep(self.failure_check_interval)
            pod = self._own_pod()
            if pod is None:
                continue
            events = [
                e
                for e in self.events
                if (e.get("involvedObject") or {}).get("uid")
                in (None, pod["metadata"].get("uid"))
            ]
            failure = watch.check(pod, events, time.monotonic())
            if failure is not None:
                return await self._with_log(failure)

    def _own_pod(self) -> dict | None:
        """This start's pod as the reflector sees it (not a leftover)."""
        attempt = self._attempt
        if attempt is None or not attempt.creating or self.pod_reflector is None:
            return None
        pod = self.pod_reflector.pods.get(f"{self.namespace}/{self.pod_name}")
        if pod is None or pod["metadata"].get("uid") in attempt.stale:
            return None
        attempt.pod_seen = True
        return pod

    async def _with_log(self, failure: failures.Failure) -> failures.Failure:
        if not failure.log_container:
            return failure
        try:
            text = await asyncio.wait_for(
                self.api.read_namespaced_pod_log(
                    self.pod_name,
                    self.namespace,
                    container=failure.log_container,
                    previous=failure.log_previous,
                    tail_lines=failures.ADMIN_LOG_LINES,
                ),
                self.k8s_api_request_timeout,
            )
        except Exception as e:  # the failure is worth reporting without its log
            self.log.warning(
                "no log of %s/%s container %s (%s %s): the hub needs 'get' on"
                " pods/log to show it",
                self.namespace,
                self.pod_name,
                failure.log_container,
                type(e).__name__,
                getattr(e, "status", ""),
            )
            return failure
        return failure.with_log(text)

    async def _started(self, starting):
        """KubeSpawner's result, or its API error in words."""
        try:
            return await starting
        except Exception as e:
            failure = self._explain(e)
            if failure is None:
                raise
            self._log_failure(failure)
            raise user_error(failure.status, failure.message) from e

    def _explain(self, error: Exception) -> failures.Failure | None:
        attempt = self._attempt or _Attempt()
        if isinstance(error, web.HTTPError):
            return None  # already written for the user (e.g. a refused course)
        created = attempt.pod_seen or self._own_pod() is not None
        if isinstance(error, TimeoutError):
            if attempt.replaced_stale and not created:
                return failures.stale_pod_failure(self.namespace, self.pod_name, error)
            if not attempt.creating or created:
                return None  # KubeSpawner's own start timeout
        verb, resource = self._api_call(attempt)
        return failures.explain_api_error(
            error,
            verb=verb,
            resource=resource,
            namespace=self.namespace,
            server=self.api.api_client.configuration.host,
        )

    def _api_call(self, attempt: _Attempt) -> tuple[str, str]:
        """What KubeSpawner's _start() was asking the API when it failed."""
        if attempt.creating:
            return "create", "pods"
        failed = self._forget_failed_reflectors()
        if failed:
            return "list and watch", failed
        if self.storage_pvc_ensure:
            return "create", "persistentvolumeclaims"
        return "create", "namespaces" if self.enable_user_namespaces else "pods"

    def _forget_failed_reflectors(self) -> str:
        """KubeSpawner keeps a reflector whose first list failed, and later
        spawns wait start_timeout for a pod it never reports. Forget it, so
        the next start lists again; say what it watched."""
        kinds = []
        for key, reflector in list(self.reflectors.items()):
            loaded = reflector.first_load_future
            if loaded.done() and not loaded.cancelled() and loaded.exception():
                del self.reflectors[key]
                kinds.append(reflector.kind)
        return " and ".join(sorted(kinds))

    def _log_failure(self, failure: failures.Failure) -> None:
        took = time.monotonic() - (self._attempt or _Attempt()).started
        self.log.error(
            "spawn user=%s server=%r pod=%s/%s action=start outcome=failed"
            " cause=%s seconds=%.1f detail=%r",
            self.user.name,
            self.name or "",
            self.namespace,
            self.pod_name,
            failure.cause,
            took,
            failure.detail,
        )

    async def _remove_failed_pod(self) -> None:
        # As KubeSpawner cleans up a failed start: stop(now=True). Bounded,
        # so the user hears why at once; JupyterHub calls stop() again
        # after every failed start, which finishes a slow deletion.
        try:
            await asyncio.wait_for(super().stop(now=True), self.k8s_api_request_timeout)
        except Exception as e:
            self.log.warning("failed pod %s not yet deleted: %r", self.pod_name, e)

    async def get_pod_manifest(self):
        attempt = self._attempt
        if attempt is not None and self.pod_reflector is not None:
            # KubeSpawner's _start() asks for the manifest after its
            # reflectors loaded and just before it creates the pod: a pod
            # of our name now is a leftover from an earlier start.
            leftover = self.pod_reflector.pods.get(f"{self.namespace}/{self.pod_name}")
            if leftover is not None:
                attempt.stale.add(leftover["metadata"].get("uid"))
            attempt.creating = True
        return await super().get_pod_manifest()

    async def stop(self, now=False):
        attempt = self._attempt
        ref = f"{self.namespace}/{self.pod_name}"
        pod = self.pod_reflector.pods.get(ref) if self.pod_reflector else None
        uid = pod["metadata"].get("uid") if pod else None
        if attempt and attempt.creating and (uid is None or uid in attempt.stale):
            # Mid-start, KubeSpawner stops a pod it did not create only when
            # creating ours got 409 Conflict: it deletes the leftover of our
            # name and creates ours again.
            attempt.replaced_stale = True
            self.log.warning(
                "spawn user=%s pod=%s action=replace-leftover outcome=deleting",
                self.user.name,
                ref,
            )
            self._start_notices.append(
                "A server of yours from an earlier start was still there; it was"
                " removed, and your new server is starting."
            )
        return await super().stop(now=now)

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
