"""Mount the user's home directory from campus storage."""

from __future__ import annotations

from ..plan import SpawnContext, SpawnPlan
from .base import SpawnHook


class HomeHook(SpawnHook):
    """Mount the user's home (``c.StoragePaths.home_sub_path``, by default
    ``u/{uid_last2digits}/{username}``) at ``c.StoragePaths.home_target``
    (``/notebooks``), and make it the server's working directory."""

    def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        paths = ctx.paths
        home = paths.home(ctx.username, ctx.identity.uid)
        plan.add_mount(paths.home_target, home, False, purpose="home")
        plan.env["NB_NOTEBOOK_PATH"] = paths.home_target
        # The container's working directory, so `kubectl exec` (and a
        # terminal started without a path) lands in the home, not in /.
        plan.working_dir = paths.home_target
