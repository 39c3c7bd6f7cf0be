"""Options that moved to another class keep working, with a warning.

When a setting gets a new home (one rule, one place), the class that now
owns it lists where it used to live; :func:`adopt_moved_options` copies a
value the deployer still sets under the old name and says what to change.
"""

from __future__ import annotations

import logging
import warnings

from traitlets.config import Configurable, LazyConfigValue

log = logging.getLogger(__name__)


def adopt_moved_options(owner: Configurable, moved: dict[tuple[str, str], str]) -> None:
    """For each ``(old class, old name) -> new name`` in ``moved``: if the
    config sets the old option and not the new one, use it and warn.

    The warning is also logged: Python hides DeprecationWarnings raised in
    library code by default, and the deployer must hear it. Two old names
    of one new option that disagree are named too (the last one wins).
    """
    config = owner.config
    own_name = type(owner).__name__
    own = config.get(own_name, {})
    adopted: dict[str, tuple[str, object]] = {}
    for (cls, old), new in moved.items():
        section = config.get(cls, {})
        if old not in section or new in own:
            continue
        value = section[old]
        if isinstance(value, LazyConfigValue):  # e.g. c.X.y.append(...)
            value = value.get_value(getattr(owner, new))
        message = f"c.{cls}.{old} is deprecated: set c.{own_name}.{new} instead"
        if new in adopted and adopted[new][1] != value:
            message += f" (it differs from {adopted[new][0]}, which is ignored)"
        warnings.warn(message, DeprecationWarning, stacklevel=3)
        log.warning("%s", message)
        setattr(owner, new, value)
        adopted[new] = (f"c.{cls}.{old}", value)
