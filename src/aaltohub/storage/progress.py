"""A one-line progress counter on stderr for long storage walks.

Owns only the terminal output: ``course check``, ``fix`` and ``archive``
pass one to :func:`aaltohub.storage.course_dirs.run`, which calls
:meth:`Progress.update` as it scans. :mod:`.course_dirs` re-exports it.
"""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line progress counter on stderr, for long walks.

    Walks do not know their size in advance (counting first would double
    the cost), so this shows entries seen and the rate. It stays silent for
    the first ``delay`` seconds so short runs print nothing.
    """

    def __init__(self, enabled: bool | None = None, stream=None, delay=0.5):
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled
        self.delay = delay
        self.label = ""
        self._start = time.monotonic()
        self._last = 0.0
        self._shown = False

    def update(self, count: int, label: str | None = None) -> None:
        if not self.enabled:
            return
        if label is not None:
            self.label = label
        now = time.monotonic()
        elapsed = now - self._start
        if elapsed < self.delay or now - self._last < 0.1:
            return
        self._last = now
        rate = count / elapsed if elapsed else 0
        line = f"{self.label[:50]:<50} {count:>10,} entries {rate:>9,.0f}/s"
        self.stream.write("\r" + line)
        self.stream.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
