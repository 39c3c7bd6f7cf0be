"""Mount the user's home directory from campus storage."""

from __future__ import annotations

from traitlets import Unicode

from ..plan import SpawnContext, SpawnPlan
from ..storage.homes import DEFAULT_SUB_PATH
from .base import SpawnHook
from .paths import render_sub_path


class HomeHook(SpawnHook):
    """Mount ``u/{uid_last2digits}/{username}`` at ``/notebooks``."""

    sub_path = Unicode(
        DEFAULT_SUB_PATH,
        help="""Path of the user's home on the storage volume. Fields:
        ``{username}`` (the unescaped institutional name), ``{uid}``,
        ``{uid_last2digits}``.""",
    ).tag(config=True)

    target = Unicode(
        "/notebooks", help="Where the home directory appears inside the server."
    ).tag(config=True)

    def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        plan.add_mount(
            self.target, render_sub_path(self.sub_path, ctx), False, purpose="home"
        )
        plan.env["NB_NOTEBOOK_PATH"] = self.target
