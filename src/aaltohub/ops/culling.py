"""Per-course idle-cull limits for jupyterhub-idle-culler.

A course's ``cull: {inactive_timeout, max_age}`` is kept in the spawner
state, in the server's :class:`~aaltohub.servers.ServerRecord`.
jupyterhub-idle-culler passes each server model, including its state, to
``IdleCuller.cull_arbiter_hook``; this arbiter applies the course's limits
there, and the culler's own
``--timeout`` / ``--max-age`` to servers without course limits.

In the culler's config file (the service needs the ``admin:server_state``
scope to see the state)::

    from aaltohub.ops.culling import course_cull_arbiter
    c.IdleCuller.cull_arbiter_hook = course_cull_arbiter

The hub records the culler's stops as action ``cull`` in the audit log
(and counts them in ``aaltohub_culls``) when its service name is in
``c.AuditLog.cull_services`` (the deployment's ``course-culler`` is); see
docs/operations.md, "Audit log".

Servers adopted from Aalto's hub (``ServerRecord.origin == "aalto"``) keep
Aalto's rule: the larger of the culler's default and the course's limit.
For Aalto's rule on every server (``c.CourseCatalog.aalto_cull_only_lengthens``
on the hub), give the culler the same rule and the hub's default maximum
age::

    from aaltohub.ops.culling import make_course_cull_arbiter
    c.IdleCuller.cull_arbiter_hook = make_course_cull_arbiter(
        only_lengthens=True, default_max_age=8 * 3600)
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ..course import Cull
from ..servers import ORIGIN_AALTO, ServerRecord

log = logging.getLogger(__name__)


def course_limits(server: dict) -> tuple[int | None, int | None]:
    """(inactive_timeout, max_age) in seconds from a server model, or None."""
    record = ServerRecord.from_state(server.get("state"))
    if record is None:
        return None, None
    return record.cull_inactive_timeout, record.cull_max_age


def _age_seconds(server: dict, now: datetime) -> float | None:
    started = server.get("started")
    if not started:
        return None
    try:
        when = datetime.fromisoformat(started.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (now - when).total_seconds()


def _limits(server, inactive_limit, only_lengthens, default_max_age):
    record = ServerRecord.from_state(server.get("state"))
    if record is None:
        return inactive_limit, default_max_age
    cull = Cull(
        record.cull_inactive_timeout,
        record.cull_max_age,
        only_lengthens=only_lengthens or record.origin == ORIGIN_AALTO,
    )
    # a default max age of 0 means none: max() then keeps the course's
    return cull.effective(inactive_limit, default_max_age)


def _decide(inactive, inactive_limit, server, now, only_lengthens, default_max_age):
    timeout, max_age = _limits(server, inactive_limit, only_lengthens, default_max_age)
    if inactive.total_seconds() >= timeout:
        return True
    if max_age:
        age = _age_seconds(server, now or datetime.now(UTC))
        if age is not None and age >= max_age:
            log.info(
                "culling %s: course max_age %ss reached", server.get("name"), max_age
            )
            return True
    return False


def course_cull_arbiter(inactive, inactive_limit, server, now=None) -> bool:
    """True if the server should be culled under its course's limits."""
    return _decide(inactive, inactive_limit, server, now, False, 0)


def make_course_cull_arbiter(*, only_lengthens: bool = False, default_max_age: int = 0):
    """An arbiter with Aalto's "only lengthen" rule for every server, and
    the hub's default maximum age (seconds; 0: none) for servers without one."""

    def arbiter(inactive, inactive_limit, server, now=None, **_) -> bool:
        return _decide(
            inactive, inactive_limit, server, now, only_lengthens, default_max_age
        )

    return arbiter
