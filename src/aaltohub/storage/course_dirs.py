"""Create, check and repair course directories on storage.

Works from the expected entries of :mod:`aaltohub.storage.layout`. Walks
with directory file descriptors, ``O_NOFOLLOW`` and ``lstat`` only, so a
symlink planted inside a course tree is never followed and never changed,
and a walk never leaves the file system it started on. ``fix`` changes only
entries that are wrong, so correct entries keep their ctime.

A file with more than one hard link is never changed: its other names may
be outside the course (another course's file, a system file), and changing
the inode would change them too. Changes go through an ``O_PATH`` descriptor
of the very inode that was checked, so a name swapped meanwhile for a
symlink or a hard link is left alone.

With ``submissions=True`` the entries of each nbgrader ``inbound`` are also
judged by :func:`aaltohub.nbgrader_exchange.judge`: a submission whose owner
is not the student it names is reported for a human to look at.

Blocking by design (it is for the CLI); the hub never calls it on its loop.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import replace

from ..nbgrader_exchange import judge, scan_inbound
from .inodes import change_inode
from .layout import Entry, TreeRule
from .problems import Problem, Result, bits_problems, octal
from .progress import Progress

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


#: A student's uid from their username, None if not known.
StudentUid = Callable[[str], int | None]


class _Walker:
    def __init__(
        self,
        root: str,
        fix: bool,
        dry_run: bool,
        progress: Progress,
        submissions: bool = False,
        student_uid: StudentUid | None = None,
    ):
        self.root = root
        self.fix = fix
        self.dry_run = dry_run
        self.progress = progress
        self.submissions = submissions
        self.student_uid = student_uid
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
            old = octal(stat.S_IMODE(st.st_mode))
            self.result.actions.append(f"{prefix}chmod {old} -> {octal(mode)} {rel}")
        if not self.dry_run and (chown or chmod):
            change_inode(dir_fd, name, st, (new_uid, new_gid) if chown else None, mode)

    def _hard_linked(self, rel: str, st, problems: list[Problem]) -> None:
        """Report an entry fix must not change because it has other links."""
        for p in problems:
            p.fixable = False
            self.result.unfixed.append(p)
        problem = Problem(
            rel,
            "hard-link",
            f"has {st.st_nlink} hard links, so 'aaltohub course fix' leaves it"
            " alone: another link may be outside the course, and changing the"
            " file would change it there too. Find the links with 'find"
            f" {self.root} -xdev -inum {st.st_ino}', replace the one in the course"
            " with a copy (or remove it), then run 'aaltohub course fix'",
            fixable=False,
        )
        self.result.problems.append(problem)
        self.result.unfixed.append(problem)

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
        if self.submissions and entry.purpose == "exchange-inbound":
            self.inbound(pfd, name, rel)

    def _expect(self, rel: str, st, entry: Entry) -> list[Problem]:
        out = []
        perm = stat.S_IMODE(st.st_mode)
        if entry.mode is not None and perm != entry.mode:
            out.append(
                Problem(
                    rel, "mode", f"mode {octal(perm)}, expected {octal(entry.mode)}"
                )
            )
        elif entry.mode is None and perm & entry.forbid:
            out.append(
                Problem(
                    rel,
                    "mode",
                    f"mode {octal(perm)} lets others replace what is inside;"
                    f" expected no {octal(entry.forbid)} bits",
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
        line = f"mkdir {octal(mode)} {uid}:{gid} {entry.path}"
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
            self._wrong(fd, entry.name, f"{rel}/{entry.name}", st, rule, missing)
        self.progress.update(result.scanned, rel)
        return subdirs

    def _wrong(self, fd: int, name: str, here: str, st, rule: TreeRule, missing: int):
        """Report (and with fix, repair) one entry that breaks ``rule``."""
        perm = stat.S_IMODE(st.st_mode)
        bad = perm & rule.forbid
        wrong_gid = rule.gid is not None and st.st_gid != rule.gid
        problems = bits_problems(here, perm, bad, rule.why) if bad else []
        if missing:
            problems.append(
                Problem(
                    here,
                    "mode",
                    f"directory mode {octal(perm)} lacks setgid, so new files"
                    " leave the course group",
                )
            )
        if wrong_gid:
            problems.append(
                Problem(here, "group", f"group gid {st.st_gid}, expected {rule.gid}")
            )
        self.result.problems += problems
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            self._hard_linked(here, st, problems)
            return
        if self.fix:
            gid = rule.gid if wrong_gid else None
            try:
                self._apply(fd, name, here, st, None, gid, (perm & ~bad) | missing)
            except OSError as e:
                self._fail(problems, e, here)

    # --- nbgrader submissions -----------------------------------------------
    def inbound(self, pfd: int, name: str, rel: str) -> None:
        """Report submissions in an inbound that are not the named student's."""
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except OSError as e:
            self.result.problems.append(_open_problem(rel, e))
            return
        try:
            entries = scan_inbound(fd)
        except OSError as e:
            self.result.problems.append(_open_problem(rel, e))
            return
        finally:
            os.close(fd)
        self.result.scanned += len(entries)
        uid_of = self.student_uid or _no_uid
        reasons = judge(entries, uid_of, require_known=self.student_uid is not None)
        for entry_name, why in sorted(reasons.items()):
            problem = Problem(
                f"{rel}/{entry_name}",
                "submission",
                f"{why}; nbgrader collect would take it as that student's. Look"
                " at it ('ls -lan'), remove it as root if the student did not"
                " make it (inbound is sticky), then run 'aaltohub course check'",
                fixable=False,
            )
            self.result.problems.append(problem)
            self.result.unfixed.append(problem)


def _no_uid(username: str) -> None:
    return None


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
    submissions: bool = False,
    student_uid: StudentUid | None = None,
) -> Result:
    """Check ``entries`` under ``root``; with ``fix``, create and repair.

    ``walk=False`` looks at the expected directories only, not their
    contents (what ``course create`` and ``course list`` need).
    ``submissions=True`` also judges each nbgrader inbound's submissions;
    ``student_uid`` maps a student to their uid (None: unknown), and when it
    is given, a student it does not know is a problem too.
    """
    progress = progress or Progress(enabled=False)
    walker = _Walker(root, fix, dry_run, progress, submissions and walk, student_uid)
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
