"""Storage administration: course directories, user homes, quota sources.

Nothing here imports JupyterHub; the hub reaches it through the spawn hooks
(:mod:`aaltohub.hooks.provision`, :mod:`aaltohub.hooks.quota`), the
:mod:`aaltohub.web.quota` page warnings and the ``aaltohub course`` and
``aaltohub quota`` commands.
"""

from __future__ import annotations

from .layout import Entry, LayoutError, StorageLayout, TreeRule
from .paths import StoragePaths, UnsafePath
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
    "StoragePaths",
    "TreeRule",
    "UnsafePath",
    "Usage",
]
