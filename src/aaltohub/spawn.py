"""CourseSpawnMixin: what every course-aware spawner shares.

The profile list, the server-side access check, the spawn plan and the
record of the running server are the same whether the server becomes a pod
(:mod:`aaltohub.kube`) or a local process (:mod:`aaltohub.local`). One path,
:meth:`CourseSpawnMixin.plan_spawn`, runs them in order::

    effective profile -> authorize -> adapter.before_plan (profile overrides)
    -> hooks build the plan -> adapter.apply_plan -> ServerRecord in state

An adapter implements only :meth:`~CourseSpawnMixin.apply_plan` (and, if it
has profile overrides, :meth:`~CourseSpawnMixin.before_plan`).
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
from dataclasses import fields

import sqlalchemy
from tornado import web
from traitlets import Any, Dict, Int, List, TraitError, Type, Unicode, validate

from . import access, metrics
from .access import AccessDenied, Viewer
from .audit import audit_log, server_target
from .catalog import CourseCatalog
from .course import Course, Resources
from .hooks import DEFAULT_HOOKS, SpawnHook, run_hooks
from .identity.base import (
    IdentityError,
    IdentityUnavailable,
)
from .plan import SpawnContext, SpawnPlan
from .profiles import (
    COURSE,
    PLAIN,
    PROFILE_NAME,
    Choice,
    ProfileBuilder,
    declared_options,
    options_problem,
    resolve,
)
from .servers import STATE_KEY, ServerRecord
from .shared import shared, shared_instance
from .spawn_identity import SpawnerIdentityMixin
from .storage.paths import StoragePaths, UnsafePath


def user_error(status: int, message: str) -> web.HTTPError:
    """An HTTPError whose message JupyterHub shows to the user as is."""
    err = web.HTTPError(status, "%s", message)
    err.jupyterhub_message = message
    return err


class CourseSpawnMixin(SpawnerIdentityMixin):
    """Course profiles, authorization and spawn plans for any Spawner."""

    hooks = List(
        Type(klass=SpawnHook),
        default_value=DEFAULT_HOOKS,
        help="""Spawn hooks applied in order to build the server's plan.
        Append your own SpawnHook subclass (or its import string) to add a
        concern without touching the library.""",
    ).tag(config=True)

    general_profiles = List(
        Dict(),
        help="""Profiles shown before the courses, e.g. general Python, R,
        Julia or GPU environments, in KubeSpawner profile_list form (slug,
        display_name, kubespawner_override). They are not courses (no course
        mounts), but get the rest of the plan: the user's uid, home and git
        identity. A base spawner's own profiles (KubeSpawner's
        ``profile_list``) are shown too, and run exactly as without
        aaltohub.""",
    ).tag(config=True)

    @validate("general_profiles")
    def _valid_general_profiles(self, proposal):
        # Resolved by slug before the courses: a general profile without a
        # valid slug could be taken over by a course file of that name.
        for i, profile in enumerate(proposal.value):
            slug = profile.get("slug")
            if not isinstance(slug, str) or not PROFILE_NAME.fullmatch(slug):
                raise TraitError(
                    f"general_profiles[{i}] ({profile.get('display_name', '?')!r})"
                    f" needs a 'slug' of letters, digits, '.', '_' and '-',"
                    f" not {slug!r}"
                )
        return proposal.value

    max_user_options_size = Int(
        4096,
        help="""Largest ``user_options`` a spawn request may carry, in bytes
        of JSON. Larger requests get HTTP 400 and are not kept in the hub
        database.""",
    ).tag(config=True)

    instructor_label = Unicode(
        "instructor",
        help="Text appended to the name of a course's instructor variant.",
    ).tag(config=True)

    files_root = Unicode(
        "/etc/aaltohub",
        help="""Directory inside the server where generated files (the
        course's nbgrader_config.py, the git identity) appear.""",
    ).tag(config=True)

    #: The running server's course, role, image, uid, start and cull limits;
    #: kept in the spawner state, so it survives a hub restart.
    server_record = Any(None, allow_none=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Built (and so checked) now, not in the middle of a spawn: a bad
        # path template is a configuration error, named at start.
        self.storage_paths  # noqa: B018

    # --- state that survives a hub restart ----------------------------------------
    def get_state(self):
        state = super().get_state()
        if self.server_record is not None:
            state[STATE_KEY] = self.server_record.to_state()
        return state

    def load_state(self, state):
        super().load_state(state)
        # Aalto's state keeps no role; its saved profile (<slug>-instructor)
        # does, so the user options go along.
        self.server_record = ServerRecord.from_state(state, self.user_options)

    def clear_state(self):
        super().clear_state()
        self.server_record = None

    @property
    def course_slug(self) -> str | None:
        return self.server_record.course if self.server_record else None

    @property
    def course_role(self) -> str | None:
        return self.server_record.role if self.server_record else None

    # --- shared services --------------------------------------------------------
    @property
    def catalog(self) -> CourseCatalog:
        # Not loaded here: the first ensure_fresh() loads it in a thread.
        return shared_instance(CourseCatalog, self.config)

    @property
    def storage_paths(self) -> StoragePaths:
        return shared_instance(StoragePaths, self.config)

    @property
    def profile_builder(self) -> ProfileBuilder:
        return shared(
            ProfileBuilder,
            self.config,
            lambda: ProfileBuilder(self.catalog, self.instructor_label),
        )

    @property
    def hook_instances(self) -> list[SpawnHook]:
        """The configured hooks, built once per hub config: they hold no
        per-spawn state, and building configurables costs more than a spawn."""
        return shared(
            ("hooks", *self.hooks),
            self.config,
            lambda: [cls(config=self.config, log=self.log) for cls in self.hooks],
        )

    # --- profiles and authorization ----------------------------------------------
    @property
    def courses_enabled(self) -> bool:
        """A course catalog is configured (``c.CourseCatalog.path``)."""
        return bool(self.catalog.path)

    @property
    def course_mode(self) -> bool:
        """Whether aaltohub takes part in spawns at all. Without courses and
        general profiles the spawner is exactly its base class: same form,
        same options, same pod or process, and no directory lookups."""
        return self.courses_enabled or bool(self.general_profiles)

    async def own_profiles(self) -> list[dict]:
        """The base spawner's own profiles, with slugs (KubeSpawner's
        ``profile_list``); chosen, they run without a course plan."""
        return []

    async def course_profiles(self, spawner=None) -> list[dict]:
        """Everything the user may choose, in order: general profiles, the
        base spawner's own profiles, then the courses offered to them."""
        general = [*self.general_profiles, *await self.own_profiles()]
        if not self.courses_enabled:
            return [dict(p) for p in general]
        await self.catalog.ensure_fresh()
        viewer = await self.get_viewer()
        return self.profile_builder.profiles_for(viewer, general)

    async def effective_profile(self, profile: str | None) -> str | None:
        """The slug that will really be used: the default one if none given."""
        if profile:
            return profile
        profiles = await self.course_profiles()
        chosen = next((p for p in profiles if p.get("default")), None)
        chosen = chosen or (profiles[0] if profiles else None)
        return chosen.get("slug") if chosen else None

    async def run_options_from_form(self, form_data):
        """Check the posted choice here too, so a crafted form gets a 403
        answer on the spot instead of a failed spawn later."""
        options = super().run_options_from_form(form_data)
        if inspect.isawaitable(options):
            options = await options
        if not self.course_mode:
            return options
        if not isinstance(options, dict):
            raise user_error(400, "The server options form could not be read.")
        await self.authorize(await self.effective_profile(options.get("profile")))
        return options

    def check_user_options(self, profile: dict | None) -> None:
        """HTTP 400 unless ``user_options`` is small and holds only the keys
        ``profile`` declares. What is refused is not kept in the hub's
        database either (JupyterHub stores the options of an API spawn
        before any spawner code runs)."""
        options = self.user_options or {}
        declared = declared_options(profile)
        problem = options_problem(options, declared, self.max_user_options_size)
        if problem is None:
            return
        self._forget_options({k: v for k, v in options.items() if k in declared})
        raise user_error(
            400,
            f"The server options could not be used: {problem}. Choose an"
            " environment on the spawn page, or send only"
            f" {sorted(declared)} to the API.",
        )

    def _forget_options(self, kept: dict) -> None:
        # Both copies: the API shows the spawner's, the database keeps the
        # orm's for the next start.
        small = len(json.dumps(kept, default=str)) <= self.max_user_options_size
        kept = kept if small else {}
        self.user_options = kept
        orm = getattr(self, "orm_spawner", None)
        if orm is None or not hasattr(orm, "user_options"):
            return
        orm.user_options = kept
        try:
            session = sqlalchemy.inspect(orm).session
        except sqlalchemy.exc.NoInspectionAvailable:
            return  # not a database object (tests)
        if session is not None:
            session.commit()

    def selected_profile(self, choice: Choice, own: list[dict]) -> dict | None:
        """The one profile dict a spawn uses, without listing every course."""
        if choice.course is not None:
            return self.profile_builder.course_profile(choice.course, choice.role)
        for p in [*self.general_profiles, *own]:
            if p.get("slug") == choice.slug:
                return p
        return None

    async def authorize(self, profile: str | None) -> Choice:
        """The server-side check: raise HTTP 403 unless the user may start
        ``profile``. Course authorization applies to course choices only;
        the deployer's own choices need no directory lookup."""
        if profile is not None and not (
            isinstance(profile, str) and PROFILE_NAME.fullmatch(profile)
        ):
            raise user_error(
                400,
                "The 'profile' option must be the name of one of the listed"
                " environments (letters, digits, '.', '_' and '-').",
            )
        if self.courses_enabled:
            await self.catalog.ensure_fresh()
        choice = resolve(
            profile, self.general_profiles, await self.own_profiles(), self.catalog
        )
        if choice.kind != COURSE:
            return choice
        known = choice.course.slug if choice.course else ""
        try:
            viewer = await self.get_viewer(strict=True)
        except IdentityUnavailable as e:
            # An outage, not the user's fault: a failure that alerts
            # (cause "directory"), not a refusal.
            self._audit(profile, choice.role, "failed", str(e), logging.ERROR, known)
            err = user_error(503, str(e))
            err.audit_recorded = True  # SpawnEventsMixin: counted here
            raise err from e
        except IdentityError as e:
            self._audit(profile, choice.role, "refused", str(e), logging.WARNING, known)
            raise user_error(403, str(e)) from e
        try:
            access.check(choice.course, viewer, choice.role, self.catalog.rules)
        except AccessDenied as e:
            self._audit(profile, choice.role, "refused", str(e), logging.WARNING, known)
            raise user_error(403, str(e)) from e
        return choice

    def _audit(self, profile, role, outcome, reason="", level=logging.INFO, course=""):
        if outcome in ("planned", "refused"):
            metrics.SPAWN_AUTHORIZATIONS.labels(outcome=outcome, role=role).inc()
        if outcome in ("refused", "failed"):
            # Only a course of the catalog is a label: the profile is user input.
            cause = "refused" if outcome == "refused" else "directory"
            metrics.count_spawn_failure(course, cause)
            if outcome == "failed":
                reason = f"{cause}: {reason}"
            if not course:
                reason = f"{reason} (profile {str(profile)[:80]!r})"
        audit_log(self.config).record(
            "spawn",
            actor=self.user.name,
            target=server_target(self.user.name, getattr(self, "name", "") or ""),
            course=course or (profile if outcome == "planned" else ""),
            outcome=outcome if outcome in ("refused", "failed") else "ok",
            reason=reason,
        )
        self.log.log(
            level,
            # Quoted: the profile and server name come from the user, and
            # must not be able to start a new log line.
            "spawn user=%s server=%r profile=%r role=%s action=authorize outcome=%s%s",
            self.user.name,
            getattr(self, "name", "") or "",
            profile or "",
            role,
            outcome,
            f" reason={reason!r}" if reason else "",
        )

    # --- the one path: authorize -> plan -> apply ---------------------------------
    async def plan_spawn(self) -> SpawnPlan | None:
        """Authorize the chosen profile (again: API spawns skip the form),
        build its plan, let the adapter apply it, and record the server.
        A plain profile (the base spawner's own) gets no plan: None."""
        profile = await self.effective_profile((self.user_options or {}).get("profile"))
        choice = await self.authorize(profile)
        self.check_user_options(
            self.selected_profile(choice, await self.own_profiles())
        )
        await self.before_plan(choice)
        if choice.kind == PLAIN:
            self.server_record = None
            return None
        course, role = choice.course, choice.role
        plan = await self.build_plan(course, role, self.resource_defaults())
        backend = await self.apply_plan(plan, course, role)
        identity = await self.get_identity()
        self.server_record = ServerRecord(
            course=course.slug if course else None,
            role=role,
            image=plan.image or "",
            uid=identity.uid,
            started=ServerRecord.now(),
            cull_inactive_timeout=plan.cull_inactive_timeout,
            cull_max_age=plan.cull_max_age,
            backend=backend or {},
        )
        return plan

    async def before_plan(self, choice: Choice) -> None:
        """Adapter step before the hooks run (KubeSpawner applies the
        profile's overrides here, so the plan is built on top of them)."""

    async def apply_plan(self, plan: SpawnPlan, course: Course | None, role: str):
        """Adapter step: turn the plan into this backend's settings. May
        return a dict the backend needs again later (kept in the record)."""
        raise NotImplementedError

    def resource_defaults(self) -> dict:
        """The spawner's configured CPU and memory, before any course."""
        return {f.name: getattr(self, f.name, None) for f in fields(Resources)}

    # --- the plan -------------------------------------------------------------------
    async def build_plan(
        self, course: Course | None, role: str, defaults: dict
    ) -> SpawnPlan:
        """Run the hooks on a fresh plan, for a course and role that
        :meth:`authorize` has already allowed."""
        identity = await self.get_identity()
        image = self.catalog.image_for(course, role) if course else ""
        viewer = Viewer(self.user.name, bool(self.user.admin), identity.groups)
        rules = self.catalog.rules
        ctx = SpawnContext(
            viewer=viewer,
            identity=identity,
            paths=self.storage_paths,
            course=course,
            role=role,
            enrolment=access.enrolment(course, viewer, rules)
            if course
            else access.Enrolment.NONE,
            server_name=getattr(self, "name", "") or "",
            image=image,
            files_root=self.files_root,
            course_group=rules.instructor_group(course) if course else "",
            defaults=copy.deepcopy(defaults),
            # For hooks that need identities other than the user's (e.g. the
            # uids of a course's students, for the nbgrader collect check).
            providers={"identity": self.identity_provider},
        )
        try:
            plan = await run_hooks(self.hook_instances, ctx, SpawnPlan())
        except UnsafePath as e:
            self.log.error(
                "spawn user=%s action=plan outcome=failed: %s", self.user.name, e
            )
            raise user_error(
                500,
                "Your server could not be set up because a storage path is"
                " invalid. Please tell the hub operator, who should check"
                f" c.StoragePaths ({e}).",
            ) from e
        if plan.image is None and image:
            plan.image = image
        self._audit(course.slug if course else None, role, "planned")
        return plan
