"""Storage administration: course directories, user homes, quota sources.

Nothing here imports JupyterHub; the hub reaches it through the spawn hooks
(:mod:`aaltohub.hooks.provision`, :mod:`aaltohub.hooks.quota`), the
:mod:`aaltohub.quota_web` page warnings and the ``aaltohub course`` and
``aaltohub quota`` commands.
"""

from __future__ import annotations

from .layout import Entry, LayoutError, StorageLayout, TreeRule, UnsafePath
from .quota import (
    NoQuota,
    QuotaSource,
    ReportFileQuota,
    StatvfsQuota,
    Usage,
)
from .user_dirs import (
    HomeProvisioner,
    LocalHomeProvisioner,
    NoHomeProvisioner,
    ProvisionError,
    RemoteCommandHomeProvisioner,
)

_SHARED: dict[tuple[type, int], tuple[object, object]] = {}


def shared(cls, config):
    """One instance of ``cls`` per hub config.

    Spawn hooks are built afresh for every spawn; their quota source and
    provisioner keep caches (parsed reports, homes known to exist), so those
    live here, keyed by class and config object.
    """
    key = (cls, id(config))
    hit = _SHARED.get(key)
    if hit is None or hit[0] is not config:
        hit = _SHARED[key] = (config, cls(config=config))
    return hit[1]


__all__ = [
    "Entry",
    "HomeProvisioner",
    "LayoutError",
    "LocalHomeProvisioner",
    "NoHomeProvisioner",
    "NoQuota",
    "ProvisionError",
    "QuotaSource",
    "RemoteCommandHomeProvisioner",
    "ReportFileQuota",
    "StatvfsQuota",
    "StorageLayout",
    "TreeRule",
    "UnsafePath",
    "Usage",
    "shared",
]
