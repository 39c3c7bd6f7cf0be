"""Make the user's home on storage before their server starts."""

from __future__ import annotations

from traitlets import Type

from ..plan import SpawnContext, SpawnPlan
from ..shared import shared_instance
from ..storage.paths import UnsafePath
from ..storage.user_dirs import HomeProvisioner, LocalHomeProvisioner, ProvisionError
from .base import SpawnHook


class ProvisionHomeHook(SpawnHook):
    """Ensure the user's home (``c.StoragePaths.home_sub_path``) exists,
    owned by the user: the directory made is the one HomeHook mounts.

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

    @property
    def provisioner(self) -> HomeProvisioner:
        # Shared across spawns: it remembers homes known to exist.
        return shared_instance(self.provisioner_class, self.config)

    async def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        try:
            sub_path = ctx.paths.home(ctx.username, ctx.identity.uid)
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
