"""LDAPDirectory: the connection side of LDAPIdentity.

Which servers, how to bind, how long to wait, and the reused service
connections (``ldap_pool.py``), kept warm by a background task
(:meth:`LDAPDirectory.keep_warm`). Searches and identities are in
``ldap.py``; the wire-level plumbing is in ``ldap_connection.py``. Apart
from that task, everything here is blocking and runs in the provider's
thread pool (``calls.py``).

Settings are configured as ``c.LDAPIdentity.*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from traitlets import Bool, Float, Int, List, TraitError, Unicode, validate

from .. import metrics
from . import ldap_connection
from .base import IdentityProvider
from .calls import DirectoryDown, current_call
from .ldap_pool import ConnectionPool, cut_connection

T = TypeVar("T")


class LDAPDirectory(IdentityProvider):
    """Connections to an LDAP directory; base class of LDAPIdentity."""

    source_name = "the LDAP directory"

    # --- connection ------------------------------------------------------------
    server_urls = List(
        Unicode(),
        help="""LDAP servers to try in order, e.g.
        ``["ldaps://ldap1.example.org", "ldap://ldap2.example.org:389"]``.
        The next one is tried when a server cannot be reached.""",
    ).tag(config=True)

    use_starttls = Bool(
        False,
        help="""Upgrade ``ldap://`` connections with StartTLS before binding,
        so passwords never cross the network in clear text. Ignored for
        ``ldaps://`` URLs, which are encrypted from the start.""",
    ).tag(config=True)

    tls_ca_file = Unicode(
        "",
        help="""PEM file with the CA certificate(s) that signed the LDAP
        server certificate. Empty uses the system trust store.""",
    ).tag(config=True)

    tls_validate = Bool(
        True,
        help="""Verify the LDAP server's certificate and host name. Only turn
        this off for a test directory: without it anyone on the network path
        can impersonate the directory and read passwords.""",
    ).tag(config=True)

    bind_dn = Unicode(
        "",
        help="""DN of the read-only service account used for searches, e.g.
        ``cn=jupyterhub,ou=services,dc=example,dc=org``. Empty binds
        anonymously.""",
    ).tag(config=True)

    bind_password = Unicode(
        "",
        help="""Password of ``bind_dn``. Read it from the environment or a
        mounted secret in jupyterhub_config.py rather than writing it there.""",
    ).tag(config=True)

    connect_timeout = Float(
        3.0,
        help="""Seconds to wait for a TCP connection to one LDAP server
        before trying the next.""",
    ).tag(config=True)

    receive_timeout = Float(
        3.0,
        help="""Seconds (rounded up to whole seconds) to wait for an answer
        to one LDAP request. A directory that does not answer within it
        counts as down, so a login answers "try again in a minute" within
        about this long instead of hanging. Keep it above the slowest round
        trip the directory has on a bad day (a search under load): the
        default serves a directory taking 2 s per request and still answers
        every login within 5 s when it hangs.""",
    ).tag(config=True)

    pool_size = Int(
        16,
        help="""Bound service-account connections kept open for reuse. A
        search on a kept connection costs one round trip instead of three
        (TCP handshake, bind, search). Connections beyond this are opened
        for a burst and closed afterwards.""",
    ).tag(config=True)

    pool_keep_open = Int(
        4,
        help="""Service-account connections kept open and bound at all
        times, so the first logins of a burst find one ready: a search on
        it is one round trip instead of two (bind, search). A background
        task, started with the hub, runs every 5 seconds: it checks the
        connection idle longest, and each one idle for half of
        ``pool_max_idle``, with a tiny request (reading the root DSE),
        which keeps firewalls from dropping them; then it opens the
        missing ones (never while a burst has them in use). A directory
        that stops answering is noticed there within a few seconds, before
        a login has to wait for it: logins then get "try again in a
        minute" at once. Size it to the logins expected within one round
        trip at the start of a big lecture; 0 turns the task off.
        ``pool_size`` is raised to at least this.""",
    ).tag(config=True)

    pool_max_idle = Float(
        60.0,
        help="""Seconds a kept connection may sit unused and still be
        reused. Older ones are closed instead: firewalls and directory
        servers drop idle connections, often silently.""",
    ).tag(config=True)

    retry_interval = Float(
        10.0,
        help="""Seconds after the directory was found unreachable during
        which further calls fail at once instead of waiting on it again
        (logins get "try again in a minute", spawns use the cached
        identity). After that one call at a time checks whether it is
        back.""",
    ).tag(config=True)

    @validate("server_urls")
    def _check_urls(self, proposal):
        for url in proposal["value"]:
            if not url.lower().startswith(("ldap://", "ldaps://")):
                raise TraitError(
                    f"LDAPIdentity.server_urls: {url!r} must start with "
                    "ldap:// or ldaps://"
                )
        return proposal["value"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._pool: tuple[tuple, ConnectionPool] | None = None
        self._dns: dict[str, tuple[str, float]] = {}
        self._last_good = ""
        self._pool_lock = threading.Lock()
        self._warm_task: asyncio.Task | None = None

    #: Seconds between two rounds of :meth:`keep_warm`.
    keep_warm_interval = 5.0

    # --- connections (plumbing in ldap_connection.py) -------------------------
    def _servers(self) -> list[str]:
        """``server_urls``, starting with the one that answered last, so a
        dead first replica costs one connect timeout, not one per connection."""
        urls = list(self.server_urls)
        if self._last_good in urls:
            urls.remove(self._last_good)
            urls.insert(0, self._last_good)
        return urls

    def _answered(self, url: str) -> None:
        self._last_good = url

    @staticmethod
    def _track(conn) -> None:
        call = current_call()
        if call is not None:
            call.track(conn, cut_connection)

    def connect(self, user: str | None = None, password: str | None = None):
        """Open a connection to the first reachable server and bind.

        Binds as ``user`` if given, else as the service account. Returns the
        ldap3 Connection; check ``conn.bound`` (a wrong password is not an
        exception). Raises ConnectionError if no server answers. Blocking:
        call it from a thread.
        """
        if user is None:
            user, password = (self.bind_dn or None), (self.bind_password or None)
        return ldap_connection.open_connection(
            self._servers(),
            user,
            password,
            tls_validate=self.tls_validate,
            tls_ca_file=self.tls_ca_file,
            use_starttls=self.use_starttls,
            connect_timeout=self.connect_timeout,
            receive_timeout=self.receive_timeout,
            track=self._track,
            answered=self._answered,
        )

    def close(self, conn) -> None:
        """Close a connection from :meth:`connect` (ignores errors)."""
        call = current_call()
        if call is not None:
            call.untrack(conn)
        ldap_connection.close(conn)

    def connection_pool(self) -> ConnectionPool:
        """The pool of service connections for the current settings."""
        key = (
            tuple(self.server_urls),
            self.bind_dn,
            self.bind_password,
            self.use_starttls,
            self.tls_validate,
            self.tls_ca_file,
        )
        with self._pool_lock:  # threads of one burst must share one pool
            if self._pool is None or self._pool[0] != key:
                if self._pool is not None:
                    # Unbinding sends to the old servers: never on the
                    # caller's thread, which may be the event loop
                    # (keep_warm asks for the pool there).
                    old = self._pool[1]
                    threading.Thread(target=old.clear, daemon=True).start()
                pool = ConnectionPool(
                    self.connect,
                    ldap_connection.close,
                    size=max(self.pool_size, self.pool_keep_open),
                    max_idle=self.pool_max_idle,
                )
                self._pool = (key, pool)
            return self._pool[1]

    @contextlib.contextmanager
    def service_connection(self) -> Iterator[Any]:
        """A connection bound as the service account, from the pool; it goes
        back to the pool if the block finished without error."""
        pool = self.connection_pool()
        conn, _reused = pool.acquire()
        with (
            pool.borrow(conn),
            ldap_connection.service_session(conn, self.bind_dn, keep=True) as conn,
        ):
            yield conn

    def with_service(self, work: Callable[[Any], T]) -> T:
        """``work(conn)`` on a service connection. A kept connection that the
        server closed while idle fails at once; then the work is retried
        once on a new connection (never after a slow failure, which means
        the directory itself is in trouble)."""
        pool = self.connection_pool()
        for attempt in (1, 2):
            conn, reused = pool.acquire()
            started = time.monotonic()
            try:
                with (
                    pool.borrow(conn),
                    ldap_connection.service_session(conn, self.bind_dn, keep=True),
                ):
                    return work(conn)
            except ConnectionError:
                call = current_call()
                quick = time.monotonic() - started < 0.5
                if attempt == 2 or not (reused and quick) or (call and call.abandoned):
                    raise
                self.log.info("LDAP: a kept connection was closed; reconnecting")
        raise AssertionError("unreachable")  # the loop returns or raises

    # --- connections kept warm ------------------------------------------------
    def open_spare_sync(self, pool: ConnectionPool) -> None:
        """Open one more bound service connection into ``pool``."""
        conn, _reused = pool.acquire(fresh=True)
        with (
            pool.borrow(conn),
            ldap_connection.service_session(conn, self.bind_dn, keep=True),
        ):
            pass  # a failed bind raises; borrow() keeps it only if healthy

    def check_kept_sync(self, pool: ConnectionPool, idle_for: float) -> None:
        """Check the connection of ``pool`` idle longest (if idle for
        ``idle_for`` seconds) with a one-round-trip request; it goes back
        only if the directory answered on it."""
        conn = pool.take_oldest_idle(idle_for)
        if conn is None:
            return
        with (
            pool.borrow(conn),
            ldap_connection.service_session(conn, self.bind_dn, keep=True),
        ):
            ldap_connection.read_root_dse(conn)

    async def keep_warm(self) -> None:
        """One round, two steps.

        1. Check kept connections, each as its own call: every one idle for
           half of ``pool_max_idle`` (before firewalls forget them), and at
           least the one idle longest, so a directory that stopped
           answering is found within a round. A failed check only drops its
           connection (a firewall may have cut just that one): checks do not
           move the breaker.
        2. Open the missing ones. These do move it: if the directory cannot
           be reached, it is marked down and logins are told to retry at
           once, before any of them waited on it."""
        pool = self.connection_pool()
        due = pool.idle_since(self.pool_max_idle / 2)
        idle_for = self.pool_max_idle / 2 if due else self.keep_warm_interval
        checks = [
            self.run_blocking(self.check_kept_sync, pool, idle_for, breaker=False)
            for _ in range(max(due, 1))
        ]
        outcomes = await asyncio.gather(*checks, return_exceptions=True)
        missing = max(0, self.pool_keep_open - pool.open_count)
        opens = [self.run_blocking(self.open_spare_sync, pool) for _ in range(missing)]
        outcomes += await asyncio.gather(*opens, return_exceptions=True)
        errors = {
            repr(e)
            for e in outcomes
            if isinstance(e, Exception) and not isinstance(e, DirectoryDown)
        }
        if errors:
            self.log.warning(
                "LDAP: keeping %d connections open: %s. If this repeats,"
                " check that the directory answers from the hub and"
                " LDAPIdentity.server_urls, bind_dn and bind_password.",
                self.pool_keep_open,
                "; ".join(sorted(errors)),
            )
        metrics.LDAP_POOL_CONNECTIONS.labels(state="idle").set(pool.idle)
        metrics.LDAP_POOL_CONNECTIONS.labels(state="in-use").set(pool.lent)

    async def _keep_warm_forever(self) -> None:
        while True:
            try:
                await self.keep_warm()
            except Exception:
                self.log.exception("LDAP: keeping connections open failed")
            await asyncio.sleep(self.keep_warm_interval)

    def start_background(self) -> None:
        """Start keeping ``pool_keep_open`` connections warm (once; on the
        running loop; a no-op outside one, e.g. in ``aaltohub check-config``)."""
        if self.pool_keep_open <= 0 or self._warm_task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._warm_task = loop.create_task(self._keep_warm_forever())

    def stop_background(self) -> None:
        """Stop keeping connections warm (tests; a hub stops with its loop)."""
        if self._warm_task is not None:
            self._warm_task.cancel()
            self._warm_task = None

    # --- the DNs found by searches, so a re-login within cache_ttl binds only --
    def cached_dn(self, username: str) -> str | None:
        hit = self._dns.get(username)
        if hit and time.monotonic() - hit[1] < self.cache_ttl:
            return hit[0]
        return None

    def remember_dn(self, username: str, dn: str) -> None:
        self._dns[username] = (dn, time.monotonic())

    def forget_dn(self, username: str) -> None:
        self._dns.pop(username, None)
