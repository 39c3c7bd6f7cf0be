"""Authenticators: attach an Identity to any login, and a password login
against LDAP.

``IdentityAuthenticatorMixin`` goes in front of any JupyterHub Authenticator::

    from oauthenticator.azuread import AzureAdOAuthenticator
    from aaltohub.auth import IdentityAuthenticatorMixin

    class AzureAD(IdentityAuthenticatorMixin, AzureAdOAuthenticator):
        pass

    c.JupyterHub.authenticator_class = AzureAD
    c.AzureAD.identity_class = "aaltohub.identity.LDAPIdentity"
    c.LDAPIdentity.server_urls = ["ldaps://ldap.example.org"]

After a successful login the user's identity (uid, gid, home, name, email,
groups) is stored in ``auth_state["identity"]``, and users the directory
does not know (or cannot be served, e.g. system uids) are refused.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jupyterhub.auth import Authenticator
from tornado import web
from traitlets import (
    Float,
    Instance,
    List,
    TraitError,
    Type,
    Unicode,
    default,
    validate,
)

from .auth_audit import audited_login, note_refusal
from .catalog import CourseCatalog
from .config_check import raise_for_problems
from .identity import (
    Identity,
    IdentityError,
    IdentityProvider,
    IdentityUnavailable,
    InvalidIdentity,
    InvalidUsername,
    LDAPIdentity,
    UnknownUser,
)
from .identity.ldap_login import LoginResult, check_password_sync
from .shared import shared, shared_instance
from .storage.paths import StoragePaths

#: auth_state keys written by the mixin (read by the spawner).
AUTH_STATE_IDENTITY = "identity"
# Tasks started at hub start, referenced until done (asyncio keeps weak refs).
_BACKGROUND: set[asyncio.Task] = set()
AUTH_STATE_IDENTITY_TIME = "identity_updated"

_REASONS = {
    InvalidUsername: "invalid-username",
    UnknownUser: "unknown-user",
    InvalidIdentity: "invalid-identity",
    IdentityUnavailable: "directory-unavailable",
}


def _reason(error: IdentityError) -> str:
    for cls, reason in _REASONS.items():
        if isinstance(error, cls):
            return reason
    return "identity-error"


def _show(name: object) -> str:
    """A username safe for one log line, even if it is hostile input."""
    text = str(name)
    return repr(text if len(text) <= 64 else text[:64] + "...")


def _outcome_seen(task: asyncio.Future) -> None:
    # A search started next to a login may fail (a wrong user name); the
    # login reports that, or nothing, so its error is not "never retrieved".
    if not task.cancelled():
        task.exception()


def identity_from_auth_state(auth_state: dict[str, Any] | None) -> Identity | None:
    """The identity stored by the mixin, or None (no auth_state, or invalid)."""
    data = (auth_state or {}).get(AUTH_STATE_IDENTITY)
    if not isinstance(data, dict):
        return None
    try:
        return Identity.from_dict(data)
    except ValueError:
        return None


class IdentityAuthenticatorMixin(Authenticator):
    """Adds a directory identity to the logins of any Authenticator.

    Put it first in the bases: ``class A(IdentityAuthenticatorMixin, X)``.
    Works without ``enable_auth_state`` too: then logins are still checked
    against the directory, and the spawner looks the identity up itself.
    """

    identity_class = Type(
        default_value="aaltohub.identity.NSSIdentity",
        klass=IdentityProvider,
        help="""Identity provider that maps a login name to uid, gid, home,
        name, email and groups: ``aaltohub.identity.NSSIdentity`` (sssd),
        ``aaltohub.identity.LDAPIdentity`` or
        ``aaltohub.identity.StaticIdentity``. Configure it in its own section,
        e.g. ``c.LDAPIdentity.server_urls``.""",
    ).tag(config=True)

    start_check_timeout = Float(
        60.0,
        help="""Seconds the configuration check at hub start may take. It
        reads the catalog directory and storage paths, which may be on NFS:
        if they do not answer in time, the hub starts anyway and logs an
        error, instead of hanging its start.""",
    ).tag(config=True)

    identity_provider = Instance(
        IdentityProvider,
        help="""The provider instance, created from ``identity_class`` on
        first use. Not configurable; set ``identity_class`` instead.""",
    )

    @default("identity_provider")
    def _default_identity_provider(self):
        # Shared with the spawners of this hub (one cache): an identity looked
        # up at login is reused at spawn time. c.LDAPIdentity.* applies.
        return shared(
            self.identity_class,
            self.config,
            lambda: self.identity_class(config=self.config, log=self.log),
        )

    def check_allow_config(self):
        super().check_allow_config()
        # JupyterHub calls this once at startup: build the provider and the
        # storage paths now, so a bad identity setting or path template
        # stops the hub with a message naming it, instead of failing the
        # first login or spawn.
        _ = self.identity_provider
        shared_instance(StoragePaths, self.config)
        # The same checks as `aaltohub check-config`: an unknown option, a
        # broken identity setup, an unreadable catalog, a default image that
        # is no image, auth_state without a crypt key stop the hub here.
        raise_for_problems(
            self.config,
            authenticator=self,
            log=self.log,
            timeout=self.start_check_timeout,
        )
        self._preload_catalog()
        # LDAP: connections kept open and checked (LDAPIdentity.pool_keep_open).
        self.identity_provider.start_background()

    def _preload_catalog(self) -> None:
        """Load the course catalog now, in a thread, so the first burst of
        spawns after a hub start does not pay for it (it waits for the same
        load if it comes first)."""
        catalog = shared_instance(CourseCatalog, self.config)
        if not catalog.path:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not inside the hub (a check from a script)
        task = loop.create_task(catalog.ensure_fresh())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    # --- login ------------------------------------------------------------------
    def _refuse(self, handler, username, reason: str, message: str = "", detail=""):
        """Log a refused login; show ``message`` on the login page if there is
        one (a real request), else return None like a failed password."""
        note_refusal(reason)  # for the login's audit record
        self.log.warning(
            "auth user=%s outcome=refused reason=%s%s",
            _show(username),
            reason,
            f" detail={detail!r}" if detail else "",
        )
        if handler is not None and message:
            # JupyterHub renders HTTPError messages on the login form.
            raise web.HTTPError(403, "%s", message)
        return None

    async def get_authenticated_user(self, handler, data):
        """JupyterHub's login, with one audit record per attempt: the name
        typed (normalized) and why it failed; never the password."""
        login = super().get_authenticated_user(handler, data)
        return await audited_login(self, data, login)

    async def run_post_auth_hook(self, handler, auth_model):
        # Runs inside get_authenticated_user after the name was normalised and
        # allowed_users / blocked_users were checked, for every authenticator.
        name = auth_model["name"]
        try:
            identity = await self.identity_provider.lookup(name)
        except IdentityError as e:
            return self._refuse(handler, name, _reason(e), str(e), detail=str(e))
        except Exception as e:
            # A bug or broken config must be a failed login, never a 500.
            self.log.exception("auth user=%s identity lookup crashed", _show(name))
            return self._refuse(
                handler,
                name,
                "internal-error",
                "Login failed because the identity lookup failed. The hub "
                "operator can find the details in the hub log.",
                detail=repr(e),
            )
        auth_state = dict(auth_model.get("auth_state") or {})
        auth_state[AUTH_STATE_IDENTITY] = identity.to_dict()
        auth_state[AUTH_STATE_IDENTITY_TIME] = time.time()
        auth_model["auth_state"] = auth_state
        self.log.info(
            "auth user=%s outcome=ok uid=%s gid=%s groups=%d",
            _show(name),
            identity.uid,
            identity.gid,
            len(identity.groups),
        )
        # The deployer's post_auth_hook runs last, so it can use the identity.
        return await super().run_post_auth_hook(handler, auth_model)

    # --- refresh ------------------------------------------------------------------
    async def refresh_user(self, user, handler=None):
        """Refresh ``auth_state["identity"]`` once it is older than the
        provider's ``cache_ttl``. A directory outage keeps the old identity;
        a user who vanished from the directory must log in again (and is
        then refused)."""
        result = await super().refresh_user(user, handler)
        if not result:
            return result
        name = user.name
        if self.enable_auth_state:
            if isinstance(result, dict) and "auth_state" in result:
                auth_state = dict(result["auth_state"] or {})
            else:
                auth_state = dict(await user.get_auth_state() or {})
            stamp = auth_state.get(AUTH_STATE_IDENTITY_TIME)
            if (
                identity_from_auth_state(auth_state) is not None
                and isinstance(stamp, int | float)
                and time.time() - stamp < self.identity_provider.cache_ttl
            ):
                return result
        try:
            identity = await self.identity_provider.lookup(name)
        except (InvalidUsername, UnknownUser, InvalidIdentity) as e:
            self.log.warning(
                "auth user=%s outcome=refused reason=%s action=refresh detail=%r",
                _show(name),
                _reason(e),
                str(e),
            )
            return False
        except Exception as e:
            # Unavailable directory (or a bug): keep what we have, retry later.
            self.log.warning(
                "auth user=%s outcome=stale action=refresh detail=%r", _show(name), e
            )
            return result
        if not self.enable_auth_state:
            return result
        auth_state[AUTH_STATE_IDENTITY] = identity.to_dict()
        auth_state[AUTH_STATE_IDENTITY_TIME] = time.time()
        model = dict(result) if isinstance(result, dict) else {}
        model["auth_state"] = auth_state
        return model


class LDAPIdentityAuthenticator(IdentityAuthenticatorMixin, Authenticator):
    """Username/password login against LDAP, with the identity attached.

    The server settings come from ``c.LDAPIdentity.*`` (configure them once):
    the authenticator uses its identity provider when that is an
    LDAPIdentity, else a separate LDAPIdentity configured the same way.

    Without ``bind_dn_template`` it searches the user's DN with the service
    account (``LDAPIdentity.bind_dn``, ``user_search_filter``) and then binds
    as that DN with the password ("search then bind"). The entry found is
    the user's identity: a login makes one search, not two. All LDAP calls
    run in the provider's thread pool, each bounded by
    ``LDAPIdentity.lookup_timeout``; while the directory is down, logins
    are refused at once with "try again in a minute".
    """

    bind_dn_template = List(
        Unicode(),
        help="""DN templates to bind with directly, skipping the search, e.g.
        ``["uid={username},ou=people,dc=example,dc=org"]``. ``{username}`` is
        RDN-escaped. Tried in order until one accepts the password. Empty
        means search then bind.""",
    ).tag(config=True)

    ldap_identity = Instance(
        LDAPIdentity,
        help="""The LDAPIdentity whose server settings are used for logins:
        the identity provider itself when it is an LDAPIdentity.""",
    )

    @default("identity_class")
    def _default_identity_class(self):
        return LDAPIdentity

    @default("ldap_identity")
    def _default_ldap_identity(self):
        if isinstance(self.identity_provider, LDAPIdentity):
            return self.identity_provider
        return LDAPIdentity(parent=self)

    @validate("bind_dn_template")
    def _check_templates(self, proposal):
        for template in proposal["value"]:
            if "{username}" not in template:
                raise TraitError(
                    f"LDAPIdentityAuthenticator.bind_dn_template {template!r} "
                    "must contain {username}"
                )
        return proposal["value"]

    def check_allow_config(self):
        super().check_allow_config()
        # Logins use their own LDAPIdentity when the identities come from
        # elsewhere: keep its connections open too.
        self.ldap_identity.start_background()

    def normalize_username(self, username):
        # "  Alice " and "alice" are the same account in the directory.
        return super().normalize_username(username.strip())

    async def authenticate(self, handler, data):
        data = data or {}
        raw, password = data.get("username"), data.get("password")
        if not isinstance(raw, str) or not isinstance(password, str):
            return self._refuse(handler, raw, "missing-credentials")
        username = self.normalize_username(raw)
        # Validate before the name goes anywhere near a filter or a DN.
        try:
            self.identity_provider.validate_username(username)
        except InvalidUsername:
            return self._refuse(handler, raw, "invalid-username")
        if not password:
            # An empty password would be an "unauthenticated bind", which
            # many servers accept as success.
            return self._refuse(handler, username, "empty-password")
        ldap = self.ldap_identity
        unavailable = (
            "The university directory could not be reached, so you cannot log "
            "in right now. Please try again in a minute."
        )
        search = self._search_meanwhile(username)
        try:
            result = await ldap.run_blocking(
                check_password_sync,
                ldap,
                username,
                password,
                tuple(self.bind_dn_template),
            )
        except TimeoutError as e:
            return self._refuse(
                handler, username, "ldap-unavailable", unavailable, detail=str(e)
            )
        except OSError as e:
            return self._refuse(
                handler, username, "ldap-unavailable", unavailable, str(e)
            )
        except IdentityError as e:
            return self._refuse(handler, username, _reason(e), str(e), detail=str(e))
        except Exception as e:
            self.log.exception("auth user=%s LDAP login crashed", _show(username))
            return self._refuse(handler, username, "internal-error", detail=repr(e))
        if result.dn is None:
            # Same generic message for unknown user and wrong password.
            return self._refuse(handler, username, result.reason)
        try:
            self._keep_identity(username, result)
            if search is not None:
                await self._accept_search(username, search)
        except IdentityError as e:
            return self._refuse(handler, username, _reason(e), str(e), detail=str(e))
        return {"name": username, "auth_state": {"ldap_dn": result.dn}}

    def _search_meanwhile(self, username: str) -> asyncio.Task | None:
        """With DN templates the bind needs no search first, and the
        identity search needs no bind: start the search now, so a login is
        one round trip instead of two. Its result is only looked at, and
        only kept as the user's identity, once the password was right
        (:meth:`_accept_search`); a failed login drops it. The price: a
        wrong password also costs the directory a search."""
        ldap = self.ldap_identity
        if not self.bind_dn_template or self.identity_provider is not ldap:
            return None
        task = asyncio.ensure_future(ldap.run_blocking(ldap.lookup_sync, username))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)
        task.add_done_callback(_outcome_seen)
        return task

    async def _accept_search(self, username: str, search: asyncio.Task) -> None:
        """After a right password: keep what the parallel search found as
        the identity (UnknownUser or InvalidIdentity if it is unusable). If
        the directory did not answer it, the post-login lookup asks again
        (or uses the stale identity)."""
        try:
            identity = await asyncio.shield(search)
        except (TimeoutError, OSError):
            return
        self.identity_provider.accept(username, identity)

    def _keep_identity(self, username: str, result: LoginResult) -> None:
        """Seed the provider's cache with the identity the login's search
        found, so the post-login lookup needs no second search. Raises the
        entry's problem, or UnknownUser/InvalidIdentity, now that the
        password was right."""
        if result.problem is not None:
            raise result.problem
        if result.searched and self.identity_provider is self.ldap_identity:
            self.identity_provider.accept(username, result.identity)
