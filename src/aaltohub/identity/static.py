"""StaticIdentity: users from a YAML file, for demos, tests and small hubs."""

from __future__ import annotations

import os
import threading

import yaml
from traitlets import Unicode

from .base import Identity, IdentityProvider

_ALLOWED_KEYS = {"uid", "gid", "name", "email", "groups", "home"}


def parse_static_users(data: object, source: str) -> dict[str, Identity]:
    """Validate ``{users: {name: {uid, gid, ...}}}`` and build identities.

    Raises ValueError naming the file, the user and the key at fault.
    """
    if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
        raise ValueError(f"{source}: expected a mapping with a 'users:' mapping")
    users: dict[str, Identity] = {}
    for username, record in data["users"].items():
        where = f"{source}: user {username!r}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a mapping of uid, gid, ...")
        unknown = set(record) - _ALLOWED_KEYS
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {sorted(unknown)}; "
                f"allowed: {sorted(_ALLOWED_KEYS)}"
            )
        for key in ("uid", "gid"):
            if not isinstance(record.get(key), int) or isinstance(
                record.get(key), bool
            ):
                raise ValueError(f"{where}: '{key}' must be an integer")
        groups = record.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ValueError(f"{where}: 'groups' must be a list of group names")
        users[str(username)] = Identity(
            username=str(username),
            uid=record["uid"],
            gid=record["gid"],
            home=str(record.get("home") or ""),
            name=str(record.get("name") or ""),
            email=str(record.get("email") or ""),
            groups=frozenset(groups),
        )
    return users


class StaticIdentity(IdentityProvider):
    """Identities from a YAML file: ``users: {<name>: {uid, gid, name, email,
    groups: [...]}}``. The file is re-read when its mtime changes."""

    source_name = "the static users file"

    path = Unicode(
        "",
        help="""Path of the YAML users file,
        ``users: {<name>: {uid, gid, name, email, groups: [...]}}``.""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._users: dict[str, Identity] = {}
        self._mtime: float | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Identity]:
        # Runs in the provider's thread pool: stat and read are file I/O.
        if not self.path:
            raise OSError(
                "StaticIdentity.path is not set; the hub operator must set"
                " c.StaticIdentity.path to the users YAML file"
            )
        mtime = os.stat(self.path).st_mtime_ns
        with self._lock:
            if mtime != self._mtime:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        data = yaml.safe_load(f)
                    self._users = parse_static_users(data, self.path)
                except (ValueError, yaml.YAMLError) as e:
                    # Keep serving the last good file; a typo must not lock
                    # everybody out.
                    self.log.error("%s (keeping the previous version)", e)
                self._mtime = mtime
            return self._users

    def lookup_sync(self, username: str) -> Identity | None:
        return self._load().get(username)
