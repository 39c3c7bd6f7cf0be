"""CourseWrapSpawner: each course's servers run on the backend it names.

Built on wrapspawner's ``WrapSpawner``: the hub talks to the wrapper, the
wrapper to one child spawner per server. Unlike wrapspawner's
ProfilesSpawner, the user never chooses the child: the form is the
catalog's profile list (as CourseSpawner's), and the backend comes from
the *course* on the server side::

    POST /hub/spawn {"profile": "ml"}  (or the REST API)
    -> authorize("ml")                         403 unless the user may start it
    -> course ml says backend: slurm           (never from user_options)
    -> child = SlurmCourseSpawner(settings of "slurm", the same user_options)
    -> child's pre-spawn hook; the child resolves "ml" the same way
    -> child.start(): authorize again (the last gate), plan, apply, record

Every child is a CourseSpawnMixin adapter, so the access check, the plan
and the server record are the same code whichever backend runs the server.
The state keeps the backend's name and the child's own state; a hub
restart builds the same child from the config and hands it its state, so a
running server is found again and can be polled, stopped and culled.
"""

from __future__ import annotations

import asyncio
import contextlib

from jupyterhub.utils import maybe_future
from traitlets import Dict, Unicode, default, directional_link
from wrapspawner import WrapSpawner

from ..config_check import configured
from ..jupyterhub_api import PASSED_TO_SPAWNERS
from ..local.profiles_form import CourseProfilesMixin
from ..profiles import COURSE, GENERAL, Choice
from ..servers import ServerRecord
from ..spawn import user_error
from .backends import DEFAULT_BACKENDS, Backend, backend_problems, check_backends

# The batch backends' port callback (POST /hub/api/batchspawner) must be
# routed before the hub builds its routes, which is before it builds any
# spawner: so here, when the hub loads this class. Without batchspawner
# there is no Slurm backend.
with contextlib.suppress(ImportError):
    from .. import slurm  # noqa: F401

#: Given to a child when it is built, as JupyterHub gives them to a spawner.
_PASSED = PASSED_TO_SPAWNERS
#: Set by JupyterHub on the wrapper during a spawn: followed by the child.
_LINKED = ("user_options", "api_token", "admin_access", "cert_paths", "handler")
#: Read by JupyterHub on the wrapper, but the child's to decide (a batch
#: queue needs a longer start_timeout than a pod).
_FROM_CHILD = ("start_timeout", "http_timeout")


class BackendConfigError(ValueError):
    """The wrapper's backends cannot honour what the hub promises."""


class CourseWrapSpawner(CourseProfilesMixin, WrapSpawner):
    """Runs each course's servers on the backend its course file names."""

    backends = Dict(
        help="""The backends course servers may run on, by name: the child
        spawner class (an entry-point name such as ``course``,
        ``course-local`` or ``course-slurm``, or an import path) and its
        settings, e.g. ``{"kubernetes": {"spawner_class": "course"},
        "slurm": {"spawner_class": "course-slurm", "settings":
        {"storage_root": "/m/jupyter"}}}``. A course file chooses one with
        ``backend: <name>``; a general profile with a ``"backend"`` key.
        Each class must be a course adapter (CourseSpawnMixin). Problems
        are reported when the hub starts. Default: ``{"kubernetes":
        {"spawner_class": "aaltohub.kube.CourseSpawner"}}``. The plan's
        options (``hooks``, ``files_root``) are the children's: set them on
        ``c.CourseSpawnMixin``, the child class or in a backend's
        settings.""",
    ).tag(config=True)

    @default("backends")
    def _default_backends(self):
        return {k: dict(v) for k, v in DEFAULT_BACKENDS.items()}

    default_backend = Unicode(
        "kubernetes",
        help="""The backend of courses and general profiles that name none.
        Must be one of ``backends``.""",
    ).tag(config=True)

    #: The name of the backend the current server runs on (kept in state).
    backend_name = Unicode("")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        backends, problems = check_backends(
            self.backends, self.default_backend, self.config, self.general_profiles
        )
        if problems:
            lines = "\n".join(f"  - {p}" for p in problems)
            raise BackendConfigError(
                f"CourseWrapSpawner's backends cannot be used:\n{lines}"
            )
        self._backends: dict[str, Backend] = backends
        self._auth_state = None

    @classmethod
    def config_problems(cls, config) -> list:
        """The start check's view (``aaltohub check-config``, the hub's
        start): the same problems, from the config alone."""
        backends = configured(config, cls, "backends", None)
        backends = DEFAULT_BACKENDS if backends is None else backends
        default_name = configured(config, cls, "default_backend", "kubernetes")
        general = configured(config, cls, "general_profiles", []) or []
        return backend_problems(backends, default_name, config, general)

    # --- the catalog knows which backend names a course file may give ----------
    @property
    def catalog(self):
        catalog = super().catalog
        names = set(self.backends)
        if catalog.backends != names:
            catalog.backends = names
        return catalog

    # --- which backend -----------------------------------------------------------
    def backend_for(self, choice: Choice) -> Backend:
        """The backend of an authorized choice: the course's, else the
        general profile's, else the default. Never from user_options."""
        name = ""
        if choice.kind == COURSE and choice.course is not None:
            name = choice.course.backend
        elif choice.kind == GENERAL:
            for profile in self.general_profiles:
                if profile.get("slug") == choice.slug:
                    name = profile.get("backend") or ""
        backend = self._backends.get(name or self.default_backend)
        if backend is None:  # the catalog refuses such a course; be sure
            raise user_error(
                500,
                f"This environment needs the backend {name!r}, which the hub"
                " does not define. Please tell the hub operator.",
            )
        return backend

    def select_backend(self, backend: Backend) -> None:
        self.backend_name = backend.name
        self.child_class = backend.spawner_class
        self.child_config = dict(backend.settings)

    def load_child_class(self, state):
        # wrapspawner leaves this to subclasses: the backend's name is kept
        # in the state, its class and settings come from today's config.
        name = state.get("backend", "")
        backend = self._backends.get(name) if isinstance(name, str) else None
        if backend is not None:
            self.select_backend(backend)
        elif name:
            self.log.error(
                "server user=%s server=%r ran on backend %r, which the config no"
                " longer defines: it is treated as stopped. Define the backend"
                " again to find it, or stop it on that system by hand.",
                self.user.name,
                self.name or "",
                name,
            )

    # --- the child -----------------------------------------------------------------
    def construct_child(self):
        """Build the chosen backend's spawner as JupyterHub builds one (same
        user, database row, tokens, options). Only the values JupyterHub
        sets during a spawn follow the wrapper; the child's own config
        (``c.KubeSpawner.*``, the backend's settings) is left alone."""
        if self.child_spawner is not None or not self.backend_name:
            return self.child_spawner
        kwargs = {n: getattr(self, n) for n in _PASSED if self.has_trait(n)}
        kwargs.update(
            user=self.user,
            orm_spawner=self.orm_spawner,
            hub=self.hub,
            authenticator=self.authenticator,
            config=self.config,
            user_options=self.user_options,
            # One list for the form and for the child's own check.
            general_profiles=self.general_profiles,
        )
        child = self.child_class(**{**kwargs, **self.child_config})
        if self.pre_spawn_hook is not None and child.pre_spawn_hook is (
            self.pre_spawn_hook
        ):
            child.pre_spawn_hook = None  # configured on c.Spawner: run once
        child.clear_state()
        if self.child_state:
            child.load_state(self.child_state)
        if self._auth_state is not None:
            child.remember_auth_state(self._auth_state)
        for name in _LINKED:
            directional_link((self, name), (child, name))
        for name in _FROM_CHILD:
            setattr(self, name, getattr(child, name))
        self.child_spawner = child
        return child

    async def run_auth_state_hook(self, auth_state):
        self._auth_state = auth_state
        await super().run_auth_state_hook(auth_state)

    async def prepare_child(self):
        """Authorize the chosen profile, then build its backend's child."""
        profile = await self.effective_profile((self.user_options or {}).get("profile"))
        choice = await self.authorize(profile)
        self.check_user_options(self.selected_profile(choice, []))
        self.select_backend(self.backend_for(choice))
        child = self.construct_child()
        await child.apply_group_overrides()
        await maybe_future(child.run_pre_spawn_hook())
        # The child decides again; it must mean the same course and role,
        # or its own profiles (e.g. KubeSpawner's profile_list) shadow one.
        mine = (choice.kind, choice.course and choice.course.slug, choice.role)
        got = await child.authorize(profile)
        if (got.kind, got.course and got.course.slug, got.role) != mine:
            raise user_error(
                500,
                f"The hub is misconfigured: backend {self.backend_name!r}"
                f" reads the environment {profile!r} differently (its own"
                " profile list has that name). Please tell the hub operator.",
            )
        return child

    async def run_pre_spawn_hook(self):
        # The deployer's own hook first, as CourseSpawner does; then the
        # check (API spawns skip the form) and the child of that course.
        result = await maybe_future(super().run_pre_spawn_hook())
        await self.prepare_child()
        return result

    async def start(self):
        if self.child_spawner is None:  # started without the pre-spawn hook
            await self.prepare_child()
        return await self.child_spawner.start()

    async def progress(self):
        """The child's progress events. The spawn page may ask before the
        child exists (it is built once the choice is authorized): wait for
        it while the spawn is pending, instead of wrapspawner's error."""
        while self.child_spawner is None:
            if self.pending != "spawn":
                return
            await asyncio.sleep(0.1)
        async for event in self.child_spawner.progress():
            yield event

    # --- state -----------------------------------------------------------------------
    def get_state(self):
        if self.child_spawner is not None:
            # At the top level too, where the culler and tools look.
            self.server_record = getattr(self.child_spawner, "server_record", None)
        state = super().get_state()
        # Settings come from the config, never from the database: they may
        # hold callables, and a changed config must apply on restart.
        state.pop("child_conf", None)
        if self.backend_name:
            state["backend"] = self.backend_name
        return state

    def load_state(self, state):
        state = {k: v for k, v in (state or {}).items() if k != "child_conf"}
        super().load_state(state)
        if self.child_spawner is not None:
            self.server_record = getattr(self.child_spawner, "server_record", None)
        else:
            self.server_record = ServerRecord.from_state(state, self.user_options)

    def clear_state(self):
        super().clear_state()
        self.backend_name = ""
