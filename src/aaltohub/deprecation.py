"""Options that moved to another class keep working, with a warning.

When a setting gets a new home (one rule, one place), the class that now
owns it lists where it used to live; :func:`adopt_moved_options` copies a
value the deployer still sets under the old name and says what to change.
"""

from __future__ import annotations

import warnings

from traitlets.config import Configurable


def adopt_moved_options(owner: Configurable, moved: dict[tuple[str, str], str]) -> None:
    """For each ``(old class, old name) -> new name`` in ``moved``: if the
    config sets the old option and not the new one, use it and warn."""
    config = owner.config
    own_name = type(owner).__name__
    own = config.get(own_name, {})
    for (cls, old), new in moved.items():
        section = config.get(cls, {})
        if old not in section or new in own:
            continue
        warnings.warn(
            f"c.{cls}.{old} is deprecated: set c.{own_name}.{new} instead",
            DeprecationWarning,
            stacklevel=3,
        )
        setattr(owner, new, section[old])
