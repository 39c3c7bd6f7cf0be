"""The Identity record and the provider base class: validation, TTL cache,
single-flight lookups in a thread pool, and stale-cache fallback.

Providers implement one blocking method, ``lookup_sync``; this class makes
sure it never runs on the hub's event loop and never holds a spawn hostage
for longer than ``lookup_timeout`` (see ``calls.py`` for how blocking calls
are run, timed and abandoned).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from traitlets import Float, Int, Unicode
from traitlets.config import LoggingConfigurable

from .. import metrics
from .calls import CallRunner


@dataclass(frozen=True)
class Identity:
    """Who a user is on campus storage: the numbers the NFS server checks."""

    username: str
    uid: int
    gid: int
    home: str = ""
    name: str = ""
    email: str = ""
    groups: frozenset[str] = field(default_factory=frozenset)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, as stored in JupyterHub's auth_state."""
        return {
            "username": self.username,
            "uid": self.uid,
            "gid": self.gid,
            "home": self.home,
            "name": self.name,
            "email": self.email,
            "groups": sorted(self.groups),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        """Rebuild from ``to_dict`` output; raises ValueError on bad data."""
        try:
            return cls(
                username=str(data["username"]),
                uid=int(data["uid"]),
                gid=int(data["gid"]),
                home=str(data.get("home") or ""),
                name=str(data.get("name") or ""),
                email=str(data.get("email") or ""),
                groups=frozenset(str(g) for g in data.get("groups") or ()),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a valid identity record: {e}") from e


#: The default rule for usernames: lowercase institutional account names
#: such as ``darstr1`` or ``first.last``. Storage code that runs without a
#: provider (the storage helper) uses the same default.
DEFAULT_USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
#: The default smallest uid a server may run as (no system accounts, no root).
DEFAULT_MIN_UID = 1000


def username_ok(username: object, pattern: str) -> bool:
    """True if ``username`` fully matches ``pattern`` and has no ``..``."""
    return (
        isinstance(username, str)
        and ".." not in username
        and re.fullmatch(pattern, username) is not None
    )


class IdentityError(Exception):
    """A lookup failed; the message is shown to the user, so it names the fix."""


class InvalidUsername(IdentityError):
    pass


class UnknownUser(IdentityError):
    pass


class IdentityUnavailable(IdentityError):
    """The directory could not be reached and no cached value exists."""


class InvalidIdentity(IdentityError):
    """The directory answered, but the record is unusable (e.g. a system uid)."""


class IdentityProvider(LoggingConfigurable):
    """Base class: maps a username to an :class:`Identity`.

    Subclasses implement :meth:`lookup_sync`. It runs in a small thread pool
    with a timeout, so a slow directory never blocks the hub's event loop.
    """

    #: Short human name of the backend, used in error messages.
    source_name = "the identity directory"

    cache_ttl = Float(
        300.0,
        help="""Seconds a looked-up identity is reused without asking the
        directory again. Group membership changes take up to this long to be
        noticed.""",
    ).tag(config=True)

    stale_ttl = Float(
        7 * 24 * 3600.0,
        help="""Seconds an expired cached identity may still be used when the
        directory cannot be reached. Set to 0 to never serve stale data.""",
    ).tag(config=True)

    lookup_timeout = Float(
        10.0,
        help="""Seconds one directory call (a lookup, or a login's search and
        password check) may take, counted from when a thread starts it. A
        call that takes longer is abandoned and its connection discarded;
        the spawn or login then fails with a clear message (a spawn may use
        a stale cached value, see stale_ttl). Waiting for a free thread does
        not count; see queue_timeout.""",
    ).tag(config=True)

    queue_timeout = Float(
        30.0,
        help="""Seconds a directory call may wait for a free thread (see
        max_threads) before it fails as overloaded. Threads free up within
        lookup_timeout, since a call that takes longer is abandoned.""",
    ).tag(config=True)

    max_threads = Int(
        64,
        help="""Threads that may wait on the directory at once, shared by
        logins and lookups. They spend their time waiting on the network,
        not computing, so size this for the number of logins a burst
        brings at once (the first lecture of a big course), not for CPUs.
        Calls beyond this queue (without blocking the event loop).""",
    ).tag(config=True)

    #: Seconds calls fail at once after the source was found unreachable
    #: (the breaker in ``calls.py``). Local sources (a file, NSS) have none:
    #: asking them again costs nothing. LDAPIdentity makes it an option.
    retry_interval: float = 0.0

    username_pattern = Unicode(
        DEFAULT_USERNAME_PATTERN,
        help="""Regular expression every username must match before it is
        looked up or used in a path. The default allows lowercase
        institutional account names such as ``darstr1`` or ``first.last``.""",
    ).tag(config=True)

    min_uid = Int(
        DEFAULT_MIN_UID,
        help="""Smallest uid a notebook server may run as. Identities below it
        (system accounts, root) are refused.""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._cache: dict[str, tuple[Identity, float]] = {}
        self._inflight: dict[str, asyncio.Future] = {}
        self._runner: CallRunner | None = None

    # --- what subclasses implement -------------------------------------------
    def lookup_sync(self, username: str) -> Identity | None:
        """Blocking lookup; return None when the user does not exist.

        Raise ``ConnectionError`` (or ``OSError``) when the directory cannot
        be reached, so the caller can fall back to the cache.
        """
        raise NotImplementedError

    # --- public async API ----------------------------------------------------
    def validate_username(self, username: str) -> str:
        if not username_ok(username, self.username_pattern):
            raise InvalidUsername(
                f"Username {username!r} is not a valid institutional account "
                "name. Log out and log in again with your lowercase university "
                "username."
            )
        return username

    def cached(self, username: str) -> Identity | None:
        """The cached identity if still fresh, without any I/O."""
        hit = self._cache.get(username)
        if hit and time.monotonic() - hit[1] < self.cache_ttl:
            return hit[0]
        return None

    def known(self) -> list[Identity]:
        """Every identity this hub has seen recently enough to fall back on
        (within ``stale_ttl``), without any I/O."""
        now = time.monotonic()
        return [i for i, t in list(self._cache.values()) if now - t < self.stale_ttl]

    def remember(self, identity: Identity) -> None:
        """Seed the cache, e.g. from auth_state after a hub restart."""
        self._cache[identity.username] = (identity, time.monotonic())

    def accept(self, username: str, identity: Identity | None) -> Identity:
        """Check what the directory returned for ``username`` and cache it.

        Raises UnknownUser (None) or InvalidIdentity (a system uid). Used for
        every identity the directory hands out, also one found at login.
        """
        if identity is None:
            raise UnknownUser(
                f"User {username} was not found in {self.source_name}. Check "
                "that you logged in with your university account, or ask the "
                "hub operator to add you."
            )
        if identity.uid < self.min_uid:
            raise InvalidIdentity(
                f"User {username} has uid {identity.uid}, below the minimum "
                f"{self.min_uid} allowed for notebook servers (system accounts "
                "cannot start servers)."
            )
        self.remember(identity)
        return identity

    @property
    def directory_down(self) -> bool:
        """True while the directory is known to be unreachable."""
        return self._runner is not None and self._runner.down

    async def run_blocking(self, func, *args, breaker: bool = True):
        """``func(*args)`` in the provider's thread pool, bounded by
        ``lookup_timeout`` from when it starts (see ``calls.CallRunner``).
        With ``breaker=False`` its failure does not mark the directory down
        (and it runs while the directory is marked down).

        Raises TimeoutError or OSError when the directory does not answer.
        """
        if self._runner is None:
            self._runner = CallRunner(
                type(self).__name__, self.max_threads, self.retry_interval
            )
        return await self._runner.run(
            func,
            *args,
            timeout=self.lookup_timeout,
            queue_timeout=self.queue_timeout,
            breaker=breaker,
        )

    def start_background(self) -> None:
        """Start what the provider does on its own while the hub runs; the
        authenticators call it at hub start. Nothing by default."""

    async def lookup(self, username: str) -> Identity:
        """Return the identity of ``username`` or raise :class:`IdentityError`."""
        self.validate_username(username)
        fresh = self.cached(username)
        if fresh is not None:
            return fresh
        # Single flight: a burst of requests for one user asks the directory
        # once. The lookup is its own task, so a waiter that is cancelled
        # (a closed browser tab) does not cancel it for the others.
        task = self._inflight.get(username)
        if task is None:
            task = asyncio.ensure_future(self._lookup_uncached(username))
            self._inflight[username] = task
            task.add_done_callback(lambda t: self._lookup_done(username, t))
        return await asyncio.shield(task)

    def _lookup_done(self, username: str, task: asyncio.Future) -> None:
        self._inflight.pop(username, None)
        if not task.cancelled():
            task.exception()  # mark retrieved even if every waiter went away

    # --- internals -----------------------------------------------------------
    def _observe(self, started: float, outcome: str) -> None:
        metrics.IDENTITY_LOOKUPS.labels(
            provider=type(self).__name__, outcome=outcome
        ).observe(time.monotonic() - started)

    async def _lookup_uncached(self, username: str) -> Identity:
        started = time.monotonic()
        try:
            identity = await self.run_blocking(self.lookup_sync, username)
        except (TimeoutError, OSError) as e:
            self._observe(started, "unavailable")
            stale = self._cache.get(username)
            if stale and time.monotonic() - stale[1] < self.stale_ttl:
                self.log.warning(
                    "identity user=%s source=%s outcome=stale-cache error=%r",
                    username,
                    self.source_name,
                    e,
                )
                return stale[0]
            self.log.error(
                "identity user=%s source=%s outcome=unavailable error=%r",
                username,
                self.source_name,
                e,
            )
            reason = (
                f"timed out after {self.lookup_timeout:g} s"
                if isinstance(e, TimeoutError)
                else str(e)
            )
            raise IdentityUnavailable(
                f"Could not look up {username} in {self.source_name} ({reason}). "
                "Please try again in a minute; if it persists, the hub operator "
                "should check the directory connection."
            ) from e
        self._observe(started, "unknown" if identity is None else "found")
        identity = self.accept(username, identity)
        self.log.debug(
            "identity user=%s source=%s outcome=ok uid=%s took=%.3fs",
            username,
            self.source_name,
            identity.uid,
            time.monotonic() - started,
        )
        return identity
