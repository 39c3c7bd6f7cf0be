"""Making one user's home safely, and the checks that come before it.

Owns what the hub-side provisioners (:mod:`.user_dirs`) and the ssh
forced-command helper on the storage host (:mod:`.storage_helper`) share:
the checks on username, uid and gid, the ``ensure-home`` verb,
:class:`ProvisionError` and :func:`make_home`, which
creates ``root/rel`` under a temporary name and renames it into place
without following symlinks. It imports neither of those modules.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import secrets
import stat

from ..identity.base import username_ok
from .paths import safe_relpath

HELPER_VERB = "ensure-home"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_ID = 2**32 - 2  # (uid_t)-1 means "no change" to chown; never a real id


class ProvisionError(Exception):
    """The home could not be made; str() is shown to the user.

    ``detail`` is for the log. ``jupyterhub_message`` makes JupyterHub show
    the message as is on the spawn page.
    """

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail
        self.jupyterhub_message = message


# --- validation (shared by the hub side and the storage helper) -------------------
def check_username(username: str, pattern: str) -> str:
    """The username if it matches ``pattern`` (the identity provider's rule)
    and is a safe path component; ValueError otherwise."""
    if (
        not isinstance(username, str)
        or "/" in username
        or "\0" in username
        or len(username.encode()) > 255
    ):
        raise ValueError(f"username {username!r} cannot be a directory name")
    if not username_ok(username, pattern):
        raise ValueError(
            f"username {username!r} does not match the allowed pattern {pattern!r}"
        )
    return username


def check_ids(uid: int, gid: int, min_uid: int, min_gid: int = 1) -> None:
    for what, value, low in (("uid", uid, min_uid), ("gid", gid, min_gid)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{what} {value!r} is not a number")
        if not low <= value <= _MAX_ID:
            raise ValueError(
                f"{what} {value} is outside the allowed range {low}..{_MAX_ID}"
            )


# --- making a home (blocking; in a thread on the hub, directly in the helper) ---
@functools.cache
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _rename_noreplace(parent_fd: int, src: str, dst: str) -> None:
    """rename() that fails instead of replacing an existing (empty) dst."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is not None:
        rc = renameat2(parent_fd, src.encode(), parent_fd, dst.encode(), 1)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: fs lacks the flag
            raise OSError(err, os.strerror(err), dst)
    # Fallback: a tiny window in which a concurrent maker could create an
    # empty dst that we then replace with an equally empty, correct home.
    try:
        os.stat(dst, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        return
    raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), dst)


def _open_parents(root: str, rel_parent: str, parent_mode: int) -> int:
    """Open (making if needed) each parent below ``root`` without following
    symlinks; returns a directory fd inside the root by construction."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel_parent.split("/") if rel_parent else ():
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
                made = True
            except FileExistsError:
                made = False
            nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if made:
                os.fchmod(fd, parent_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _existing(parent_fd: int, name: str, uid: int, rel: str) -> bool:
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise ProvisionError(
            "Your home directory exists but is not usable; the hub operator"
            " must fix it before you can start a server.",
            f"{rel} is {kind}; move it away and start the server again",
        )
    if st.st_uid != uid:
        raise ProvisionError(
            "Your home directory exists but belongs to another account; the hub"
            " operator must fix it before you can start a server.",
            f"{rel} is owned by uid {st.st_uid}, expected {uid}; check the"
            " account, then chown it",
        )
    return True


def make_home(
    root: str,
    rel: str,
    uid: int,
    gid: int,
    mode: int = 0o700,
    parent_mode: int = 0o755,
) -> bool:
    """Make ``root/rel`` owned by uid:gid with ``mode``; True if made now,
    False if it already existed (and belongs to uid).

    Never follows a symlink below ``root``; cleans up after any failure.
    """
    safe_relpath(rel)
    parent, _, name = rel.rpartition("/")
    try:
        pfd = _open_parents(root, parent, parent_mode)
    except OSError as e:
        raise ProvisionError(
            "Your home directory could not be created.",
            f"cannot open {os.path.join(root, parent)}: {e.strerror}",
        ) from e
    try:
        if _existing(pfd, name, uid, rel):
            return False
        tmp = f".{name[:200]}.aaltohub-{secrets.token_hex(4)}"
        os.mkdir(tmp, 0o700, dir_fd=pfd)
        try:
            fd = os.open(tmp, _DIR_FLAGS, dir_fd=pfd)
            try:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)  # after chown, which may clear setgid
            finally:
                os.close(fd)
            _rename_noreplace(pfd, tmp, name)
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.rmdir(tmp, dir_fd=pfd)
            raced = isinstance(e, OSError) and e.errno in (
                errno.EEXIST,
                errno.ENOTEMPTY,
            )
            # Someone else made it meanwhile: fine if it is right.
            if raced and _existing(pfd, name, uid, rel):
                return False
            if isinstance(e, OSError):
                raise ProvisionError(
                    "Your home directory could not be created.",
                    f"{rel}: {e.strerror}",
                ) from e
            raise
        return True
    finally:
        os.close(pfd)
