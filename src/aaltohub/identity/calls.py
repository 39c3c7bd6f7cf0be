"""Blocking directory calls, run off the hub's event loop.

A directory that answers slowly must cost the hub waiting threads, never
failed logins or a frozen loop. This module owns how a blocking call runs:

- in a thread pool sized for *waiting* (threads blocked on the network cost
  memory, not CPU), so a burst of logins does not queue behind itself;
- with a timeout that counts the call itself, from the moment a thread
  starts it, not the time it spent queued for a thread (that wait has its
  own bound);
- a call that times out is *abandoned*: the connections it registered with
  :meth:`Call.track` are shut down, so its thread is freed at once and the
  connection is never reused;
- a breaker: once the directory was found unreachable, calls fail at once
  for ``retry_interval`` seconds, then one call at a time probes it. A dead
  directory therefore answers every login within the connect or receive
  timeout, however many users are waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import metrics

_local = threading.local()


class CallAbandoned(ConnectionError):
    """The caller gave up on this call (it timed out); stop and clean up."""


class DirectoryDown(ConnectionError):
    """The breaker is open: the directory failed recently, not asked again yet."""


class QueueTimeout(TimeoutError):
    """No thread became free in time to even start the call."""


class Call:
    """One blocking call, as seen from inside its thread.

    Code running in the call registers what it holds (``track``) so that the
    event loop side can cut it loose when the caller stops waiting.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: list[tuple[Any, Callable[[Any], None]]] = []
        self.abandoned = False
        self.started: float | None = None

    def track(self, resource: Any, cut: Callable[[Any], None]) -> None:
        """Register ``resource``; ``cut(resource)`` unblocks any thread using
        it (it must not block itself). Raises CallAbandoned if already too late."""
        with self._lock:
            if not self.abandoned:
                self._held.append((resource, cut))
                return
        cut(resource)
        raise CallAbandoned("the directory call was abandoned after its timeout")

    def untrack(self, resource: Any) -> None:
        with self._lock:
            self._held = [(r, c) for r, c in self._held if r is not resource]

    def abandon(self) -> None:
        """Mark abandoned and cut everything it holds (called on the loop)."""
        with self._lock:
            self.abandoned = True
            held, self._held = self._held, []
        for resource, cut in held:
            with contextlib.suppress(Exception):
                cut(resource)


def current_call() -> Call | None:
    """The call the current thread is running, if any."""
    return getattr(_local, "call", None)


def shut_socket(sock: socket.socket | None) -> None:
    """Unblock a thread waiting on ``sock`` (its recv returns at once)."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def _consume(future: asyncio.Future) -> None:
    # A call nobody waits for any more may still fail; that is expected.
    if not future.cancelled():
        future.exception()


class CallRunner:
    """Runs blocking calls for one provider: pool, timeouts, breaker."""

    def __init__(self, name: str, max_threads: int, retry_interval: float) -> None:
        self.name = name
        self.retry_interval = retry_interval
        self._pool = ThreadPoolExecutor(
            max_workers=max_threads, thread_name_prefix=name
        )
        self._down_until = 0.0
        self._down_reason = ""
        self._probing = False

    # --- breaker ---------------------------------------------------------------
    def _admit(self) -> bool:
        """True if this call is the probe of a directory marked down; raises
        DirectoryDown while the breaker is open."""
        if not self._down_reason or self.retry_interval <= 0:
            return False
        if time.monotonic() < self._down_until or self._probing:
            raise DirectoryDown(
                f"unreachable in the last {self.retry_interval:g} s "
                f"({self._down_reason})"
            )
        self._probing = True
        return True

    def _outcome(self, probe: bool, error: BaseException | None) -> None:
        if probe:
            self._probing = False
        if isinstance(error, DirectoryDown | QueueTimeout | asyncio.CancelledError):
            return
        if isinstance(error, TimeoutError | OSError):
            self._down_until = time.monotonic() + self.retry_interval
            self._down_reason = str(error) or type(error).__name__
        else:
            # An answer, even "no such user", means the directory is back.
            self._down_reason = ""

    @property
    def down(self) -> bool:
        return bool(self._down_reason)

    # --- running -------------------------------------------------------------
    async def run(
        self,
        func: Callable[..., Any],
        *args: Any,
        timeout: float,
        queue_timeout: float,
        breaker: bool = True,
    ) -> Any:
        """``func(*args)`` in a thread. Raises TimeoutError if it runs longer
        than ``timeout`` (QueueTimeout if it waited longer than
        ``queue_timeout`` for a thread), OSError if the directory is
        unreachable (DirectoryDown while known down). Without ``breaker``
        the call neither waits for nor moves the breaker: for checks whose
        failure says more about one connection than about the directory."""
        probe = self._admit() if breaker else False
        loop = asyncio.get_running_loop()
        call = Call()
        started = loop.create_future()

        def work():
            call.started = time.monotonic()
            loop.call_soon_threadsafe(_resolve, started)
            if call.abandoned:
                raise CallAbandoned("abandoned before it started")
            _local.call = call
            try:
                return func(*args)
            finally:
                _local.call = None

        cfuture = self._pool.submit(work)
        future = asyncio.wrap_future(cfuture)
        future.add_done_callback(_consume)
        error: BaseException | None = None
        try:
            return await self._wait(
                call, started, cfuture, future, timeout, queue_timeout
            )
        except BaseException as e:
            error = e
            raise
        finally:
            if breaker:
                self._outcome(probe, error)
            _measure(
                getattr(func, "__name__", "call").removesuffix("_sync"), call, error
            )

    async def _wait(self, call, started, cfuture, future, timeout, queue_timeout):
        try:
            await asyncio.wait_for(asyncio.shield(started), queue_timeout)
        except TimeoutError:
            if cfuture.cancel():
                raise QueueTimeout(
                    f"no free thread for {queue_timeout:g} s ({self.name} is "
                    "overloaded; raise max_threads)"
                ) from None
        except asyncio.CancelledError:
            call.abandon()
            cfuture.cancel()
            raise
        remaining = timeout - (time.monotonic() - (call.started or time.monotonic()))
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(remaining, 0))
        except TimeoutError:
            call.abandon()
            raise TimeoutError(f"no answer within {timeout:g} s") from None
        except asyncio.CancelledError:
            call.abandon()
            raise

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _measure(operation: str, call: Call, error: BaseException | None) -> None:
    """One directory call in LDAP_CALL_SECONDS (the call itself, from the
    moment a thread ran it) and, if it failed, in LDAP_ERRORS. An answer
    such as "no such user" is an ok call; the operation is the function's
    name without ``_sync`` (a fixed set, from code: ``lookup``,
    ``check_password``, and the kept connections' ``open_spare`` and
    ``check_kept``)."""
    if isinstance(error, asyncio.CancelledError):
        return  # the caller went away; says nothing about the directory
    if error is None or not isinstance(error, TimeoutError | OSError):
        outcome = "ok"
    elif isinstance(error, DirectoryDown):
        outcome = "unavailable"
    elif isinstance(error, TimeoutError):
        outcome = "timeout"
    else:
        outcome = "error"
    if outcome != "ok":
        metrics.LDAP_ERRORS.labels(operation=operation, kind=outcome).inc()
    if call.started is not None:
        took = time.monotonic() - call.started
        metrics.LDAP_CALL_SECONDS.labels(operation=operation, outcome=outcome).observe(
            took
        )
