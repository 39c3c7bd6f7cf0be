"""One instance per hub configuration of the things every user shares.

The catalog, the identity provider (and its cache) and the hook objects are
cheap to ask and expensive to build; the authenticator and every spawner
object of a hub get the same ones, keyed by the hub's config object.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")

_REGISTRY: dict[tuple, tuple[object, object]] = {}


def shared(key: Hashable, config: object, factory: Callable[[], T]) -> T:
    """Return the instance for (key, config), building it on first use."""
    slot = (key, id(config))
    hit = _REGISTRY.get(slot)
    if hit is None or hit[0] is not config:  # ids can be reused after GC
        hit = _REGISTRY[slot] = (config, factory())
    return hit[1]


def shared_instance(cls: type[T], config: object) -> T:
    """The one ``cls(config=config)`` of this hub config."""
    return shared(cls, config, lambda: cls(config=config))
