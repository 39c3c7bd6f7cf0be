"""Quota warnings on the hub's own pages: home (after login) and spawn.

JupyterHub passes ``c.JupyterHub.template_vars`` to every page; a callable
value is called with the current user (or None), **synchronously**, while
the page renders (an async callable would be rendered as a coroutine object,
never awaited). So the callable here only reads a cache, and refreshes it
in a background task when it is older than ``refresh_interval``. A
``post_auth_hook`` fills the cache during login, so the home page right
after login already carries the warning.

Enable it in ``jupyterhub_config.py`` with one line::

    from aaltohub.web import quota; quota.configure(c)

The source, threshold and help text are ``c.QuotaPolicy``'s, the same as
the spawn hook's.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path
from typing import Any

from traitlets import Float
from traitlets.config import LoggingConfigurable

from ..auth import identity_from_auth_state
from ..identity.base import Identity
from ..shared import shared_instance
from ..storage.quota import QuotaSource, Usage, human_bytes, warning_message
from ..storage.quota_policy import QuotaPolicy
from .pages import add_template_dir, add_template_var

TEMPLATE_DIR = str(Path(__file__).parent / "templates" / "quota")
#: Name of the template variable; custom templates can include
#: ``aaltohub-quota-banner.html`` or use ``aaltohub_quota`` themselves.
TEMPLATE_VAR = "aaltohub_quota"


class QuotaWarnings(LoggingConfigurable):
    """Cache of who is near their quota, for the hub's templates."""

    refresh_interval = Float(
        300.0,
        help="""Seconds a user's usage is reused on pages before it is asked
        again (in the background; the page never waits for it).""",
    ).tag(config=True)

    timeout = Float(
        5.0,
        help="Seconds a login waits for the quota source before going on.",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._cache: dict[str, tuple[dict | None, float]] = {}
        self._identities: dict[str, Identity] = {}
        self._inflight: dict[str, asyncio.Task] = {}

    @property
    def policy(self) -> QuotaPolicy:
        return shared_instance(QuotaPolicy, self.config)

    @property
    def source(self) -> QuotaSource:
        return self.policy.source

    def describe(self, usage: Usage | None) -> dict[str, Any] | None:
        """What the templates get: None below the threshold."""
        if not self.policy.warns(usage):
            return None
        return {
            "percent": round(usage.percent),
            "used": human_bytes(usage.used),
            "limit": human_bytes(usage.limit),
            "over": usage.over_limit,
            "message": warning_message(usage),
            "help": self.policy.free_space_help,
        }

    # --- the template variable (sync, cache only) ----------------------------------
    def warning_for(self, user) -> dict[str, Any] | None:
        if user is None:
            return None
        name = user.name
        hit = self._cache.get(name)
        if hit is None or time.monotonic() - hit[1] > self.refresh_interval:
            self._schedule(name, user)
        return hit[0] if hit else None

    def _schedule(self, name: str, user) -> None:
        if name in self._inflight:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # rendered outside the loop (a sync error page): skip
        task = loop.create_task(self.refresh(name, user=user))
        self._inflight[name] = task
        task.add_done_callback(lambda _t: self._inflight.pop(name, None))

    # --- refreshing ------------------------------------------------------------------
    async def _identity(self, name: str, user) -> Identity | None:
        known = self._identities.get(name)
        if known is not None or user is None:
            return known
        try:
            identity = identity_from_auth_state(await user.get_auth_state())
        except Exception as e:  # auth_state disabled or unreadable
            self.log.debug("quota user=%s no auth_state identity: %r", name, e)
            return None
        if identity is not None and identity.username == name:
            self._identities[name] = identity
            return identity
        return None

    async def refresh(
        self, name: str, user=None, identity: Identity | None = None
    ) -> dict[str, Any] | None:
        """Ask the source now and cache the answer; never raises."""
        if identity is not None:
            self._identities[name] = identity
        try:
            identity = identity or await self._identity(name, user)
            call = (
                self.source.usage(identity)
                if identity is not None
                else self.source.usage_for_name(name)
            )
            warning = self.describe(await asyncio.wait_for(call, self.timeout))
        except Exception as e:
            self.log.warning("quota user=%s action=page-warning error=%r", name, e)
            warning = self._cache.get(name, (None, 0))[0]
        self._cache[name] = (warning, time.monotonic())
        return warning

    async def post_auth_hook(self, authenticator, handler, auth_model):
        """Warm the cache at login, so the first page already warns."""
        if auth_model:
            identity = identity_from_auth_state(auth_model.get("auth_state"))
            await self.refresh(auth_model["name"], identity=identity)
        return auth_model


class _Lazy:
    """Builds QuotaWarnings on first use, when the whole config is loaded
    (configure() is called early in jupyterhub_config.py)."""

    def __init__(self, config):
        self.config = config
        self._instance: QuotaWarnings | None = None

    @property
    def instance(self) -> QuotaWarnings:
        if self._instance is None:
            self._instance = QuotaWarnings(config=self.config)
        return self._instance

    def warning_for(self, user):
        return self.instance.warning_for(user)

    def post_auth_hook(self, previous):
        async def hook(authenticator, handler, auth_model):
            if previous is not None:
                auth_model = previous(authenticator, handler, auth_model)
                if inspect.isawaitable(auth_model):
                    auth_model = await auth_model
            return await self.instance.post_auth_hook(
                authenticator, handler, auth_model
            )

        return hook


def configure(c) -> _Lazy:
    """Add the quota banner to the home and spawn pages of a hub config.

    Keeps existing ``template_paths``, ``template_vars`` and a
    ``c.Authenticator.post_auth_hook`` (which runs first). Call it after
    setting those, or they will replace what this adds.
    """
    lazy = _Lazy(c)
    add_template_dir(c, TEMPLATE_DIR)
    add_template_var(c, TEMPLATE_VAR, lazy.warning_for)
    auth = c.Authenticator
    previous = auth.post_auth_hook if "post_auth_hook" in auth else None
    auth.post_auth_hook = lazy.post_auth_hook(previous)
    return lazy
