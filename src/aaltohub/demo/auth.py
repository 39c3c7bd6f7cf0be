"""DemoAuthenticator: one shared password for the users of an identity file.

For the local demo and small trials only. Unlike JupyterHub's
DummyAuthenticator it refuses users the identity provider does not know
(with a message that says so), validates usernames before anything else
sees them, and stores a salted hash of the password, never the password.
Identities land in ``auth_state`` through IdentityAuthenticatorMixin when
``enable_auth_state`` is on (it needs ``JUPYTERHUB_CRYPT_KEY``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets

from jupyterhub.auth import Authenticator
from traitlets import Unicode, default

from ..auth import IdentityAuthenticatorMixin
from ..identity import InvalidUsername

SCHEME = "pbkdf2_sha256"
ITERATIONS = 120_000


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def check_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against :func:`hash_password` output."""
    try:
        scheme, iterations, salt, digest = encoded.strip().split("$")
        if scheme != SCHEME:
            return False
        got = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), bytes.fromhex(salt), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


class DemoAuthenticator(IdentityAuthenticatorMixin, Authenticator):
    """Shared-password login for the users in the identity provider."""

    password_file = Unicode(
        "",
        help="""File holding the shared password's hash, as written by
        ``aaltohub.demo.auth.hash_password`` (``aaltohub demo`` writes it).
        Read at each login, so a restart with a new password takes effect.""",
    ).tag(config=True)

    @default("identity_class")
    def _default_identity_class(self):
        from ..identity import StaticIdentity

        return StaticIdentity

    @default("allow_all")
    def _default_allow_all(self):
        # The identity file is the list of allowed users: the mixin refuses
        # everyone else after the password check.
        return True

    def _read_hash(self) -> str:
        if not self.password_file:
            raise OSError("DemoAuthenticator.password_file is not set")
        with open(self.password_file, encoding="utf-8") as f:
            return f.read().strip()

    def _verify(self, password: str) -> bool:
        return check_password(password, self._read_hash())

    async def authenticate(self, handler, data):
        data = data or {}
        raw, password = data.get("username"), data.get("password")
        if not isinstance(raw, str) or not isinstance(password, str) or not raw:
            return self._refuse(handler, raw, "missing-credentials")
        username = self.normalize_username(raw.strip())
        try:
            self.identity_provider.validate_username(username)
        except InvalidUsername as e:
            return self._refuse(handler, raw, "invalid-username", str(e))
        # PBKDF2 takes tens of milliseconds: not on the event loop.
        try:
            ok = await asyncio.to_thread(self._verify, password)
        except OSError as e:
            self.log.error("demo password file unreadable: %s", e)
            return self._refuse(
                handler,
                username,
                "no-password-file",
                "The demo's password file cannot be read; restart the demo"
                " with 'aaltohub demo'.",
            )
        if not ok:
            return self._refuse(handler, username, "wrong-password")
        # Unknown users are refused, with a message, by the mixin's
        # post-auth identity lookup.
        return {"name": username}


def write_password_hash(path: str, password: str) -> None:
    """Write the hash readable by the hub's user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(hash_password(password) + "\n")
