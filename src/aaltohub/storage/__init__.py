"""Storage administration: course directories, user homes, quota sources.

Nothing here imports JupyterHub; the hub reaches it through the spawn hooks
(:mod:`aaltohub.hooks.provision`, :mod:`aaltohub.hooks.quota`), the
:mod:`aaltohub.quota_web` page warnings and the ``aaltohub course`` and
``aaltohub quota`` commands.
"""

from __future__ import annotations

from ..shared import shared as _shared
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


def shared(cls, config):
    """One instance of ``cls`` per hub config (see :mod:`aaltohub.shared`).

    Spawn hooks hold no state; their quota source and provisioner keep
    caches (parsed reports, homes known to exist), so those are shared.
    """
    return _shared(cls, config, lambda: cls(config=config))


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
