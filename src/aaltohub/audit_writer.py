"""Writing the audit log: the side of :mod:`aaltohub.audit` that does the I/O.

:class:`aaltohub.audit.AuditLog` puts each record, already one line of
JSON, on a queue; ``logging``'s QueueListener thread takes it from there
through the handlers here. A record is written by that thread, never by
the caller, so a slow disk or NFS never blocks the hub's event loop: even
the file is opened (and its directory made) by the writing thread, at the
first record (:class:`LazyHandler`). :class:`FlushingHandler` answers a
:class:`FlushMarker` once every record queued before it is out, and counts
write errors (``AuditLog.flush``: ``retention apply`` deletes nothing
unless its record was written).

The file is rotated by size into ``audit.log.1`` ... ``audit.log.N``;
rotated files past the retention period are deleted at each rotation and
when the file is opened (:class:`RetainingFileHandler`);
:func:`rotated_files` lists the log and its rotated files for readers
(``aaltohub audit``). Each line is written as it comes, and it is ASCII
only, one record per line (``aaltohub.audit._line_record``, which knows
the fields' order, makes it in the caller's thread): JSON escapes
newlines and control characters, and every non-ASCII character (C1
controls included), so a typed username or a reason cannot put terminal
control sequences in the file operators ``cat`` and ``grep``.
"""

from __future__ import annotations

import logging
import logging.handlers
import threading
import time
from collections.abc import Callable
from pathlib import Path


def rotated_files(path: str) -> list[Path]:
    """The log and its rotated files, oldest first."""
    base = Path(path)
    found = []
    for candidate in base.parent.glob(base.name + ".*"):
        suffix = candidate.name[len(base.name) + 1 :]
        if suffix.isdigit():
            found.append((int(suffix), candidate))
    files = [p for _, p in sorted(found, reverse=True)]
    if base.exists():
        files.append(base)
    return files


class FlushMarker:
    def __init__(self, event: threading.Event):
        self.event = event
        self.ok = False  # set by the writing thread before the event


class FlushingHandler(logging.Handler):
    """Writes records, and answers flush markers once those before are out."""

    def __init__(self, inner: logging.Handler):
        super().__init__()
        self.inner = inner
        self.handlers = [inner]
        #: Write errors so far: logging's emit() reports them only to
        #: handleError (a traceback on stderr), so count them there.
        self.errors = 0
        report = inner.handleError

        def handle_error(record):
            self.errors += 1
            report(record)

        inner.handleError = handle_error

    def handle(self, record):
        if isinstance(record, FlushMarker):
            try:
                self.inner.flush()
            except Exception:  # e.g. ENOSPC: records before it are lost
                self.errors += 1
            record.ok = self.errors == 0
            record.event.set()
            return True
        return self.inner.handle(record)

    def close(self):
        try:
            self.inner.close()
        except OSError:  # the last buffered records could not be written
            self.errors += 1
        super().close()


class LazyHandler(logging.Handler):
    """The real handler, built by ``make()`` at the first record, in the
    thread that writes (the listener's)."""

    def __init__(self, make: Callable[[], logging.Handler]):
        super().__init__()
        self.make = make
        self.real: logging.Handler | None = None

    def handle(self, record):
        if self.real is None:
            try:
                real = self.make()
            except Exception:  # e.g. the directory cannot be made: say so
                self.handleError(record)
                return False
            real.setFormatter(logging.Formatter("%(message)s"))
            # Write errors are reported where the caller counts them.
            real.handleError = lambda r: self.handleError(r)
            self.real = real
        return self.real.handle(record)

    def flush(self):
        if self.real is not None:
            self.real.flush()

    def close(self):
        if self.real is not None:
            self.real.close()
        super().close()


class RetainingFileHandler(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler that also deletes rotated files past retention."""

    retention_seconds = 0.0

    def doRollover(self):
        super().doRollover()
        self.delete_expired()

    def delete_expired(self) -> None:
        if self.retention_seconds <= 0:
            return
        cutoff = time.time() - self.retention_seconds
        base = Path(self.baseFilename)
        for path in rotated_files(self.baseFilename):
            if path == base:
                continue
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:
                pass
