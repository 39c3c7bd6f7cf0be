"""Create, check and repair course directories on storage.

Works from the expected entries of :mod:`aaltohub.storage.layout`. Walks
with directory file descriptors, ``O_NOFOLLOW`` and ``lstat`` only, so a
symlink planted inside a course tree is never followed and never changed,
and a walk never leaves the file system it started on. ``fix`` changes only
entries that are wrong, so correct entries keep their ctime.

Blocking by design (it is for the CLI); the hub never calls it on its loop.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .layout import Entry, TreeRule
from .progress import Progress

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class Problem:
    """One thing wrong on storage; ``str()`` is the one-line report."""

    path: str
    kind: str  # missing, mode, owner, group, access, symlink, not-a-directory, error
    message: str
    fixable: bool = True

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "kind": self.kind,
            "message": self.message,
            "fixable": self.fixable,
        }


@dataclass
class Result:
    problems: list[Problem] = field(default_factory=list)
    #: What fix/create did (or, in a dry run, would do), one line each.
    actions: list[str] = field(default_factory=list)
    #: Problems a fix could not repair.
    unfixed: list[Problem] = field(default_factory=list)
    scanned: int = 0

    def extend(self, other: Result) -> None:
        self.problems += other.problems
        self.actions += other.actions
        self.unfixed += other.unfixed
        self.scanned += other.scanned


def _mode(bits: int) -> str:
    return f"{bits:04o}"


def _bits_problems(path: str, perm: int, bad: int, rule_why: str) -> list[Problem]:
    labels = []
    if bad & 0o004:
        labels.append("world-readable")
    if bad & 0o002:
        labels.append("world-writable")
    if bad & 0o001 and not bad & 0o006:
        labels.append("accessible to others")
    if bad & 0o220:
        labels.append("writable")
    why = f"; {rule_why}" if rule_why else ""
    return [Problem(path, "access", f"{x} (mode {_mode(perm)}){why}") for x in labels]


class _Walker:
    def __init__(self, root: str, fix: bool, dry_run: bool, progress: Progress):
        self.root = root
        self.fix = fix
        self.dry_run = dry_run
        self.progress = progress
        self.result = Result()

    # --- repair primitives ------------------------------------------------------
    def _apply(self, dir_fd: int, name: str, rel: str, st, uid, gid, mode) -> None:
        """chown/chmod one entry (never through a symlink), or record a dry run."""
        new_uid = st.st_uid if uid is None else uid
        new_gid = st.st_gid if gid is None else gid
        chown = (new_uid, new_gid) != (st.st_uid, st.st_gid)
        chmod = mode is not None and mode != stat.S_IMODE(st.st_mode)
        prefix = "would " if self.dry_run else ""
        if chown:
            self.result.actions.append(
                f"{prefix}chown {st.st_uid}:{st.st_gid} -> {new_uid}:{new_gid} {rel}"
            )
        if chmod:
            old = _mode(stat.S_IMODE(st.st_mode))
            self.result.actions.append(f"{prefix}chmod {old} -> {_mode(mode)} {rel}")
        if self.dry_run:
            return
        if chown:
            os.chown(name, new_uid, new_gid, dir_fd=dir_fd, follow_symlinks=False)
            # chown may clear setgid, so look at the mode again.
            now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            chmod = mode is not None and mode != stat.S_IMODE(now.st_mode)
        if chmod:
            _chmod_nofollow(dir_fd, name, mode)

    def _fail(self, problems: list[Problem], error: OSError, rel: str) -> None:
        for p in problems:
            p.fixable = False
            self.result.unfixed.append(p)
        self.result.problems.append(
            Problem(rel, "error", f"could not repair: {error.strerror}", False)
        )

    # --- expected entries -----------------------------------------------------
    def entry(self, root_fd: int, entry: Entry) -> None:
        parent_rel, _, name = entry.path.rpartition("/")
        try:
            pfd = _open_path(root_fd, parent_rel) if parent_rel else os.dup(root_fd)
        except FileNotFoundError:
            if self.fix and self.dry_run:
                return  # a missing parent; its own "would create" was recorded
            self.result.problems.append(
                Problem(entry.path, "missing", "missing (its parent is missing)")
            )
            return
        except OSError as e:
            self.result.problems.append(_open_problem(entry.path, e))
            return
        try:
            self._entry_at(pfd, name, entry)
        finally:
            os.close(pfd)

    def _entry_at(self, pfd: int, name: str, entry: Entry) -> None:
        rel = entry.path
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            problem = Problem(rel, "missing", "missing")
            self.result.problems.append(problem)
            if self.fix:
                self._create(pfd, name, entry)
            return
        self.result.scanned += 1
        if stat.S_ISLNK(st.st_mode):
            self.result.problems.append(
                Problem(
                    rel,
                    "symlink",
                    "is a symbolic link, expected a directory; check where it"
                    " points, remove it, then run 'aaltohub course fix'",
                    fixable=False,
                )
            )
            self.result.unfixed.append(self.result.problems[-1])
            return
        if not stat.S_ISDIR(st.st_mode):
            self.result.problems.append(
                Problem(
                    rel,
                    "not-a-directory",
                    "is not a directory; move it away, then run 'aaltohub course fix'",
                    fixable=False,
                )
            )
            self.result.unfixed.append(self.result.problems[-1])
            return
        problems = self._expect(rel, st, entry)
        self.result.problems += problems
        if self.fix and problems:
            want_mode = entry.mode
            if want_mode is None and stat.S_IMODE(st.st_mode) & entry.forbid:
                want_mode = stat.S_IMODE(st.st_mode) & ~entry.forbid
            try:
                self._apply(pfd, name, rel, st, entry.uid, entry.gid, want_mode)
            except OSError as e:
                self._fail(problems, e, rel)
        if entry.tree is not None:
            self.tree(pfd, name, rel, entry.tree, st.st_dev)

    def _expect(self, rel: str, st, entry: Entry) -> list[Problem]:
        out = []
        perm = stat.S_IMODE(st.st_mode)
        if entry.mode is not None and perm != entry.mode:
            out.append(
                Problem(
                    rel, "mode", f"mode {_mode(perm)}, expected {_mode(entry.mode)}"
                )
            )
        elif entry.mode is None and perm & entry.forbid:
            out.append(
                Problem(
                    rel,
                    "mode",
                    f"mode {_mode(perm)} lets others replace what is inside;"
                    f" expected no {_mode(entry.forbid)} bits",
                )
            )
        if entry.uid is not None and st.st_uid != entry.uid:
            out.append(
                Problem(rel, "owner", f"owner uid {st.st_uid}, expected {entry.uid}")
            )
        if entry.gid is not None and st.st_gid != entry.gid:
            out.append(
                Problem(rel, "group", f"group gid {st.st_gid}, expected {entry.gid}")
            )
        return out

    def _create(self, pfd: int, name: str, entry: Entry) -> None:
        mode = entry.mode if entry.mode is not None else entry.create_mode
        uid = entry.uid if entry.uid is not None else os.geteuid()
        gid = entry.gid if entry.gid is not None else os.getegid()
        line = f"mkdir {_mode(mode)} {uid}:{gid} {entry.path}"
        if self.dry_run:
            self.result.actions.append("would " + line)
            return
        try:
            # Made private first, then opened to the final owner and mode.
            os.mkdir(name, 0o700, dir_fd=pfd)
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
            try:
                if (uid, gid) != (os.geteuid(), os.getegid()):
                    os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        except OSError as e:
            problem = self.result.problems[-1]
            problem.fixable = False
            self.result.unfixed.append(problem)
            self.result.problems.append(
                Problem(entry.path, "error", f"could not create: {e.strerror}", False)
            )
            return
        self.result.actions.append(line)

    # --- trees ----------------------------------------------------------------
    def tree(self, pfd: int, name: str, rel: str, rule: TreeRule, dev: int) -> None:
        """Check (and fix) everything below ``rel`` against ``rule``."""
        try:
            top = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except OSError as e:
            self.result.problems.append(_open_problem(rel, e))
            return
        # Iterative depth-first walk: one open fd per level, no recursion
        # limit, and each directory is listed exactly once.
        stack: list[tuple[int, str, list[str]]] = []
        fd, here = top, rel
        try:
            while True:
                subdirs = self._scan(fd, here, rule, dev)
                stack.append((fd, here, subdirs))
                fd = -1
                while stack and fd < 0:
                    parent_fd, parent_rel, pending = stack[-1]
                    if not pending:
                        os.close(parent_fd)
                        stack.pop()
                        continue
                    child = pending.pop()
                    here = f"{parent_rel}/{child}"
                    try:
                        fd = os.open(child, _DIR_FLAGS, dir_fd=parent_fd)
                    except OSError as e:
                        if e.errno != errno.ENOENT:  # vanished meanwhile: fine
                            self.result.problems.append(_open_problem(here, e))
                if fd < 0:
                    return
        finally:
            for open_fd, _, _ in stack:
                os.close(open_fd)

    def _scan(self, fd: int, rel: str, rule: TreeRule, dev: int) -> list[str]:
        subdirs = []
        forbid, require, want_gid = rule.forbid, rule.dir_require, rule.gid
        result = self.result
        try:
            entries = list(os.scandir(fd))
        except OSError as e:
            result.problems.append(_open_problem(rel, e))
            return subdirs
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            result.scanned += 1
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                continue  # never followed; its own mode means nothing on Linux
            is_dir = stat.S_ISDIR(mode)
            perm = mode & 0o7777
            bad = perm & forbid
            missing = require & ~perm if is_dir else 0
            wrong_gid = want_gid is not None and st.st_gid != want_gid
            if is_dir and st.st_dev == dev:
                subdirs.append(entry.name)
            if not (bad or missing or wrong_gid):
                continue
            here = f"{rel}/{entry.name}"
            problems = _bits_problems(here, perm, bad, rule.why) if bad else []
            if missing:
                problems.append(
                    Problem(
                        here,
                        "mode",
                        f"directory mode {_mode(perm)} lacks setgid, so new files"
                        " leave the course group",
                    )
                )
            if wrong_gid:
                problems.append(
                    Problem(
                        here, "group", f"group gid {st.st_gid}, expected {want_gid}"
                    )
                )
            result.problems += problems
            if self.fix:
                try:
                    self._apply(
                        fd,
                        entry.name,
                        here,
                        st,
                        None,
                        want_gid if wrong_gid else None,
                        (perm & ~forbid) | missing,
                    )
                except OSError as e:
                    self._fail(problems, e, here)
        self.progress.update(result.scanned, rel)
        return subdirs


def _chmod_nofollow(dir_fd: int, name: str, mode: int) -> None:
    try:
        os.chmod(name, mode, dir_fd=dir_fd, follow_symlinks=False)
    except NotImplementedError:
        # Older libc: chmod the inode through an O_PATH descriptor instead.
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.ELOOP, "refusing to chmod a symlink", name)
            os.chmod(f"/proc/self/fd/{fd}", mode)
        finally:
            os.close(fd)


def _open_path(root_fd: int, rel: str) -> int:
    """Open ``rel`` below ``root_fd`` one component at a time, never
    following a symlink; returns a directory fd."""
    fd = os.dup(root_fd)
    try:
        for part in rel.split("/"):
            nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_problem(rel: str, e: OSError) -> Problem:
    if e.errno == errno.ELOOP:
        return Problem(
            rel,
            "symlink",
            "a path component is a symbolic link; it is never followed. Replace"
            " it with a real directory, then run 'aaltohub course fix'",
            False,
        )
    if e.errno == errno.ENOTDIR:
        return Problem(
            rel, "not-a-directory", "a path component is not a directory", False
        )
    return Problem(rel, "error", f"cannot read: {e.strerror}", False)


def run(
    root: str,
    entries: Iterable[Entry],
    *,
    fix: bool = False,
    dry_run: bool = False,
    walk: bool = True,
    progress: Progress | None = None,
) -> Result:
    """Check ``entries`` under ``root``; with ``fix``, create and repair.

    ``walk=False`` looks at the expected directories only, not their
    contents (what ``course create`` and ``course list`` need).
    """
    progress = progress or Progress(enabled=False)
    walker = _Walker(root, fix, dry_run, progress)
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise StorageRootError(
            f"storage root {root}: {e.strerror}; pass the mounted storage"
            " directory with --storage-root"
        ) from None
    try:
        for entry in sorted(entries, key=lambda e: (e.depth, e.path)):
            if not walk and entry.tree is not None:
                entry = replace(entry, tree=None)
            walker.entry(root_fd, entry)
    finally:
        os.close(root_fd)
        progress.done()
    return walker.result


class StorageRootError(OSError):
    pass
