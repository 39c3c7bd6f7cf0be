"""Users' home directories: made before the first server starts.

A home is ``u/{uid_last2digits}/{username}`` on the storage volume, owned by
the user's uid and default gid, mode 0700. If nothing creates it, the
kubelet makes a missing subPath as root and the user's server cannot write
its own home; so the hub makes it first, through a provisioner:

* :class:`LocalHomeProvisioner`: the hub has the storage mounted with
  enough rights (no root_squash, or it runs on the storage host).
* :class:`RemoteCommandHomeProvisioner`: the hub cannot write as root (a
  root_squash NFS). It runs ``ssh storage-host ensure-home USER UID GID``;
  the key is restricted in ``authorized_keys`` to the forced command
  ``aaltohub-storage-helper``, which validates its arguments again.
* :class:`NoHomeProvisioner`: homes are made elsewhere.

A home is made under a temporary name in the same parent and renamed into
place, so a failure never leaves a half-made home behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import errno
import functools
import os
import re
import secrets
import shlex
import stat
import sys
import time

from traitlets import Float, Int, List, Unicode, default
from traitlets.config import LoggingConfigurable

from ..identity.base import Identity, IdentityProvider, InvalidUsername
from .layout import UnsafePath, render, safe_relpath

DEFAULT_SUB_PATH = "u/{uid_last2digits}/{username}"
HELPER_VERB = "ensure-home"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_ID = 2**32 - 2  # (uid_t)-1 means "no change" to chown; never a real id


def _identity_default(name: str):
    # One definition of what a valid username and uid are: the identity
    # provider's. Deployers who change it there should change it here too.
    return IdentityProvider.class_traits()[name].default_value


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
    try:
        return IdentityProvider(username_pattern=pattern).validate_username(username)
    except InvalidUsername:
        raise ValueError(
            f"username {username!r} does not match the allowed pattern {pattern!r}"
        ) from None


def check_ids(uid: int, gid: int, min_uid: int, min_gid: int = 1) -> None:
    for what, value, low in (("uid", uid, min_uid), ("gid", gid, min_gid)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{what} {value!r} is not a number")
        if not low <= value <= _MAX_ID:
            raise ValueError(
                f"{what} {value} is outside the allowed range {low}..{_MAX_ID}"
            )


def home_sub_path(template: str, username: str, uid: int) -> str:
    """Render the home template into a checked relative path."""
    uid2 = f"{uid % 100:02d}"
    return render(template, username=username, uid=uid, uid_last2digits=uid2)


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


# --- provisioners ---
class HomeProvisioner(LoggingConfigurable):
    """Base class: make sure a user's home exists before their server starts.

    Subclasses implement :meth:`_ensure`; this class validates the identity,
    remembers homes known to exist, and turns failures into ProvisionError.
    """

    username_pattern = Unicode(
        help="""Regular expression a username must match before it is used
        in a path. Default: the identity providers' default pattern.""",
    ).tag(config=True)

    min_uid = Int(
        help="""Smallest uid a home may be made for (system accounts and root
        are refused). Default: the identity providers' min_uid.""",
    ).tag(config=True)

    known_ttl = Float(
        3600.0,
        help="""Seconds a home known to exist is not checked again, so
        repeated spawns cost nothing. 0 checks every time.""",
    ).tag(config=True)

    @default("username_pattern")
    def _pattern_default(self):
        return _identity_default("username_pattern")

    @default("min_uid")
    def _min_uid_default(self):
        return _identity_default("min_uid")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._known: dict[tuple[str, int, str], float] = {}

    def validate(self, identity: Identity, sub_path: str) -> None:
        check_username(identity.username, self.username_pattern)
        check_ids(identity.uid, identity.gid, self.min_uid)
        safe_relpath(sub_path)

    async def ensure_home(self, identity: Identity, sub_path: str) -> bool:
        """Make the home if missing. True if made now. Raises ProvisionError."""
        try:
            self.validate(identity, sub_path)
        except (ValueError, UnsafePath) as e:
            raise ProvisionError(
                "Your home directory cannot be created for this account.", str(e)
            ) from e
        key = (identity.username, identity.uid, sub_path)
        seen = self._known.get(key)
        if seen is not None and time.monotonic() - seen < self.known_ttl:
            return False
        made = await self._ensure(identity, sub_path)
        self._known[key] = time.monotonic()
        self.log.info(
            "home user=%s uid=%s path=%s action=provision outcome=%s",
            identity.username,
            identity.uid,
            sub_path,
            "created" if made else "exists",
        )
        return made

    async def _ensure(self, identity: Identity, sub_path: str) -> bool:
        raise NotImplementedError


class NoHomeProvisioner(HomeProvisioner):
    """Homes are made by something else (an IdM hook, a storage script)."""

    async def ensure_home(self, identity: Identity, sub_path: str) -> bool:
        return False


class LocalHomeProvisioner(HomeProvisioner):
    """Make homes through the storage as mounted on the hub."""

    storage_root = Unicode(
        "",
        help="""Where the hub sees the storage volume, e.g. ``/mnt/jupyter``.
        Home sub-paths are made below it. The hub must be able to chown
        there (root without root_squash).""",
    ).tag(config=True)

    mode = Int(0o700, help="Mode of a new home directory.").tag(config=True)

    parent_mode = Int(
        0o755, help="Mode of missing parents such as ``u/42`` when made."
    ).tag(config=True)

    timeout = Float(
        30.0,
        help="""Seconds to wait for the storage before failing the spawn
        (a hung NFS mount must not hang the spawn forever).""",
    ).tag(config=True)

    async def _ensure(self, identity: Identity, sub_path: str) -> bool:
        if not self.storage_root:
            raise ProvisionError(
                "Home directories cannot be created: the hub is misconfigured.",
                "set c.LocalHomeProvisioner.storage_root to the mounted storage",
            )
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(
                    make_home,
                    self.storage_root,
                    sub_path,
                    identity.uid,
                    identity.gid,
                    self.mode,
                    self.parent_mode,
                ),
                self.timeout,
            )
        except TimeoutError as e:
            raise ProvisionError(
                "The storage for home directories did not answer in time. Please"
                " try again in a few minutes.",
                f"make_home {sub_path} took longer than {self.timeout:g} s",
            ) from e


class RemoteCommandHomeProvisioner(HomeProvisioner):
    """Ask a storage host over ssh: ``ensure-home USER UID GID``.

    On the storage host, restrict the hub's key in ``authorized_keys``::

        command="aaltohub-storage-helper --root /export/jupyter",restrict
            ssh-ed25519 AAAA... jupyterhub     (all on one line)

    The helper ignores anything the hub sends except those three values,
    checks them itself and renders the path from its own template.
    """

    host = Unicode(
        "", help="Storage host to run the helper on, e.g. ``nfs1.example.org``."
    ).tag(config=True)
    user = Unicode("", help="Remote account whose authorized_keys has the key.").tag(
        config=True
    )
    identity_file = Unicode(
        "", help="Private key for the forced command (``ssh -i``)."
    ).tag(config=True)
    ssh_command = List(
        Unicode(),
        ["ssh"],
        help="The ssh client as an argument list (no shell).",
    ).tag(config=True)
    ssh_options = List(
        Unicode(),
        [
            "-T",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "StrictHostKeyChecking=yes",
        ],
        help="""Options before the host. BatchMode stops ssh asking for a
        password; StrictHostKeyChecking needs the host in known_hosts.""",
    ).tag(config=True)
    timeout = Float(
        30.0, help="Seconds to wait for the helper before failing the spawn."
    ).tag(config=True)

    def command(self, identity: Identity) -> list[str]:
        argv = [*self.ssh_command, *self.ssh_options]
        if self.identity_file:
            argv += ["-i", self.identity_file]
        if self.user:
            argv += ["-l", self.user]
        return [
            *argv,
            "--",
            self.host,
            HELPER_VERB,
            identity.username,
            str(identity.uid),
            str(identity.gid),
        ]

    async def _ensure(self, identity: Identity, sub_path: str) -> bool:
        # sub_path is not sent: the helper renders its own, so a compromised
        # hub cannot point it anywhere but a home.
        if not self.host:
            raise ProvisionError(
                "Home directories cannot be created: the hub is misconfigured.",
                "set c.RemoteCommandHomeProvisioner.host",
            )
        argv = self.command(identity)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as e:
            raise ProvisionError(
                "Home directories cannot be created: the hub is misconfigured.",
                f"cannot run {argv[0]}: {e.strerror}",
            ) from e
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError as e:
            proc.kill()
            await proc.wait()
            raise ProvisionError(
                "The storage for home directories did not answer in time. Please"
                " try again in a few minutes.",
                f"{shlex.join(argv)} took longer than {self.timeout:g} s",
            ) from e
        text = (err or out).decode(errors="replace").strip().splitlines()
        if proc.returncode != 0:
            raise ProvisionError(
                "Your home directory could not be created. Please try again in a"
                " few minutes; if it persists, contact the hub's administrators.",
                f"{self.host}: exit {proc.returncode}: "
                + (text[-1] if text else "no output"),
            )
        return out.decode(errors="replace").startswith("created")


# --- the forced command on the storage host ---
_COMMAND_CHARS = re.compile(r"^[A-Za-z0-9._ -]{1,300}$")
_NUMBER = re.compile(r"^[0-9]{1,10}$")


def parse_command(
    command: str | None, pattern: str, min_uid: int, min_gid: int
) -> tuple[str, int, int]:
    """Validate SSH_ORIGINAL_COMMAND; returns (username, uid, gid).

    Accepts exactly ``ensure-home USERNAME UID GID`` separated by single
    spaces; anything else (quotes, globs, ``;``, extra words) is refused.
    """
    if not command:
        raise ValueError(
            "no command; this helper runs as an ssh forced command and expects"
            f" '{HELPER_VERB} USERNAME UID GID'"
        )
    if not _COMMAND_CHARS.match(command):
        raise ValueError("command contains characters that are not allowed")
    words = command.split(" ")
    if len(words) != 4 or words[0] != HELPER_VERB:
        raise ValueError(f"expected '{HELPER_VERB} USERNAME UID GID'")
    _, username, uid_s, gid_s = words
    check_username(username, pattern)
    if not (_NUMBER.match(uid_s) and _NUMBER.match(gid_s)):
        raise ValueError("uid and gid must be decimal numbers")
    uid, gid = int(uid_s), int(gid_s)
    check_ids(uid, gid, min_uid, min_gid)
    return username, uid, gid


def helper_main(argv: list[str] | None = None) -> int:
    """``aaltohub-storage-helper``: make a home, as an ssh forced command."""
    p = argparse.ArgumentParser(
        prog="aaltohub-storage-helper",
        description="Forced command for authorized_keys: reads"
        f" SSH_ORIGINAL_COMMAND='{HELPER_VERB} USERNAME UID GID', checks it, and"
        " makes the user's home below --root.",
    )
    p.add_argument("--root", required=True, help="storage root on this host")
    p.add_argument("--sub-path", default=DEFAULT_SUB_PATH, help="home template")
    p.add_argument("--min-uid", type=int, default=_identity_default("min_uid"))
    p.add_argument("--min-gid", type=int, default=1)
    p.add_argument("--username-pattern", default=_identity_default("username_pattern"))
    p.add_argument("--mode", type=lambda s: int(s, 8), default=0o700)
    args = p.parse_args(argv)
    command = os.environ.get("SSH_ORIGINAL_COMMAND")
    try:
        username, uid, gid = parse_command(
            command, args.username_pattern, args.min_uid, args.min_gid
        )
        rel = home_sub_path(args.sub_path, username, uid)
    except ValueError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 2
    try:
        made = make_home(args.root, rel, uid, gid, args.mode)
    except ProvisionError as e:
        print(f"error: {e.detail or e}", file=sys.stderr)
        return 1
    print(f"{'created' if made else 'exists'} {rel}")
    return 0


def main() -> None:  # console script entry point
    sys.exit(helper_main())
