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


def open_dir(root: str, rel: str, *, create: bool = False) -> int:
    """A descriptor of the directory ``root/rel``, opened one component at
    a time without following a symbolic link (UnsafePath if one is on the
    way), so a directory swapped for a link later cannot redirect writes.
    ``create`` makes missing directories (mode 0700). The caller closes it."""
    names = safe_relpath(rel).split("/") if rel else []
    fd = os.open(root, _DIR_FLAGS)
    for name in names:
        fd = _child_dir(fd, name, create, rel)  # closes the parent
    return fd


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_DIR = _DIR_FLAGS | os.O_NOFOLLOW


def _child_dir(parent: int, name: str, create: bool, shown: str) -> int:
    """Open (optionally make) directory ``name`` in ``parent``; close
    ``parent``; return the child's descriptor."""
    try:
        if create:
            with suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=parent)
        try:
            return os.open(name, _NOFOLLOW_DIR, dir_fd=parent)
        except FileNotFoundError:
            raise
        except OSError:  # ELOOP (a link) or ENOTDIR
            raise UnsafePath(
                f"refusing {shown}: {name} is a symbolic link or not a directory"
            ) from None
    finally:
        os.close(parent)


def copy_tree(
    root: str,
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
    """Copy ``root/src`` to ``root/dst`` (relative paths; ``dst`` may exist
    and is made if missing), keeping modes and copying symbolic links as
    links, never following them. ``skip(rel)`` leaves an entry (and all
    below it) out. As root, entries get ``uid``/``gid``. Returns the
    entries copied.

    Both trees may be written by instructors while this runs as root, so
    everything goes through directory descriptors (``os.fwalk``, and
    ``O_NOFOLLOW`` opens relative to the directory being copied into): a
    directory swapped for a symbolic link mid-copy is refused or left
    behind, never written through. Special files (FIFOs, devices, sockets)
    and files with more than one hard link (their other names may be
    outside the course) are not copied; their paths go to ``refused``."""
    copier = _Copier(skip, uid, gid, dry_run, refused)
    top = open_dir(root, src)
    try:
        copier.begin(root, dst)
        for dirpath, dirnames, filenames, dirfd in os.fwalk(".", dir_fd=top):
            rel_dir = os.path.normpath(dirpath)  # "." for the top
            rel_dir = "" if rel_dir == "." else rel_dir
            copier.directory(rel_dir, dirnames, filenames, dirfd)
            for name in sorted(filenames):
                if copier.entry(name, dirfd) and progress is not None:
                    progress.update(copier.count, copier.last)
    finally:
        os.close(top)
        copier.end()
    if progress is not None:
        progress.done()
    return copier.count


class _Copier:
    """The state of one :func:`copy_tree`: where it writes, what it did.

    ``stack`` holds the relative path and descriptor of the destination
    directory being filled and of its ancestors (as many as the tree is
    deep; None in a dry run where it does not exist): fwalk is depth-first
    and top-down, so a directory's parent is always on the stack."""

    def __init__(self, skip, uid, gid, dry_run, refused):
        self.skip, self.uid, self.gid = skip, uid, gid
        self.dry_run, self.refused = dry_run, refused
        self.stack: list[tuple[str, int | None]] = []
        self.rel_dir = ""
        self.count, self.last = 0, ""

    def begin(self, root: str, dst: str) -> None:
        try:
            fd = open_dir(root, dst, create=not self.dry_run)
        except FileNotFoundError:
            fd = None  # dry run, nothing there yet
        self.stack.append(("", fd))

    def end(self) -> None:
        for _, fd in self.stack:
            if fd is not None:
                os.close(fd)
        self.stack.clear()

    def directory(self, rel_dir: str, dirnames: list, filenames: list, srcfd) -> None:
        """Enter ``rel_dir`` ("" for the top): its copy made and opened;
        links and skipped directories left out of the walk."""
        self.rel_dir, kept = rel_dir, []
        for name in sorted(dirnames):
            rel = os.path.join(rel_dir, name)
            if self.skip(rel):
                continue
            st = _lstat_at(name, srcfd)
            if st is None:
                continue  # removed meanwhile
            if stat.S_ISLNK(st.st_mode):
                filenames.append(name)  # copied as a link, not walked
                continue
            kept.append(name)
        dirnames[:] = kept
        if rel_dir:
            self._enter(rel_dir)
        self._set_stat(self.stack[-1][1], os.fstat(srcfd))

    def _enter(self, rel_dir: str) -> None:
        while self.stack[-1][0] != os.path.dirname(rel_dir):
            _, fd = self.stack.pop()
            if fd is not None:
                os.close(fd)
        parent, fd = self.stack[-1][1], None
        if parent is not None:
            name = os.path.basename(rel_dir)
            with suppress(FileNotFoundError):  # dry run: not there
                fd = _child_dir(os.dup(parent), name, not self.dry_run, rel_dir)
        self.stack.append((rel_dir, fd))

    def entry(self, name: str, srcfd: int) -> bool:
        """Copy one file or link of the current directory; True if copied."""
        rel = os.path.join(self.rel_dir, name)
        dest = self.stack[-1][1]
        if self.skip(rel) or (dest is not None and _lstat_at(name, dest)):
            return False  # left out, or a re-run keeps what is there
        st = _lstat_at(name, srcfd)
        if st is None:
            return False  # removed meanwhile
        if not stat.S_ISLNK(st.st_mode) and (
            not stat.S_ISREG(st.st_mode) or st.st_nlink > 1
        ):
            if self.refused is not None:
                self.refused.append(rel)
            return False
        if stat.S_ISLNK(st.st_mode) and not self.dry_run:
            os.symlink(os.readlink(name, dir_fd=srcfd), name, dir_fd=dest)
            if self._owning():
                os.chown(name, *self._ids(), dir_fd=dest, follow_symlinks=False)
        elif not self.dry_run:
            _copy_file(name, srcfd, dest, rel, self)
        self.count, self.last = self.count + 1, rel
        return True

    def _owning(self) -> bool:
        return os.geteuid() == 0 and (self.uid is not None or self.gid is not None)

    def _ids(self) -> tuple[int, int]:
        uid, gid = self.uid, self.gid
        return (-1 if uid is None else uid, -1 if gid is None else gid)

    def _set_stat(self, fd: int | None, st: os.stat_result) -> None:
        """Mode, times and owner of an open copy, by descriptor."""
        if fd is None or self.dry_run:
            return
        os.chmod(fd, stat.S_IMODE(st.st_mode))
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        if self._owning():
            os.chown(fd, *self._ids())


def _lstat_at(name: str, dirfd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _copy_file(name: str, srcfd: int, destfd: int, rel: str, copier: _Copier) -> None:
    """Copy one regular file between two open directories, refusing one
    swapped for something else since it was checked (O_NOFOLLOW,
    O_NONBLOCK, then fstat). The copy is made with O_EXCL, mode 0600 until
    its mode and owner are set on its descriptor."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(name, flags, dir_fd=srcfd)
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(src.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            raise UnsafePath(f"refusing to copy {rel}: it changed while copying")
        os.set_blocking(src.fileno(), True)
        out = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(name, out, 0o600, dir_fd=destfd), "wb") as dest:
            shutil.copyfileobj(src, dest)
            dest.flush()
            copier._set_stat(dest.fileno(), st)


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
