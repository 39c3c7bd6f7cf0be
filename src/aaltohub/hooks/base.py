"""The SpawnHook base class and the runner that applies hooks in order."""

from __future__ import annotations

import inspect
from collections.abc import Iterable

from traitlets.config import LoggingConfigurable

from ..plan import SpawnContext, SpawnPlan


class SpawnHook(LoggingConfigurable):
    """One concern of a spawn (uid, home, mounts, ...).

    Subclass this, implement :meth:`apply`, and add the class to
    ``c.CourseSpawner.hooks``. A hook reads the context, adds to the plan,
    and does no I/O except through ``ctx.providers``. It may be ``async``.
    Hooks never call each other; later hooks may read what earlier ones
    put in the plan.
    """

    def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        raise NotImplementedError


async def run_hooks(
    hooks: Iterable[SpawnHook], ctx: SpawnContext, plan: SpawnPlan
) -> SpawnPlan:
    """Apply each hook in order; returns the filled plan."""
    for hook in hooks:
        result = hook.apply(ctx, plan)
        if inspect.isawaitable(result):
            await result
    return plan
