"""LDAPIdentity: identities from an LDAP directory (OpenLDAP, FreeIPA, AD).

Searches run in the provider's thread pool on service-account connections
that are reused (``ldap_pool.py``); each is used by one thread at a time.
A hung server ties up one thread until the call's ``lookup_timeout``, when
the call is abandoned and its connection cut (``calls.py``). The entry found
at login is the identity (``ldap_login.py``): one search per login.
"""

from __future__ import annotations

from typing import Any

from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import parse_dn
from traitlets import Enum, TraitError, Unicode, validate

from . import ldap_connection
from .base import Identity, InvalidIdentity
from .ldap_connection import (
    all_values,
    fill_filter,
    first_value,
    unescape_dn_value,
)
from .ldap_directory import LDAPDirectory


class LDAPIdentity(LDAPDirectory):
    """Identities from LDAP: uid, gid, home, name, email and groups.

    OpenLDAP with RFC 2307 (posixAccount / posixGroup)::

        c.LDAPIdentity.server_urls = ["ldaps://ldap.example.org"]
        c.LDAPIdentity.bind_dn = "cn=jupyterhub,ou=services,dc=example,dc=org"
        c.LDAPIdentity.bind_password = os.environ["LDAP_BIND_PASSWORD"]
        c.LDAPIdentity.user_search_base = "ou=people,dc=example,dc=org"
        c.LDAPIdentity.group_membership = "posixGroup"
        c.LDAPIdentity.group_search_base = "ou=groups,dc=example,dc=org"

    Active Directory (with the RFC 2307 / "Identity Management for UNIX"
    attributes filled in) is configuration only; note that AD's
    ``homeDirectory`` is the Windows home drive, the POSIX one is
    ``unixHomeDirectory``::

        c.LDAPIdentity.server_urls = ["ldaps://dc1.ad.example.org",
                                      "ldaps://dc2.ad.example.org"]
        c.LDAPIdentity.bind_dn = "CN=jupyterhub-svc,OU=Service,DC=ad,DC=example,DC=org"
        c.LDAPIdentity.bind_password = os.environ["LDAP_BIND_PASSWORD"]
        c.LDAPIdentity.user_search_base = "OU=Users,DC=ad,DC=example,DC=org"
        c.LDAPIdentity.user_search_filter = (
            "(&(objectClass=user)(sAMAccountName={username}))"
        )
        c.LDAPIdentity.username_attribute = "sAMAccountName"
        c.LDAPIdentity.uid_attribute = "uidNumber"
        c.LDAPIdentity.gid_attribute = "gidNumber"
        c.LDAPIdentity.home_attribute = "unixHomeDirectory"
        c.LDAPIdentity.name_attribute = "displayName"
        c.LDAPIdentity.email_attribute = "mail"
        c.LDAPIdentity.group_membership = "memberOf"
        c.LDAPIdentity.group_search_base = "OU=Groups,DC=ad,DC=example,DC=org"
    """

    source_name = "the LDAP directory"

    # --- users ----------------------------------------------------------------
    user_search_base = Unicode(
        "",
        help="""Subtree searched for user entries, e.g.
        ``ou=people,dc=example,dc=org``.""",
    ).tag(config=True)

    user_search_filter = Unicode(
        "(&(objectClass=posixAccount)(uid={username}))",
        help="""Filter that finds exactly one user entry. ``{username}`` is
        replaced by the escaped username. For Active Directory use
        ``(&(objectClass=user)(sAMAccountName={username}))``.""",
    ).tag(config=True)

    username_attribute = Unicode(
        "uid",
        help="""Attribute holding the login name (``sAMAccountName`` on
        Active Directory). Used to list the members of a group.""",
    ).tag(config=True)

    uid_attribute = Unicode(
        "uidNumber", help="Attribute holding the numeric POSIX user id."
    ).tag(config=True)

    gid_attribute = Unicode(
        "gidNumber", help="Attribute holding the numeric primary POSIX group id."
    ).tag(config=True)

    home_attribute = Unicode(
        "homeDirectory",
        help="""Attribute holding the POSIX home directory
        (``unixHomeDirectory`` on Active Directory).""",
    ).tag(config=True)

    name_attribute = Unicode(
        "displayName",
        help="Attribute holding the display name; ``cn`` is used when it is empty.",
    ).tag(config=True)

    email_attribute = Unicode("mail", help="Attribute holding the email address.").tag(
        config=True
    )

    # --- groups ---------------------------------------------------------------
    group_membership = Enum(
        ["memberOf", "posixGroup"],
        default_value="memberOf",
        help="""How a user's groups are found. ``memberOf``: read the DNs in
        the user's ``memberOf`` attribute (Active Directory, FreeIPA,
        OpenLDAP with the memberof overlay) and take each group's
        ``group_name_attribute``. ``posixGroup``: search
        ``group_search_base`` with ``group_search_filter`` (RFC 2307
        ``memberUid``).""",
    ).tag(config=True)

    group_search_base = Unicode(
        "",
        help="""Subtree searched for groups, e.g.
        ``ou=groups,dc=example,dc=org``. Empty means ``user_search_base``.""",
    ).tag(config=True)

    group_search_filter = Unicode(
        "(&(objectClass=posixGroup)(memberUid={username}))",
        help="""In ``posixGroup`` mode, the filter finding a user's groups.
        ``{username}`` and ``{user_dn}`` are replaced (escaped), so
        ``(&(objectClass=groupOfNames)(member={user_dn}))`` also works.""",
    ).tag(config=True)

    group_name_attribute = Unicode(
        "cn",
        help="""Attribute (and first RDN of a group DN) that holds the group
        name used in course rules.""",
    ).tag(config=True)

    @validate("user_search_filter", "group_search_filter")
    def _check_filter(self, proposal):
        name = proposal["trait"].name
        value = proposal["value"]
        placeholders = {"username": "x"}
        if name == "group_search_filter":
            placeholders["user_dn"] = "x"
        try:
            value.format(**placeholders)
        except (KeyError, IndexError, ValueError) as e:
            raise TraitError(
                f"LDAPIdentity.{name} {value!r}: unknown placeholder {e}; "
                "use {username} (and {user_dn} for group_search_filter)."
            ) from e
        if name == "user_search_filter" and "{username}" not in value:
            raise TraitError(
                f"LDAPIdentity.user_search_filter {value!r} must contain "
                "{username}, or every login would match the same entry."
            )
        return value

    def _search(
        self,
        conn,
        base: str,
        search_filter: str,
        attributes: list[str],
        size_limit: int = 0,
    ) -> list[dict[str, Any]]:
        """Entries (dicts with 'dn' and 'attributes'); references dropped."""
        return ldap_connection.search(
            conn, base, search_filter, attributes, size_limit, log=self.log
        )

    def find_user(self, conn, username: str) -> dict[str, Any] | None:
        """The user's entry, None if absent; InvalidIdentity if ambiguous."""
        attributes = [
            self.username_attribute,
            self.uid_attribute,
            self.gid_attribute,
            self.home_attribute,
            self.name_attribute,
            "cn",
            self.email_attribute,
        ]
        if self.group_membership == "memberOf":
            attributes.append("memberOf")
        entries = self._search(
            conn,
            self.user_search_base,
            fill_filter(self.user_search_filter, username=username),
            attributes,
            size_limit=2,
        )
        if len(entries) > 1:
            raise InvalidIdentity(
                f"User {username} matches several entries in {self.source_name}; "
                "the hub operator should make LDAPIdentity.user_search_filter "
                "more specific."
            )
        return entries[0] if entries else None

    # --- IdentityProvider -------------------------------------------------------
    def lookup_sync(self, username: str) -> Identity | None:
        return self.with_service(lambda conn: self.search_identity(conn, username)[1])

    def search_identity(
        self, conn, username: str
    ) -> tuple[dict[str, Any] | None, Identity | None]:
        """(entry, identity) of ``username`` with one search (and a group
        search in posixGroup mode); (None, None) if there is no such user."""
        entry = self.find_user(conn, username)
        if entry is None:
            return None, None
        self.remember_dn(username, entry["dn"])
        return entry, self.identity_from_entry(conn, username, entry)

    def identity_from_entry(self, conn, username: str, entry: dict[str, Any]):
        """The Identity in a user entry found by :meth:`find_user`."""
        attrs = entry["attributes"]
        numbers = {}
        for key, attr in (("uid", self.uid_attribute), ("gid", self.gid_attribute)):
            try:
                numbers[key] = int(first_value(attrs, attr))
            except ValueError:
                raise InvalidIdentity(
                    f"User {username} has no numeric {attr} in "
                    f"{self.source_name}; ask IT support to give the "
                    "account POSIX (Unix) attributes."
                ) from None
        return Identity(
            username=username,
            uid=numbers["uid"],
            gid=numbers["gid"],
            home=first_value(attrs, self.home_attribute),
            name=first_value(attrs, self.name_attribute) or first_value(attrs, "cn"),
            email=first_value(attrs, self.email_attribute),
            groups=frozenset(self._user_groups(conn, username, entry)),
        )

    def _group_name(self, dn: str) -> str | None:
        """``cn=course-a,ou=groups,...`` -> ``course-a`` (None if the first
        RDN is not ``group_name_attribute``)."""
        try:
            attr, value, _sep = parse_dn(dn)[0]
        except (LDAPException, IndexError):
            return None
        if attr.lower() != self.group_name_attribute.lower():
            return None
        return unescape_dn_value(value)

    def _user_groups(self, conn, username: str, entry: dict[str, Any]) -> set[str]:
        if self.group_membership == "memberOf":
            names = (
                self._group_name(dn)
                for dn in all_values(entry["attributes"], "memberOf")
            )
            return {n for n in names if n}
        groups = self._search(
            conn,
            self.group_search_base or self.user_search_base,
            fill_filter(
                self.group_search_filter, username=username, user_dn=entry["dn"]
            ),
            [self.group_name_attribute],
        )
        return {
            name
            for g in groups
            if (name := first_value(g["attributes"], self.group_name_attribute))
        }
