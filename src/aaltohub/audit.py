"""The audit log: one JSON object per line, for who did what and why.

Every record has the same fields (:data:`FIELDS`), so ``aaltohub audit``
and a log collector can filter them without parsing prose::

    {"time": "2026-11-26T03:40:00.123Z", "actor": "alice", "action": "login",
     "target": "alice", "course": "", "outcome": "ok", "reason": "",
     "request_id": "9c1d..."}

The hub and the CLI write through :class:`AuditLog`. Records go to a queue
and a background thread writes them (``logging``'s QueueHandler and
QueueListener), so a slow disk or NFS never blocks the hub's event loop;
that thread's handlers, rotation and retention are in
:mod:`aaltohub.audit_writer`.
The deployer chooses the destination: a file with size-based rotation and
a retention period, or standard output as a stream of its own (for a
cluster's log collector, next to the hub's prose log on standard error).

What is never recorded: passwords, tokens, form values other than the
chosen profile, notebook contents and environment variables (see
docs/operations.md, "Audit log").
"""

from __future__ import annotations

import atexit
import collections
import contextvars
import getpass
import json
import logging
import logging.handlers
import os
import queue
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from traitlets import Enum, Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from .audit_writer import (
    FlushingHandler,
    FlushMarker,
    LazyHandler,
    RetainingFileHandler,
)

# Readers (audit_query, ``aaltohub audit``) import it from here.
from .audit_writer import rotated_files as rotated_files
from .shared import shared_instance

#: The fields of every record, in the order they are written.
FIELDS = (
    "time",
    "actor",
    "action",
    "target",
    "course",
    "outcome",
    "reason",
    "request_id",
)

#: Environment variable the CLI reads for the log's path when no
#: ``--audit-log`` is given (the hub pod sets it; see deploy/kubernetes).
PATH_ENV = "AALTOHUB_AUDIT_LOG"

# A reason is free text from code (an error message); cap it so one
# record stays one readable line.
MAX_REASON = 500

#: The actions the hub writes, and their outcomes (see docs/operations.md,
#: "Audit log"). Readers (the instructor's course page, ``aaltohub audit
#: --action``) match these names; the CLI's are :data:`CLI_ACTIONS`.
ACTIONS = {
    "login": ("ok", "failed"),
    "logout": ("ok",),
    "spawn": ("ok", "refused", "failed"),
    "server-start": ("ok",),
    "server-fail": ("failed",),
    "server-stop": ("ok",),
    "cull": ("ok",),
    "admin-api": ("ok", "failed"),
}

#: The actions the CLI's commands write: ``<command>`` or
#: ``<command>.<step>`` through ``commands.course_common.Audit`` (outcome
#: ``dry-run`` under ``--dry-run``), and ``grade`` and ``announce`` (see
#: docs/operations.md, "Audit log"). test_audit.py checks the commands'
#: code against this list.
CLI_ACTIONS = (
    "course.create",
    "course.create.change",
    "course.fix",
    "course.fix.change",
    "course.archive.flag",
    "course.archive.storage",
    "course.new-term.course-file",
    "course.new-term.files",
    "course.end-term.access",
    "course.end-term.notice",
    "course.end-term.servers",
    "course.end-term.stop",
    "course.end-term.gradebook",
    "course.end-term.flag",
    "course.end-term.storage",
    "course.end-term.archive",
    "retention.warn",
    "retention.delete",
    "users.archive",
    "users.restore",
    "grade",
    "announce",
)


# --- the request a record belongs to --------------------------------------------------
class RequestContext:
    """The HTTP request being handled, for every record it causes.

    Set once per request (by :mod:`aaltohub.web.hub_events`) in a context
    variable, which asyncio copies into the tasks the request starts (a
    server's stop runs in one), so a login, a spawn and its start share
    ``request_id``. Who made the request is known once JupyterHub has
    authenticated it; work that needs to know (is this stop a cull?) waits
    for :meth:`finish` with :meth:`when_finished`.
    """

    def __init__(self, request_id: str = ""):
        self.request_id = request_id or uuid.uuid4().hex
        self.actor = ""
        self.actor_is_service = False
        self.finished = False
        self._waiting: list[Callable[[RequestContext], None]] = []

    def when_finished(self, callback: Callable[[RequestContext], None]) -> None:
        """``callback(self)`` once the requester is known (now, if it is)."""
        if self.finished:
            _call_quietly(callback, self)
        else:
            self._waiting.append(callback)

    def finish(self, actor: str, is_service: bool) -> None:
        self.actor, self.actor_is_service, self.finished = actor, is_service, True
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            _call_quietly(callback, self)


_REQUEST: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "aaltohub_request", default=None
)


def begin_request(request_id: str = "") -> RequestContext:
    """Start the context of a new request (in the current context)."""
    context = RequestContext(request_id)
    _REQUEST.set(context)
    return context


def current_request() -> RequestContext | None:
    """The request being handled, or None (startup, polling, the CLI)."""
    return _REQUEST.get()


def server_target(user: str, server: str = "") -> str:
    """A server as a record's target: ``alice``, or ``alice/name``."""
    return f"{user}/{server}" if server else user


def _call_quietly(callback, context) -> None:
    try:
        callback(context)
    except Exception:  # an audit failure must not fail a request
        logging.getLogger(__name__).exception("audit callback failed")


def now_iso() -> str:
    """UTC time with milliseconds, as every record's ``time``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_record(
    action: str,
    *,
    actor: str = "",
    target: str = "",
    course: str | None = "",
    outcome: str = "ok",
    reason: str = "",
    request_id: str = "",
) -> dict:
    """One record with every field, as strings (None becomes ""). Without a
    ``request_id``, the current request's (:func:`current_request`)."""
    if not request_id:
        context = current_request()
        request_id = context.request_id if context is not None else ""
    reason = str(reason or "")
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 1] + "…"
    return {
        "time": now_iso(),
        "actor": str(actor or ""),
        "action": str(action),
        "target": str(target or ""),
        "course": str(course or ""),
        "outcome": str(outcome or ""),
        "reason": reason,
        "request_id": str(request_id or ""),
    }


class AuditLog(LoggingConfigurable):
    """Where audit records go. One per hub config: :func:`audit_log`."""

    destination = Enum(
        ["stdout", "file", "off"],
        "stdout",
        help="""Where the audit log goes: 'stdout' (one JSON object per line
        on standard output, a stream separate from the hub's log on standard
        error, for a cluster's log collector), 'file' (``path``, rotated by
        size), or 'off'.""",
    ).tag(config=True)

    path = Unicode(
        "",
        help=f"""The log file when ``destination`` is 'file', e.g.
        /srv/jupyterhub/audit.log (on the hub's volume). Rotated files get
        .1, .2, ... suffixes. The CLI reads ${PATH_ENV} when it is not
        given a path.""",
    ).tag(config=True)

    max_bytes = Integer(
        10 * 1024 * 1024,
        help="Rotate the file when it would grow past this many bytes.",
    ).tag(config=True)

    backup_count = Integer(
        20,
        help="""Rotated files kept (audit.log.1 ... audit.log.N); older ones
        are deleted at rotation.""",
    ).tag(config=True)

    retention_days = Float(
        365.0,
        help="""Days a rotated file is kept. Rotated files older than this
        are deleted when the log rotates or is opened (0: keep them, up to
        ``backup_count``).""",
    ).tag(config=True)

    recent_size = Integer(
        5000,
        help="""Records kept in memory for the hub's own pages (the
        instructor's course page shows a course's recent spawn failures from
        them), whatever the destination.""",
    ).tag(config=True)

    cull_services = List(
        Unicode(),
        ["course-culler", "jupyterhub-idle-culler", "idle-culler", "cull-idle"],
        help="""Names of the JupyterHub services whose server stops are
        recorded as action 'cull' (and counted in aaltohub_culls) instead of
        'server-stop': the idle culler's service name (the deployment's
        course-culler; z2jh's own is jupyterhub-idle-culler). Needs the request hooks of
        ``aaltohub.web.hub_events.configure``.""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._recent: collections.deque[dict] = collections.deque(
            maxlen=max(self.recent_size, 0)
        )
        self._lock = threading.Lock()
        self._listener: logging.handlers.QueueListener | None = None
        self._queue: queue.SimpleQueue | None = None
        #: A record was not written (destination off, or not queued).
        self._unwritten = False

    # --- writing ---------------------------------------------------------------------
    def record(self, action: str, **fields) -> dict:
        """Queue one record (see :func:`make_record` for the fields) and
        return it. Never raises and never waits for the disk."""
        entry = make_record(action, **fields)
        self._recent.append(entry)
        if self.destination == "off":
            self._unwritten = True
            return entry
        try:
            self._ensure_started()
            self._queue.put(_line_record(entry))
        except Exception as e:  # an audit failure must not fail a login
            self._unwritten = True
            self.log.error("audit log: could not queue %s: %r", action, e)
        return entry

    def recent(self, **match) -> list[dict]:
        """Records kept in memory (newest last) whose fields equal ``match``,
        e.g. ``recent(course="cs-101", action="spawn", outcome="failed")``."""
        return [
            r
            for r in list(self._recent)
            if all(r.get(k) == v for k, v in match.items())
        ]

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued record is written (tests, CLI exit).

        True only if every record so far was written without an error
        (``retention apply`` deletes nothing otherwise); False after a
        write error, a record that could not be queued, destination 'off'
        or ``timeout`` seconds."""
        if self._unwritten:
            return False
        if self._queue is None:
            return True  # nothing was recorded
        marker = FlushMarker(threading.Event())
        self._queue.put(marker)
        return marker.event.wait(timeout) and marker.ok

    def close(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
            for handler in listener.handlers:
                handler.close()

    def _ensure_started(self) -> None:
        if self._listener is not None:
            return
        with self._lock:
            if self._listener is not None:
                return
            self._check_path()
            # Built by the writing thread at the first record: mkdir, open
            # and the expiry of rotated files touch the disk, never the
            # caller's thread (the hub's event loop).
            handler = LazyHandler(self._make_handler)
            self._queue = queue.SimpleQueue()
            listener = logging.handlers.QueueListener(
                self._queue, FlushingHandler(handler)
            )
            listener.start()
            self._listener = listener
            atexit.register(self.close)

    def _make_handler(self) -> logging.Handler:
        if self.destination == "stdout":
            return logging.StreamHandler(sys.stdout)
        self._check_path()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        handler = RetainingFileHandler(
            self.path,
            maxBytes=self.max_bytes,
            backupCount=self.backup_count,
            encoding="utf-8",
        )
        handler.retention_seconds = self.retention_days * 86400
        handler.delete_expired()
        return handler

    def _check_path(self) -> None:
        if self.destination == "file" and not self.path:
            raise ValueError(
                "c.AuditLog.destination is 'file' but c.AuditLog.path is empty;"
                " set a path on the hub's volume, e.g. /srv/jupyterhub/audit.log"
            )


def audit_log(config) -> AuditLog:
    """The one AuditLog of this hub config."""
    return shared_instance(AuditLog, config)


def cli_actor() -> str:
    """Who runs a CLI command, for its records: the sudo user if any (an
    admin behind ``sudo``, not root), else the login name, else the uid."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def cli_audit_log(path: str | None = None) -> AuditLog:
    """The AuditLog a CLI command writes to: ``path``, else $AALTOHUB_AUDIT_LOG,
    else standard output is left alone (the command's output) and records
    go nowhere but the returned object's :meth:`AuditLog.record` value."""
    path = path or os.environ.get(PATH_ENV, "")
    if path:
        return AuditLog(destination="file", path=path)
    return AuditLog(destination="off")


# --- internals ------------------------------------------------------------------------
def _line_record(entry: dict) -> logging.LogRecord:
    # Keys in FIELDS order. ASCII only: a typed username or a reason can
    # hold terminal control characters (C1 ones too, which JSON leaves
    # as they are), and operators `cat` and `grep` this file; json escapes
    # newlines, so one record is always one line.
    line = json.dumps({k: entry[k] for k in FIELDS})
    return logging.makeLogRecord({"msg": line, "levelno": logging.INFO})
