"""LDAP plumbing for LDAPIdentity: connecting, TLS, searching, decoding.

Owns everything that talks ldap3 at the wire level: opening a bound
connection to the first reachable server (with optional StartTLS), turning
network failures into ConnectionError, running a subtree search with its
result-code checks, escaping filter values and reading attribute values out
of ldap3 entries. It knows nothing about traits or identities; LDAPIdentity
in ``ldap.py`` passes its settings in.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import ldap3
from ldap3.core.exceptions import (
    LDAPCommunicationError,
    LDAPException,
    LDAPResponseTimeoutError,
    LDAPServerPoolError,
    LDAPServerPoolExhaustedError,
    LDAPStartTLSError,
)
from ldap3.utils.conv import escape_filter_chars

# Errors that mean "this server did not answer": try the next one.
_UNREACHABLE = (
    LDAPCommunicationError,
    LDAPResponseTimeoutError,
    LDAPServerPoolError,
    LDAPServerPoolExhaustedError,
    LDAPStartTLSError,
    OSError,
)

RESULT_SUCCESS = 0
RESULT_SIZE_LIMIT = 4
RESULT_NO_SUCH_OBJECT = 32


def first_value(attrs: dict[str, Any], name: str) -> str:
    """First value of an attribute as text ('' if absent); ldap3 gives lists
    or scalars depending on schema knowledge, so accept both."""
    value = attrs.get(name)
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def all_values(attrs: dict[str, Any], name: str) -> list[str]:
    value = attrs.get(name)
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        value = [value]
    return [
        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in value
    ]


def unescape_dn_value(value: str) -> str:
    """Undo RFC 4514 escaping (``\\,`` and ``\\c3\\a4``) in one RDN value."""
    out = bytearray()
    for m in re.finditer(r"\\([0-9a-fA-F]{2})|\\(.)|([^\\]+)", value, re.S):
        hexpair, char, text = m.groups()
        if hexpair:
            out.append(int(hexpair, 16))
        else:
            out += (char or text).encode("utf-8")
    return out.decode("utf-8", errors="replace")


def fill_filter(template: str, **values: str) -> str:
    """Fill a filter template; every value is escaped so it cannot change the
    filter's structure (``*)(uid=*`` stays a literal string)."""
    return template.format(**{k: escape_filter_chars(v) for k, v in values.items()})


def make_tls(tls_validate: bool, tls_ca_file: str) -> ldap3.Tls:
    """TLS settings: verify the certificate unless ``tls_validate`` is off."""
    return ldap3.Tls(
        validate=ssl.CERT_REQUIRED if tls_validate else ssl.CERT_NONE,
        ca_certs_file=tls_ca_file or None,
    )


def open_connection(
    server_urls: list[str],
    user: str | None,
    password: str | None,
    *,
    tls_validate: bool,
    tls_ca_file: str,
    use_starttls: bool,
    connect_timeout: float,
    receive_timeout: float,
    track: Callable[[Any], None] | None = None,
    answered: Callable[[str], None] | None = None,
):
    """Open a connection to the first reachable server and bind.

    Binds anonymously when ``user`` is None. Returns the ldap3 Connection;
    check ``conn.bound`` (a wrong password is not an exception). Raises
    ConnectionError if no server answers. Blocking: call it from a thread.
    ``track(conn)`` is called before each connection is opened (so a caller
    that gives up can cut it); ``answered(url)`` names the server that did.
    """
    if not server_urls:
        raise ConnectionError(
            "LDAPIdentity.server_urls is empty; set e.g. "
            "c.LDAPIdentity.server_urls = ['ldaps://ldap.example.org']"
        )
    tls = make_tls(tls_validate, tls_ca_file)
    errors = []
    for url in server_urls:
        server = ldap3.Server(
            url,
            get_info=ldap3.NONE,
            tls=tls,
            connect_timeout=connect_timeout,
        )
        conn = ldap3.Connection(
            server,
            user=user,
            password=password,
            authentication=ldap3.SIMPLE if user else ldap3.ANONYMOUS,
            # ldap3 packs this into SO_RCVTIMEO and needs whole seconds.
            receive_timeout=max(1, math.ceil(receive_timeout)),
            # AD hands out referrals to DNS names the hub may not
            # resolve; following them would only add timeouts.
            auto_referrals=False,
            read_only=True,
            raise_exceptions=False,
        )
        try:
            if track is not None:
                track(conn)
            conn.open()
            if use_starttls and not server.ssl and not conn.start_tls():
                raise LDAPStartTLSError(f"StartTLS refused: {conn.result}")
            conn.bind()
        except _UNREACHABLE as e:
            errors.append(f"{url}: {e}")
            close(conn)
            continue
        except LDAPException as e:
            close(conn)
            raise ConnectionError(f"LDAP error talking to {url}: {e!r}") from e
        if answered is not None:
            answered(url)
        return conn
    raise ConnectionError("no LDAP server answered: " + "; ".join(errors))


def close(conn) -> None:
    """Unbind and close, ignoring any error (the connection is done with)."""
    with contextlib.suppress(Exception):
        conn.unbind()


@contextlib.contextmanager
def service_session(conn, bind_dn: str, *, keep: bool = False) -> Iterator[Any]:
    """Use ``conn`` (opened as the service account ``bind_dn``) and close it
    afterwards unless ``keep`` (a pool owns it); a failed bind and LDAP
    errors become ConnectionError."""
    try:
        if not conn.bound:
            raise ConnectionError(
                f"binding to LDAP as {bind_dn or 'anonymous'} failed "
                f"({conn.result.get('description')}: "
                f"{conn.result.get('message')}); check "
                "LDAPIdentity.bind_dn and bind_password"
            )
        yield conn
    except _UNREACHABLE as e:
        if isinstance(e, ConnectionError):
            raise
        raise ConnectionError(f"LDAP connection lost: {e!r}") from e
    except LDAPException as e:
        raise ConnectionError(f"LDAP error: {e!r}") from e
    finally:
        if not keep:
            close(conn)


def read_root_dse(conn) -> None:
    """Read the root DSE (no attributes): one cheap round trip every LDAP
    server answers, to check that a kept connection still works. Raises
    ConnectionError if the answer is not a success."""
    conn.search("", "(objectClass=*)", search_scope=ldap3.BASE, attributes=["1.1"])
    if conn.result.get("result") != RESULT_SUCCESS:
        raise ConnectionError(
            f"reading the root DSE failed: {conn.result.get('description')}"
        )


def search(
    conn,
    base: str,
    search_filter: str,
    attributes: list[str],
    size_limit: int = 0,
    *,
    log: logging.Logger,
) -> list[dict[str, Any]]:
    """Entries (dicts with 'dn' and 'attributes'); references dropped."""
    conn.search(
        base,
        search_filter,
        search_scope=ldap3.SUBTREE,
        attributes=attributes,
        size_limit=size_limit,
    )
    code = conn.result.get("result")
    if code == RESULT_NO_SUCH_OBJECT:
        log.warning("LDAP search base %r does not exist", base)
        return []
    if code not in (RESULT_SUCCESS, RESULT_SIZE_LIMIT):
        raise ConnectionError(
            f"LDAP search under {base!r} failed: "
            f"{conn.result.get('description')} {conn.result.get('message')}"
        )
    return [r for r in conn.response or () if r.get("type") == "searchResEntry"]
