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
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ..servers import ServerRecord

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


def course_cull_arbiter(inactive, inactive_limit, server, now=None) -> bool:
    """True if the server should be culled under its course's limits."""
    timeout, max_age = course_limits(server)
    limit = timeout if timeout is not None else inactive_limit
    if inactive.total_seconds() >= limit:
        return True
    if max_age is not None:
        age = _age_seconds(server, now or datetime.now(UTC))
        if age is not None and age >= max_age:
            log.info(
                "culling %s: course max_age %ss reached", server.get("name"), max_age
            )
            return True
    return False
