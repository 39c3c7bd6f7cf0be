"""Reused service-account connections to the directory, for LDAPIdentity.

Opening a connection costs a TCP handshake and a bind, two round trips; on a
slow directory that doubles the cost of a search. The pool keeps a few
bound connections idle and hands each to one thread at a time (an ldap3
SYNC connection carries one operation at a time). A connection goes back
only after it worked: one that failed, timed out or whose call was
abandoned is closed, and one idle for longer than ``max_idle`` is closed
rather than trusted (firewalls silently drop idle flows, and a search on
such a connection would hang until the receive timeout).

ldap3 has pooled strategies of its own (REUSABLE, SAFE_RESTARTABLE); they
run their own worker threads or retry in loops on failure, which would
hide a dead directory behind retries. This pool only reuses; failing is
left to the caller and its breaker.

Keeping connections warm (``LDAPDirectory.keep_warm``) uses two more
things from here: how many connections are open (idle or lent out), so a
top-up never competes with a burst that has them all in use, and lending
out the one idle longest, to check it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from .calls import current_call, shut_socket


def cut_connection(conn: Any) -> None:
    """Unblock a thread using ``conn`` from another thread (never blocks)."""
    shut_socket(getattr(conn, "socket", None))


class ConnectionPool:
    """Idle bound connections, keyed by the settings that opened them."""

    def __init__(
        self,
        opener: Callable[[], Any],
        closer: Callable[[Any], None],
        *,
        size: int,
        max_idle: float,
    ) -> None:
        self._open = opener
        self._close = closer
        self.size = size
        self.max_idle = max_idle
        self._idle: deque[tuple[Any, float]] = deque()
        self._lock = threading.Lock()
        self.opened = 0  # connections opened, for tests and the benchmark
        self.lent = 0  # connections handed out and not yet released

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def open_count(self) -> int:
        """Connections idle or in use: what a top-up counts against."""
        with self._lock:
            return len(self._idle) + self.lent

    def _take_idle(self) -> Any | None:
        now = time.monotonic()
        stale = []
        conn = None
        with self._lock:
            while self._idle:
                candidate, since = self._idle.pop()  # most recently used first
                if now - since <= self.max_idle and not candidate.closed:
                    conn = candidate
                    break
                stale.append(candidate)
        for old in stale:
            self._close(old)
        return conn

    def acquire(self, fresh: bool = False) -> tuple[Any, bool]:
        """(connection, reused). Opens a new one when none is idle, or
        always when ``fresh``."""
        conn = None if fresh else self._take_idle()
        with self._lock:
            self.lent += 1
        if conn is not None:
            return conn, True
        try:
            conn = self._open()
        except BaseException:
            with self._lock:
                self.lent -= 1
            raise
        self.opened += 1
        return conn, False

    def idle_since(self, seconds: float) -> int:
        """How many idle connections have been unused for ``seconds`` or more."""
        now = time.monotonic()
        with self._lock:
            return sum(1 for _conn, since in self._idle if now - since >= seconds)

    def take_oldest_idle(self, seconds: float) -> Any | None:
        """Lend out the connection idle longest, if it has been unused for
        ``seconds`` or more (to be checked, then released); None if there is
        none. Ones past ``max_idle`` are closed on the way. Called from the
        thread that checks it, so a check that never runs holds nothing."""
        now = time.monotonic()
        stale, conn = [], None
        with self._lock:
            while self._idle:
                candidate, since = self._idle[0]  # the oldest
                if now - since > self.max_idle or candidate.closed:
                    stale.append(self._idle.popleft()[0])
                    continue
                if now - since >= seconds:
                    conn = self._idle.popleft()[0]
                    self.lent += 1
                break
        for old in stale:
            self._close(old)
        return conn

    def release(self, conn: Any, healthy: bool) -> None:
        with self._lock:
            self.lent -= 1
            usable = healthy and conn.bound and not conn.closed
            if usable and len(self._idle) < self.size:
                self._idle.append((conn, time.monotonic()))
                return
        self._close(conn)

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = list(self._idle), deque()
        for conn, _since in idle:
            self._close(conn)

    @contextlib.contextmanager
    def borrow(self, conn: Any) -> Iterator[Any]:
        """Use ``conn`` inside the current call: an abandoned call cuts it,
        and it returns to the pool only if the block finished cleanly."""
        call = current_call()
        healthy = False
        try:
            if call is not None:
                call.track(conn, cut_connection)
            yield conn
            healthy = call is None or not call.abandoned
        finally:
            if call is not None:
                call.untrack(conn)
            self.release(conn, healthy)
