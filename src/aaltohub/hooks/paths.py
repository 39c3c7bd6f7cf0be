"""Rendering storage sub-paths from templates, safely."""

from __future__ import annotations

import posixpath

from ..plan import SpawnContext


class UnsafePath(ValueError):
    pass


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
    parts = path.strip("/").split("/")
    if (
        path.startswith("/")
        or "\0" in path
        or any(p in ("", ".", "..") for p in parts)
        or posixpath.normpath(path) != path.rstrip("/")
    ):
        raise UnsafePath(f"refusing storage path {path!r} from template {template!r}")
    return path.rstrip("/")
