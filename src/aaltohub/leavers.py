"""Leavers: whose home may be archived, and why. Pure.

A home is a leaver's when its owner has not used the hub since a date (the
hub's ``last_activity``), never logged in to the hub at all, or is no
longer in the directory. ``aaltohub users inactive`` lists them; ``users
archive`` moves their homes aside, and :mod:`aaltohub.retention` deletes
an archived home after ``c.Retention.homes_days``, with the same warning
period as course data.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

NEVER = "never logged in to the hub"
GONE = "not in the directory"


@dataclass(frozen=True)
class Leaver:
    username: str
    path: str  # the home, relative to the storage root
    last_activity: datetime.datetime | None
    reasons: tuple[str, ...]


def leavers(
    homes: Iterable[tuple[str, str]],
    last_activity: Mapping[str, datetime.datetime | None],
    since: datetime.datetime,
    in_directory: Callable[[str], bool] | None = None,
) -> list[Leaver]:
    """Homes (username, path) whose owner is inactive since ``since``.

    ``last_activity`` has every user the hub knows (None: never active);
    ``in_directory`` answers whether a username still exists (None: not
    checked).
    """
    out = []
    for username, path in homes:
        reasons = []
        if username not in last_activity:
            reasons.append(NEVER)
            seen = None
        else:
            seen = last_activity[username]
            if seen is None:
                reasons.append(NEVER)
            elif seen < since:
                reasons.append(f"no activity since {seen:%Y-%m-%d}")
        if in_directory is not None and not in_directory(username):
            reasons.append(GONE)
        if reasons:
            out.append(Leaver(username, path, seen, tuple(reasons)))
    return sorted(out, key=lambda leaver: leaver.username)
