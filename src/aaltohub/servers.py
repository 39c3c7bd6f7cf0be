"""ServerRecord: what a running server is, kept in its spawner state.

JupyterHub stores each spawner's ``get_state()`` in its database and hands
it back after a hub restart; jupyterhub-idle-culler sees it in the server
model. The course part of that state is one versioned record, written and
read here only: the Kubernetes and local spawners and the culler all use
this type.

Format 2 (this one)::

    state["aaltohub"] = {"version": 2, "course": "intro", "role": "student",
                         "image": "...", "uid": 1001234,
                         "started": "2026-11-26T08:00:00+00:00",
                         "cull_inactive_timeout": 3600, "cull_max_age": 28800,
                         "backend": {...}}

Format 1 (before versioning) had no ``version`` and kept the local
spawner's ``isolation`` and ``server_dir`` at the top level; it still loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: The key of the record in a spawner's state.
STATE_KEY = "aaltohub"
FORMAT_VERSION = 2
_V1_BACKEND_KEYS = ("isolation", "server_dir")


def _positive_int(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return value if ok else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class ServerRecord:
    """The course facts of one running server."""

    #: Course slug; None for a general (non-course) profile.
    course: str | None
    role: str
    image: str = ""
    #: The user's institutional uid the server runs as.
    uid: int | None = None
    #: When the plan was applied, ISO 8601 in UTC.
    started: str = ""
    #: Idle-cull limits in seconds, from the course or the hub default.
    cull_inactive_timeout: int | None = None
    cull_max_age: int | None = None
    #: What only the backend that started it needs (local: its view's dir).
    backend: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def now() -> str:
        return datetime.now(UTC).isoformat(timespec="seconds")

    def to_state(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "course": self.course,
            "role": self.role,
            "image": self.image,
            "uid": self.uid,
            "started": self.started,
            "cull_inactive_timeout": self.cull_inactive_timeout,
            "cull_max_age": self.cull_max_age,
            "backend": dict(self.backend),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> ServerRecord | None:
        """The record in a spawner state (format 1 or 2), or None.

        Values of the wrong type are dropped rather than trusted: the state
        comes back from the database, and the culler reads it too.
        """
        data = (state or {}).get(STATE_KEY)
        if not isinstance(data, dict) or not data:
            return None
        if data.get("version", 1) == 1:
            backend = {k: data[k] for k in _V1_BACKEND_KEYS if k in data}
        else:
            backend = (
                data.get("backend") if isinstance(data.get("backend"), dict) else {}
            )
        course = data.get("course")
        uid = data.get("uid")
        return cls(
            course=course if isinstance(course, str) and course else None,
            role=_text(data.get("role")) or "student",
            image=_text(data.get("image")),
            uid=uid if isinstance(uid, int) and not isinstance(uid, bool) else None,
            started=_text(data.get("started")),
            cull_inactive_timeout=_positive_int(data.get("cull_inactive_timeout")),
            cull_max_age=_positive_int(data.get("cull_max_age")),
            backend=dict(backend),
        )
