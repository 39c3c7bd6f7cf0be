"""``auth_state`` and the crypt key.

With ``enable_auth_state`` and no crypt key the hub cannot store the
identity it attached at login; a key that is not 32 bytes is refused by
JupyterHub's CryptKeeper. Without ``auth_state`` an aaltohub identity is
not kept with the login, so every spawn asks the directory again and a
directory outage has nothing to fall back to (a warning).
"""

from __future__ import annotations

import base64
import binascii

from traitlets.config import Config

from .identity import login_kind
from .problems import WARNING, Problem


def _key_ok(key) -> bool:
    """A key as JupyterHub's CryptKeeper takes it: 32 bytes, hex (64
    characters), urlsafe base64 (44) or raw."""
    try:
        raw = key.encode("ascii") if isinstance(key, str) else bytes(key)
        if len(raw) == 64:
            raw = binascii.a2b_hex(raw)
        elif len(raw) == 44:
            raw = base64.urlsafe_b64decode(raw)
    except (ValueError, TypeError):
        return False
    return len(raw) == 32


def _crypt_keys(config: Config, environ) -> tuple[list, str]:
    """The keys the hub would use (c.CryptKeeper.keys, which z2jh sets from
    hub.config.CryptKeeper.keys, else JUPYTERHUB_CRYPT_KEY), and any error."""
    keys = config.get("CryptKeeper", {}).get("keys")
    if keys is None:
        keys = [k for k in environ.get("JUPYTERHUB_CRYPT_KEY", "").split(";") if k]
    if not isinstance(keys, list | tuple):
        return [], f"it is a {type(keys).__name__}, not a list of keys"
    bad = sum(not _key_ok(k) for k in keys)
    if bad:
        return [], f"{bad} of {len(keys)} key(s) are not 32 bytes (hex or base64)"
    return list(keys), ""


def crypt_key_problems(config: Config, auth, environ) -> list[Problem]:
    if auth is None:
        return []
    keys, error = _crypt_keys(config, environ)
    key = "c.CryptKeeper.keys"
    how = (
        "on z2jh set hub.config.CryptKeeper.keys to the output of"
        " `openssl rand -hex 32` (from a Secret); elsewhere set the"
        " JUPYTERHUB_CRYPT_KEY environment variable"
    )
    if error:
        return [Problem(key, f"is not a valid key: {error}", how)]
    if auth.enable_auth_state and not keys:
        return [
            Problem(
                key,
                "is empty (and JUPYTERHUB_CRYPT_KEY is unset) while"
                " c.Authenticator.enable_auth_state is True: the hub cannot"
                " store auth_state",
                how,
            )
        ]
    if login_kind(auth)[0] and not auth.enable_auth_state:
        return [
            Problem(
                "c.Authenticator.enable_auth_state",
                "is False: identities are not kept with the login, so every"
                " spawn asks the directory again and a directory outage"
                " cannot fall back to the login's identity",
                f"set it to True and provide a crypt key: {how}",
                WARNING,
            )
        ]
    return []
