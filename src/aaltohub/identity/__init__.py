"""Identity providers: map a username to uid, gid, home, name, email, groups."""

from .base import (
    Identity,
    IdentityError,
    IdentityProvider,
    IdentityUnavailable,
    InvalidIdentity,
    InvalidUsername,
    UnknownUser,
)
from .ldap import LDAPIdentity
from .nss import NSSIdentity
from .static import StaticIdentity

__all__ = [
    "Identity",
    "IdentityError",
    "IdentityProvider",
    "IdentityUnavailable",
    "InvalidIdentity",
    "InvalidUsername",
    "LDAPIdentity",
    "NSSIdentity",
    "StaticIdentity",
    "UnknownUser",
]
