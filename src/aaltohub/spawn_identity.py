"""Who the spawner's user is: the directory identity, for any spawner.

The identity provider is shared with the authenticator (one cache per hub
config). The identity the authenticator stored in ``auth_state`` seeds the
cache, and stands in when the directory cannot be reached.
"""

from __future__ import annotations

from traitlets import Any, Type
from traitlets.config import LoggingConfigurable

from .access import Viewer
from .identity.base import (
    Identity,
    IdentityError,
    IdentityProvider,
    IdentityUnavailable,
)
from .shared import shared


class SpawnerIdentityMixin(LoggingConfigurable):
    """The user's directory identity, for a Spawner."""

    identity_class = Type(
        "aaltohub.identity.NSSIdentity",
        klass=IdentityProvider,
        help="""Where uid, gid, name, email and groups come from:
        ``aaltohub.LDAPIdentity``, ``aaltohub.NSSIdentity`` or
        ``aaltohub.StaticIdentity`` (or your own IdentityProvider).""",
    ).tag(config=True)

    #: The identity from auth_state, if the authenticator attached one.
    _auth_identity = Any(None)

    @property
    def identity_provider(self) -> IdentityProvider:
        return shared(
            self.identity_class,
            self.config,
            lambda: self.identity_class(config=self.config),
        )

    async def run_auth_state_hook(self, auth_state):
        self.remember_auth_state(auth_state)
        await super().run_auth_state_hook(auth_state)

    def remember_auth_state(self, auth_state: dict | None) -> None:
        """Take the identity the authenticator stored, if any."""
        record = (auth_state or {}).get("identity")
        if not record:
            return
        try:
            identity = Identity.from_dict(record)
        except ValueError as e:
            self.log.warning(
                "ignoring identity in auth_state of %s: %s", self.user.name, e
            )
            return
        if identity.username == self.user.name:
            self._auth_identity = identity
            self.identity_provider.remember(identity)

    async def get_identity(self) -> Identity:
        provider = self.identity_provider
        try:
            return await provider.lookup(self.user.name)
        except IdentityUnavailable:
            if self._auth_identity is not None:
                self.log.warning(
                    "spawn user=%s action=identity outcome=auth-state-fallback",
                    self.user.name,
                )
                return self._auth_identity
            raise

    async def get_viewer(self, strict: bool = False) -> Viewer:
        """The user as the access rules see them.

        With ``strict=False`` (building the form) a failed lookup yields a
        viewer without groups: the form still renders, and the real check
        at spawn time reports the problem.
        """
        try:
            identity = await self.get_identity()
            groups = identity.groups
        except IdentityError as e:
            if strict:
                raise
            self.log.warning(
                "profile list for %s without groups: %s", self.user.name, e
            )
            groups = frozenset()
        return Viewer(self.user.name, bool(self.user.admin), groups)
