"""Rendering storage sub-paths from templates, safely.

The rule for what a safe sub-path is lives in
:func:`aaltohub.storage.layout.safe_relpath`, shared with the CLI and the
storage helper.
"""

from __future__ import annotations

from ..plan import SpawnContext
from ..storage.layout import UnsafePath, safe_relpath

__all__ = ["UnsafePath", "render_sub_path"]


def render_sub_path(template: str, ctx: SpawnContext, **extra) -> str:
    """Fill a sub-path template and refuse anything that could escape the
    volume (absolute paths, ``..``, empty components, NUL)."""
    ident = ctx.identity
    fields = dict(
        username=ident.username,
        uid=ident.uid,
        uid_last2digits=ident.uid_last2digits,
    )
    if ctx.course is not None:
        fields.update(course=ctx.course.slug, coursedir_slug=ctx.course.directory)
    fields.update(extra)
    path = template.format(**fields)
    # A trailing slash is harmless in a template; anything else is refused.
    return safe_relpath(path[:-1] if path.endswith("/") else path)
