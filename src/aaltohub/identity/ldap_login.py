"""A password login against LDAP that also yields the user's identity.

"Search then bind": the service account finds the user's entry, then a bind
as that entry's DN checks the password. The entry found is the identity
(uid, gid, groups), so the login needs no second search afterwards; and the
DN is remembered for ``cache_ttl``, so a re-login within it is a bind only.
Blocking: run it with ``LDAPIdentity.run_blocking``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ldap3.utils.dn import escape_rdn

from .base import Identity, IdentityError, InvalidIdentity
from .ldap import LDAPIdentity

RESULT_INVALID_CREDENTIALS = 49


@dataclass(frozen=True)
class LoginResult:
    """What a password check found.

    ``dn`` is None when the login failed, and ``reason`` says why for the
    log (the user sees one generic message for all of them). ``identity``
    is the identity read from the entry (None with DN templates); it is
    ``searched`` when the directory was asked now rather than the cache.
    ``problem`` is an unusable entry (no POSIX uid, say): the caller shows
    it only after the password was right, so it does not reveal accounts.
    """

    dn: str | None
    reason: str
    identity: Identity | None = None
    searched: bool = False
    problem: IdentityError | None = None


def _search(ldap: LDAPIdentity, conn, username: str):
    entry = ldap.find_user(conn, username)
    if entry is None:
        return None, None, None
    ldap.remember_dn(username, entry["dn"])
    try:
        return entry["dn"], ldap.identity_from_entry(conn, username, entry), None
    except InvalidIdentity as e:
        return entry["dn"], None, e


def check_password_sync(
    ldap: LDAPIdentity,
    username: str,
    password: str,
    dn_templates: Sequence[str] = (),
) -> LoginResult:
    """Check ``password`` for ``username`` (already validated). Raises
    ConnectionError when the directory cannot be reached."""
    identity, problem, searched = None, None, False
    if dn_templates:
        rdn_value = escape_rdn(username)
        candidates = [t.format(username=rdn_value) for t in dn_templates]
    else:
        dn = ldap.cached_dn(username)
        identity = ldap.cached(username) if dn else None
        if dn is None or identity is None:
            dn, identity, problem = ldap.with_service(
                lambda conn: _search(ldap, conn, username)
            )
            searched = True
            if dn is None:
                return LoginResult(None, "unknown-user")
        candidates = [dn]
    reason = "wrong-password"
    for dn in candidates:
        conn = ldap.connect(user=dn, password=password)
        try:
            if conn.bound:
                return LoginResult(dn, "ok", identity, searched, problem)
            if conn.result.get("result") != RESULT_INVALID_CREDENTIALS:
                reason = f"bind-refused:{conn.result.get('description')}"
        finally:
            ldap.close(conn)
    if not dn_templates and not searched:
        # The DN came from the cache and may be stale (a renamed entry):
        # search again next time instead of refusing for cache_ttl.
        ldap.forget_dn(username)
    return LoginResult(None, reason)
