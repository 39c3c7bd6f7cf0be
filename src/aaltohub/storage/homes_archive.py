"""Finding users' homes on storage, and moving a leaver's home aside.

Homes are found from ``c.StoragePaths.home_sub_path`` (its placeholders
become wildcards), so the listing matches what the provisioners create.
Archiving is a rename on the same volume (instant, nothing copied) into
``c.Retention.homes_archive`` plus a small record next to it saying when
and why; restoring renames it back. Blocking: CLI only.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import re
import string

from .paths import USER_FIELDS, UnsafePath, placeholders, safe_relpath
from .retention_store import real_path

UTC = datetime.UTC
RECORD_SUFFIX = ".archived.json"
_FIELD_RE = {"username": r"[^/]+", "uid": r"[0-9]+", "uid_last2digits": r"[0-9]{2}"}


def home_pattern(template: str) -> tuple[str, re.Pattern]:
    """The glob and the regex (with a ``username`` group) of a home template."""
    names = placeholders(template)
    if "username" not in names:
        raise UnsafePath(
            f"c.StoragePaths.home_sub_path = {template!r} has no {{username}}, so"
            " homes cannot be matched to users"
        )
    regex, pattern, seen = "", "", set()
    for literal, name, _, _ in string.Formatter().parse(template):
        regex += re.escape(literal)
        pattern += glob.escape(literal)
        if name is None:
            continue
        if name not in USER_FIELDS:
            raise UnsafePath(f"home_sub_path: unknown placeholder {{{name}}}")
        pattern += "*"
        if name in seen:
            regex += f"(?P={name})"
        else:
            regex += f"(?P<{name}>{_FIELD_RE[name]})"
            seen.add(name)
    return pattern.rstrip("/"), re.compile(regex.rstrip("/"))


def find_homes(root: str, template: str) -> list[tuple[str, str]]:
    """(username, path relative to root) of every home on storage."""
    pattern, regex = home_pattern(template)
    out = []
    for full in glob.glob(os.path.join(glob.escape(root), pattern)):
        rel = os.path.relpath(full, root)
        match = regex.fullmatch(rel)
        if match and os.path.isdir(full) and not os.path.islink(full):
            out.append((match["username"], rel))
    return sorted(out)


def archive_home(
    root: str, rel: str, archive: str, username: str, reason: str, now=None
) -> str:
    """Move a home to ``archive/<username>``; return that path. An existing
    archive of the same user is never overwritten."""
    now = now or datetime.datetime.now(UTC)
    base = safe_relpath(archive)
    dest_rel = f"{base}/{safe_relpath(username)}"
    os.makedirs(os.path.join(root, base), mode=0o700, exist_ok=True)
    dest = os.path.join(root, dest_rel)
    if os.path.lexists(dest):
        raise FileExistsError(f"{dest_rel} exists: an earlier archive of {username}")
    os.rename(real_path(root, rel), dest)
    record = {
        "username": username,
        "home": rel,
        "archived": _iso(now),
        "reason": reason,
    }
    with open(dest + RECORD_SUFFIX, "w", encoding="utf-8") as f:
        json.dump(record, f)
    return dest_rel


def archived_homes(root: str, archive: str) -> list[dict]:
    """The records of archived homes (username, home, archived, path)."""
    base = os.path.join(root, safe_relpath(archive))
    out = []
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        if not name.endswith(RECORD_SUFFIX):
            continue
        with open(os.path.join(base, name), encoding="utf-8") as f:
            record = json.load(f)
        username = name[: -len(RECORD_SUFFIX)]
        record["path"] = f"{safe_relpath(archive)}/{username}"
        record["archived"] = datetime.datetime.fromisoformat(
            record["archived"].replace("Z", "+00:00")
        )
        out.append(record)
    return out


def restore_home(root: str, archive: str, username: str) -> str:
    """Move an archived home back to where it was; return its path."""
    src_rel = f"{safe_relpath(archive)}/{safe_relpath(username)}"
    record_path = os.path.join(root, src_rel + RECORD_SUFFIX)
    with open(record_path, encoding="utf-8") as f:
        home = safe_relpath(json.load(f)["home"])
    if os.path.lexists(os.path.join(root, home)):
        raise FileExistsError(
            f"{home} exists (the user has a new home); move one of them by hand"
        )
    os.makedirs(os.path.dirname(os.path.join(root, home)), exist_ok=True)
    os.rename(real_path(root, src_rel), os.path.join(root, home))
    os.unlink(record_path)
    return home


def forget_record(root: str, path: str) -> None:
    """Remove the record of a deleted archived home."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(root, safe_relpath(path) + RECORD_SUFFIX))


def _iso(when: datetime.datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
