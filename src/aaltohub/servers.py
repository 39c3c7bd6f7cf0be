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

Aalto's hub (AaltoSciComp/jupyterhub-aalto) kept ``course_slug``,
``cull_max_age`` and ``cull_inactive_time`` at the top level of the
KubeSpawner state, next to ``pod_name``; a server it started is adopted
with those (``origin: aalto``). Aalto did not keep the role: it is read
from the server's ``user_options`` (``{"profile": "<slug>-instructor"}``,
which JupyterHub keeps in its database), else student.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: The key of the record in a spawner's state.
STATE_KEY = "aaltohub"
FORMAT_VERSION = 2
_V1_BACKEND_KEYS = ("isolation", "server_dir")
#: Top-level state keys of Aalto's hub (its get_state()).
AALTO_STATE_KEYS = ("course_slug", "cull_max_age", "cull_inactive_time")
ORIGIN_AALTO = "aalto"
_INSTRUCTOR_SUFFIX = "-instructor"


def _positive_int(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return value if ok else None


def _seconds(value: Any) -> int | None:
    """Aalto's limits: whole or fractional seconds, positive."""
    if isinstance(value, float) and value > 0 and value != float("inf"):
        return int(value)
    return _positive_int(value)


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
    #: "aalto" for a server adopted from Aalto's hub; its culler took the
    #: larger of the hub default and the course's limits.
    origin: str = ""

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
            "origin": self.origin,
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any] | None, user_options: dict | None = None
    ) -> ServerRecord | None:
        """The record in a spawner state (format 1 or 2, or Aalto's), or None.

        Values of the wrong type are dropped rather than trusted: the state
        comes back from the database, and the culler reads it too.
        ``user_options`` (the spawner's) only matter for Aalto's state.
        """
        data = (state or {}).get(STATE_KEY)
        if not isinstance(data, dict) or not data:
            return cls.from_aalto_state(state, user_options)
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
            origin=_text(data.get("origin")),
        )

    @classmethod
    def from_aalto_state(
        cls, state: dict[str, Any] | None, user_options: dict | None = None
    ) -> ServerRecord | None:
        """Adopt a server started by Aalto's hub, or None if ``state`` is
        not Aalto's. Its course is ``course_slug`` ("" for a general
        profile); its role instructor only if the profile it was started
        with was ``<course>-instructor`` (least privilege otherwise)."""
        state = state if isinstance(state, dict) else {}
        if not any(key in state for key in AALTO_STATE_KEYS):
            return None
        course = state.get("course_slug")
        course = course if isinstance(course, str) and course else None
        profile = (
            (user_options or {}).get("profile")
            if isinstance(user_options, dict)
            else None
        )
        instructor = course is not None and profile == course + _INSTRUCTOR_SUFFIX
        return cls(
            course=course,
            role="instructor" if instructor else "student",
            cull_inactive_timeout=_seconds(state.get("cull_inactive_time")),
            cull_max_age=_seconds(state.get("cull_max_age")),
            origin=ORIGIN_AALTO,
        )
