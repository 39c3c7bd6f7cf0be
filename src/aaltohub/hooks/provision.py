"""Make the user's home on storage before their server starts."""

from __future__ import annotations

from traitlets import Type, Unicode, default

from ..plan import SpawnContext, SpawnPlan
from ..storage import shared
from ..storage.user_dirs import HomeProvisioner, LocalHomeProvisioner, ProvisionError
from .base import SpawnHook
from .home import HomeHook
from .paths import UnsafePath, render_sub_path


class ProvisionHomeHook(SpawnHook):
    """Ensure ``u/{uid_last2digits}/{username}`` exists, owned by the user.

    Runs the configured provisioner (local, remote forced command, or none).
    If it fails, the spawn stops with a message for the user; the operator's
    detail goes to the log. Nothing half-made is left behind.
    """

    provisioner_class = Type(
        LocalHomeProvisioner,
        klass=HomeProvisioner,
        help="""How homes are made: ``aaltohub.storage.LocalHomeProvisioner``
        (the hub has the storage mounted with rights to chown),
        ``aaltohub.storage.RemoteCommandHomeProvisioner`` (ssh to a storage
        host with a forced command, for root_squash NFS) or
        ``aaltohub.storage.NoHomeProvisioner``.""",
    ).tag(config=True)

    sub_path = Unicode(
        help="""Path of the home on the storage volume. Default: the same as
        ``c.HomeHook.sub_path``, so the directory made is the one mounted.""",
    ).tag(config=True)

    @default("sub_path")
    def _sub_path_default(self):
        return HomeHook(config=self.config).sub_path

    @property
    def provisioner(self) -> HomeProvisioner:
        # Shared across spawns: it remembers homes known to exist.
        return shared(self.provisioner_class, self.config)

    async def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        try:
            sub_path = render_sub_path(self.sub_path, ctx)
        except UnsafePath as e:
            raise ProvisionError(
                "Your home directory cannot be created for this account.", str(e)
            ) from e
        try:
            await self.provisioner.ensure_home(ctx.identity, sub_path)
        except ProvisionError as e:
            self.log.error(
                "spawn user=%s action=provision-home path=%s outcome=failed detail=%r",
                ctx.username,
                sub_path,
                e.detail,
            )
            raise
