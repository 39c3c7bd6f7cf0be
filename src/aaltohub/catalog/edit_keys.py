"""Setting and removing top-level keys of a course file, as text edits.

``aaltohub course new-term`` and ``end-term`` change a few keys (``term:``,
``students:``, ``archive:``) of files that people wrote by hand. Like
:func:`aaltohub.catalog.edit.set_archive_flag`, these are text edits: the
author's comments, order and quoting of every other key stay. Each result
is parsed again (safe YAML) and must equal the intended mapping, or
:class:`EditError` says to edit by hand; nothing half-edited is written.
"""

from __future__ import annotations

import re

import yaml

from .edit import ArchiveError


class EditError(ArchiveError):
    """The file cannot be edited safely; str() names the fix."""


_TOP_KEY = re.compile(r"^(?P<key>[A-Za-z0-9_-]+)[ \t]*:")


def _load(text: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise EditError(f"cannot parse the course file: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EditError("the course file is not a mapping of course keys")
    return data


def _without(text: str, key: str) -> str:
    """``text`` without the top-level ``key`` and the lines that belong to it
    (indented, blank or comment lines up to the next top-level key)."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        if line.startswith("#"):
            out.append(line)  # a comment in the first column may be the next key's
            continue
        match = _TOP_KEY.match(line)
        if match:
            skipping = match["key"] == key
        elif line[:1] not in (" ", "\t", "#", "\n", "\r", "-", "") and line.strip():
            skipping = False  # something this edit does not understand: keep it
        if not skipping:
            out.append(line)
    return "".join(out)


def edit_keys(text: str, changes: dict) -> str:
    """The course file with each key of ``changes`` set to its value, or
    removed when the value is None. Keys set are appended at the end."""
    before = _load(text)
    new = text
    for key in changes:
        new = _without(new, key)
    appended = {k: v for k, v in changes.items() if v is not None}
    if appended:
        if new and not new.endswith("\n"):
            new += "\n"
        new += yaml.safe_dump(appended, sort_keys=False, allow_unicode=True)
    expected = {k: v for k, v in before.items() if k not in changes}
    expected.update(appended)
    try:
        after = yaml.safe_load(new) or {}
    except yaml.YAMLError:
        after = None
    if after != expected:
        raise EditError(
            f"the course file is not laid out so that {', '.join(changes)} can be"
            " changed safely by this tool; edit it by hand"
        )
    return new
