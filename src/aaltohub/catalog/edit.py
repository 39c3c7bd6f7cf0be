"""Editing a course file in the catalog in place.

Owns the one edit the command line makes to course files: setting
``archive: true`` as a text edit that keeps the author's comments, order
and quoting (:func:`set_archive_flag`), and replacing the file atomically
with its mode and owner kept (:func:`write_atomically`). Used by
``aaltohub course archive`` (:mod:`aaltohub.commands.course`, which
re-exports these names).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile

import yaml


class ArchiveError(Exception):
    pass


_ARCHIVE_KEY = re.compile(
    r"^archive[ \t]*:(?P<value>[^#\n]*?)(?P<rest>[ \t]*(?:#.*)?)$", re.M
)


def set_archive_flag(text: str) -> str:
    """The course file with ``archive: true``, everything else untouched.

    A text edit, so comments, order and quoting stay as the author wrote
    them: the value of a top-level ``archive:`` key is replaced, or the key
    is appended. The result is parsed again to prove only that key changed.
    """
    match = _ARCHIVE_KEY.search(text)
    if match:
        new = text[: match.start("value")] + " true" + text[match.end("value") :]
    else:
        new = (
            text + ("" if not text or text.endswith("\n") else "\n") + "archive: true\n"
        )
    try:
        before = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ArchiveError(f"cannot parse the course file: {problem}") from None
    try:
        after = yaml.safe_load(new)
    except yaml.YAMLError:
        after = None
    if not isinstance(before, dict) or after != dict(before, archive=True):
        raise ArchiveError(
            "the course file is not a plain mapping this tool can edit safely;"
            " add 'archive: true' by hand"
        )
    return new


def write_atomically(path: str, text: str) -> None:
    st = os.stat(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".archive-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, st.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
