"""Storage side of retention and of new terms: sizes, copies, deletion, the
warning ledger.

Every path is relative to the storage root and checked with
:func:`aaltohub.storage.paths.safe_relpath`; a path with a symbolic link in
it is refused rather than followed, and trees are removed with
``shutil.rmtree``'s descriptor-based walk, which never follows a link
planted inside. Blocking by design: the CLI calls it, never the hub's loop.

The ledger (``retention.json`` in ``c.Retention.state_dir``) remembers when
each item was announced; :func:`aaltohub.retention.decide` reads it.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from contextlib import contextmanager, suppress
from pathlib import Path

from .paths import UnsafePath, safe_relpath
from .progress import Progress

UTC = datetime.UTC


def real_path(root: str, rel: str) -> str:
    """``root/rel`` if no directory on the way to it is a symbolic link;
    UnsafePath if one is. The last part may be a link: callers lstat it,
    and remove or measure the link itself, never what it points to."""
    full = os.path.join(os.path.abspath(root), safe_relpath(rel))
    parent = os.path.dirname(os.path.join(os.path.realpath(root), rel))
    if os.path.realpath(os.path.dirname(full)) != os.path.normpath(parent):
        raise UnsafePath(f"refusing {rel}: a directory on its way is a symbolic link")
    return full


def tree_size(root: str, rel: str) -> int | None:
    """Bytes used under ``root/rel`` (allocated blocks, links not followed);
    None when it does not exist."""
    try:
        top = real_path(root, rel)
        st = os.lstat(top)
    except FileNotFoundError:
        return None
    total = st.st_blocks * 512
    if not stat.S_ISDIR(st.st_mode):
        return total
    for dirpath, dirnames, filenames in os.walk(top, onerror=None):
        for name in dirnames + filenames:
            with suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def delete_tree(root: str, rel: str) -> bool:
    """Remove ``root/rel`` (a tree or a file); False if it was already gone."""
    try:
        full = real_path(root, rel)
        st = os.lstat(full)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(full)
    else:
        os.unlink(full)
    return True


def copy_tree(
    src: str,
    dst: str,
    *,
    skip: Callable[[str], bool] = lambda rel: False,
    uid: int | None = None,
    gid: int | None = None,
    progress: Progress | None = None,
    dry_run: bool = False,
    refused: list[str] | None = None,
) -> int:
    """Copy ``src`` to ``dst`` (absolute paths; ``dst`` may exist), keeping
    modes and copying symbolic links as links, never following them.
    ``skip(rel)`` leaves an entry (and all below it) out. As root, entries
    get ``uid``/``gid``. Returns the entries copied.

    Special files (FIFOs, devices, sockets) and files with more than one
    hard link (their other names may be outside the course) are not
    copied; their paths go to ``refused``."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        rel_dir = "" if rel_dir == "." else rel_dir
        kept = []
        for name in sorted(dirnames):
            rel = os.path.join(rel_dir, name)
            if skip(rel):
                continue
            if os.path.islink(os.path.join(dirpath, name)):
                filenames.append(name)  # copied as a link below, not walked
                continue
            kept.append(name)
        dirnames[:] = kept
        target = os.path.join(dst, rel_dir)
        if os.path.islink(target.rstrip("/")):
            # planted in the new course between two runs: never write through it
            raise UnsafePath(f"refusing to copy into {target}: a symbolic link")
        if not dry_run:
            os.makedirs(target, exist_ok=True)
            shutil.copystat(dirpath, target, follow_symlinks=False)
            _own(target, uid, gid)
        for name in sorted(filenames):
            rel = os.path.join(rel_dir, name)
            if skip(rel):
                continue
            source, dest = os.path.join(dirpath, name), os.path.join(target, name)
            if os.path.lexists(dest):
                continue  # a re-run keeps what is there
            st = os.lstat(source)
            if not stat.S_ISLNK(st.st_mode) and (
                not stat.S_ISREG(st.st_mode) or st.st_nlink > 1
            ):
                if refused is not None:
                    refused.append(rel)
                continue
            if stat.S_ISLNK(st.st_mode) and not dry_run:
                os.symlink(os.readlink(source), dest)
                _own(dest, uid, gid)
            elif not dry_run:
                _copy_file(source, dest)
                _own(dest, uid, gid)
            count += 1
            if progress is not None:
                progress.update(count, rel)
    if progress is not None:
        progress.done()
    return count


def _copy_file(source: str, dest: str) -> None:
    """Copy one regular file, refusing one swapped for something else since
    it was checked (O_NOFOLLOW, O_NONBLOCK, then fstat)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(source, flags)
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(src.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            raise UnsafePath(f"refusing to copy {source}: it changed while copying")
        os.set_blocking(src.fileno(), True)
        with open(dest, "xb") as out:
            shutil.copyfileobj(src, out)
    shutil.copystat(source, dest, follow_symlinks=False)


def _own(path: str, uid: int | None, gid: int | None) -> None:
    if os.geteuid() == 0 and (uid is not None or gid is not None):
        os.lchown(path, -1 if uid is None else uid, -1 if gid is None else gid)


class Ledger:
    """When each retention item was announced: ``{key: {"warned": iso, ...}}``.

    Written under an exclusive lock and replaced atomically, so two runs at
    once lose nothing and a reader never sees half a file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise OSError(
                f"{self.path} is not a readable retention ledger ({e}); restore it"
                " from a backup: without it, warnings would be given again"
            ) from e
        return data if isinstance(data, dict) else {}

    def warned(self, key: str) -> datetime.datetime | None:
        entry = self.read().get(key) or {}
        text = entry.get("warned")
        if not text:
            return None
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))

    @contextmanager
    def update(self):
        """Yield the ledger as a dict to change; written when the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self.read()
                yield data
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ledger-")
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as f:
                        json.dump(data, f, indent=1, sort_keys=True)
                    os.replace(tmp, self.path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
