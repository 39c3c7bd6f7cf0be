"""Users' home directories: made before the first server starts.

A home is ``c.StoragePaths.home_sub_path`` on the storage volume, owned by
the user's uid and default gid, mode 0700. If nothing creates it, the
kubelet makes a missing subPath as root and the user's server cannot write
its own home; so the hub makes it first, through a provisioner:

* :class:`LocalHomeProvisioner`: the hub has the storage mounted with
  enough rights (no root_squash, or it runs on the storage host).
* :class:`RemoteCommandHomeProvisioner`: the hub cannot write as root (a
  root_squash NFS). It runs ``ssh storage-host ensure-home USER UID GID``;
  the key is restricted in ``authorized_keys`` to the forced command
  ``aaltohub-storage-helper`` (:mod:`.storage_helper`), which validates its
  arguments again.
* :class:`NoHomeProvisioner`: homes are made elsewhere.

A home is made under a temporary name in the same parent and renamed into
place, so a failure never leaves a half-made home behind (:func:`.homes.make_home`,
shared with the helper).
"""

from __future__ import annotations

import asyncio
import shlex
import time

from traitlets import Float, Int, List, Unicode, default
from traitlets.config import LoggingConfigurable

from ..identity.base import DEFAULT_MIN_UID, DEFAULT_USERNAME_PATTERN, Identity
from .homes import HELPER_VERB, ProvisionError, check_ids, check_username, make_home
from .paths import UnsafePath, safe_relpath


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
        return DEFAULT_USERNAME_PATTERN

    @default("min_uid")
    def _min_uid_default(self):
        return DEFAULT_MIN_UID

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
