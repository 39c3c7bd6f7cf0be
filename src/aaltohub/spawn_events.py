"""SpawnEventsMixin: a server's start, failure and stop, as audit records
and per-course metrics.

It goes first in an adapter's bases (``CourseSpawner``,
``LocalCourseSpawner``, ``SlurmCourseSpawner``), so it sees the whole of
``start()``: the plan, the backend's start and its failure (an adapter
that defines ``start`` itself wraps it in
:meth:`SpawnEventsMixin.recorded_start`). What it writes:

- ``server-start`` when ``start()`` returned (the pod or process runs;
  JupyterHub then waits ``http_timeout`` for it to answer, and a server
  that never answers is stopped: ``server-stop`` with that reason);
- ``server-fail`` (reason ``<cause>: <what the user was told>``) when
  ``start()`` raised; the cause is one of :data:`metrics.FAILURE_CAUSES`,
  set by the adapter in :attr:`start_failure_cause` (a name outside that
  list is counted as ``other``), or ``timeout`` when JupyterHub gave up
  after ``start_timeout``;
- ``server-stop`` or ``cull`` (the stop request came from one of
  ``AuditLog.cull_services``) when a running server stops, and
  ``server-stop`` with reason "exited by itself" when the hub finds a
  server gone.

``aaltohub_running_servers`` is kept in step with the same events. It is
the hub process's own count, so after a hub restart it is rebuilt from the
servers the hub finds running: JupyterHub polls each of them at start-up
(``poll()`` below counts a running server not yet counted).
"""

from __future__ import annotations

import asyncio
import time

from jupyterhub.utils import maybe_future
from traitlets.config import LoggingConfigurable

from . import metrics
from .audit import RequestContext, audit_log, current_request, server_target
from .jupyterhub_api import waiting_for_response


class SpawnEventsMixin(LoggingConfigurable):
    """Audit records and metrics of a spawner's starts and stops."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        #: The adapter's cause of a failed start (a FAILURE_CAUSES name)
        #: and what the user was told, set before start() raises.
        self.start_failure_cause = ""
        self.start_failure_reason = ""
        self._events_counted: tuple[str, str] | None = None  # RUNNING_SERVERS labels
        self._events_pending: str | None = None  # PENDING_SPAWNS label
        self._events_starting = False
        self._events_stopping = False
        # A failed start's pod or process may linger until JupyterHub's
        # stop(): it is not a running server (poll) nor a stop to record.
        self._events_failed = False

    # --- helpers ---------------------------------------------------------------
    def _event_labels(self) -> tuple[str, str]:
        record = getattr(self, "server_record", None)
        if record is None:
            return "", ""
        return record.course or "", record.role or ""

    def _event(self, action: str, course: str, outcome="ok", reason="", **fields):
        user = self.user.name
        fields.setdefault("actor", user)
        audit_log(self.config).record(
            action,
            target=server_target(user, getattr(self, "name", "") or ""),
            course=course,
            outcome=outcome,
            reason=reason,
            **fields,
        )

    def _count(self, labels: tuple[str, str]) -> None:
        if self._events_counted is None:
            self._events_counted = labels
            metrics.RUNNING_SERVERS.labels(course=labels[0], role=labels[1]).inc()

    def _uncount(self) -> tuple[str, str] | None:
        labels, self._events_counted = self._events_counted, None
        if labels is not None:
            metrics.RUNNING_SERVERS.labels(course=labels[0], role=labels[1]).dec()
        return labels

    # --- start ---------------------------------------------------------------------
    async def build_plan(self, course, role, defaults):
        plan = await super().build_plan(course, role, defaults)
        if self._events_starting and self._events_pending is None:
            self._events_pending = course.slug if course else ""
            metrics.PENDING_SPAWNS.labels(course=self._events_pending).inc()
        return plan

    def start(self):
        # A future, as KubeSpawner's start() returns (callers may poll it).
        return asyncio.ensure_future(self.recorded_start(super().start))

    async def recorded_start(self, start):
        """``start()`` with its records and metrics. An adapter whose own
        ``start`` does the work (LocalCourseSpawner) calls this around it."""
        self.start_failure_cause = self.start_failure_reason = ""
        self._events_starting = True
        self._events_failed = False
        began = time.monotonic()
        try:
            result = await maybe_future(start())
        except (Exception, asyncio.CancelledError) as e:
            self._record_start_failure(e, time.monotonic() - began)
            raise
        finally:
            self._events_starting = False
            if self._events_pending is not None:
                metrics.PENDING_SPAWNS.labels(course=self._events_pending).dec()
                self._events_pending = None
        labels = self._event_labels()
        metrics.SPAWN_DURATION.labels(course=labels[0], outcome="success").observe(
            time.monotonic() - began
        )
        self._uncount()  # a start over a server counted as running (restart)
        self._count(labels)
        self._event("server-start", labels[0], reason=f"role {labels[1]}")
        return result

    def _record_start_failure(self, error: BaseException, took: float) -> None:
        self._events_failed = True
        status = getattr(error, "status_code", 500)
        cause = self.start_failure_cause
        recorded = status in (400, 403) or getattr(error, "audit_recorded", False)
        if not cause and recorded:
            # Refused, or the directory failed, before the plan: the spawn
            # record (spawn.py) says why and counted it.
            return
        if not cause:
            timed_out = isinstance(error, TimeoutError | asyncio.CancelledError)
            cause = "timeout" if timed_out else "other"
        reason = self.start_failure_reason or _first_line(error) or cause
        course = self._event_labels()[0] or (self._events_pending or "")
        metrics.SPAWN_DURATION.labels(course=course, outcome="failure").observe(took)
        counted = metrics.count_spawn_failure(course, cause)
        if counted != cause:  # an adapter's own name: keep it in the words
            reason = f"{cause}: {reason}"
        self._event("server-fail", course, "failed", f"{counted}: {reason}")

    # --- stop ------------------------------------------------------------------------
    async def stop(self, now=False):
        if self._events_starting:
            # A failed start cleaning up: recorded as server-fail.
            return await super().stop(now)
        labels = self._events_counted
        self._events_stopping = True
        try:
            result = await super().stop(now)
        finally:
            self._events_stopping = False
        if labels is not None and self._events_counted == labels:
            self._uncount()
            self._stopped(labels)
        return result

    def _stopped(self, labels: tuple[str, str]) -> None:
        context = current_request()
        if context is None:
            self._event("server-stop", labels[0], reason="stopped by the hub")
            return
        # Whether the culler asked is known once JupyterHub authenticated the
        # request (the stop may finish before or after that).
        never_ready = waiting_for_response(self)
        context.when_finished(lambda c: self._stopped_by(c, labels, never_ready))

    def _stopped_by(self, context: RequestContext, labels, never_ready) -> None:
        log = audit_log(self.config)
        actor = context.actor or self.user.name
        if context.actor_is_service and context.actor in log.cull_services:
            metrics.CULLS.labels(course=labels[0]).inc()
            self._event("cull", labels[0], reason="idle or too old", actor=actor)
            return
        reason = "never answered (http_timeout)" if never_ready else "stopped"
        self._event("server-stop", labels[0], reason=reason, actor=actor)

    # --- found running or gone -------------------------------------------------------
    async def poll(self):
        status = await super().poll()
        busy = self._events_starting or self._events_stopping or self._events_failed
        if status is None and not busy:
            # Running and not counted: a server this hub process did not
            # start (it was restarted). Count it; no record, nothing happened.
            self._count(self._event_labels())
        return status

    def clear_state(self):
        if self._events_counted is not None and not (
            self._events_starting or self._events_stopping
        ):
            # The server ended without stop(): it exited or was deleted.
            labels = self._uncount()
            self._event("server-stop", labels[0], reason="exited by itself")
        self._events_failed = False
        super().clear_state()


def _first_line(error: BaseException) -> str:
    message = getattr(error, "jupyterhub_message", None) or getattr(
        error, "log_message", None
    )
    text = str(message or error or "")
    return text.splitlines()[0] if text else type(error).__name__
