"""Identity checks: the providers that logins and spawns use are set up.

A hub whose LDAP server, search base or users file is missing, whose bind
DN has no password, or whose authenticator and spawner use different
identity classes fails at the first login or spawn, in a way a student
cannot explain. These checks find that at start, from the config alone
(a provider is created, never connected).
"""

from __future__ import annotations

from traitlets import TraitError
from traitlets.config import Config
from traitlets.utils.importstring import import_item

from .classes import configured
from .images import unreadable
from .problems import NAME_FIX, TRAIT_FIX, WARNING, Problem


def _spawner_identity_class(config: Config, spawner_cls):
    from ..spawn_identity import SpawnerIdentityMixin

    if spawner_cls is None or not issubclass(spawner_cls, SpawnerIdentityMixin):
        return None, False
    value = configured(config, spawner_cls, "identity_class")
    explicit = value is not None
    if not explicit:
        # a string until the trait is first used, then the class itself
        value = spawner_cls.class_traits()["identity_class"].default_value
    return (import_item(value) if isinstance(value, str) else value), explicit


def login_kind(auth) -> tuple[bool, bool]:
    """(attaches an aaltohub identity, checks passwords through LDAP).

    By class name: the authenticator runs these checks at start, so this
    module must not import it.
    """
    names = {k.__name__ for k in type(auth).__mro__} if auth is not None else set()
    return "IdentityAuthenticatorMixin" in names, "LDAPIdentityAuthenticator" in names


def identity_problems(config: Config, auth, spawner_cls) -> list[Problem]:
    """The identity provider(s) the hub uses are set up and agree."""
    from ..identity import LDAPIdentity

    ours, ldap_login = login_kind(auth)
    try:
        spawner_identity, explicit = _spawner_identity_class(config, spawner_cls)
    except ImportError as e:
        key = f"c.{spawner_cls.__name__}.identity_class"
        return [Problem(key, f"cannot be loaded: {e}", NAME_FIX)]
    providers = {auth.identity_class} if ours else set()
    if ldap_login:
        providers.add(LDAPIdentity)  # the password check binds through it
    problems = []
    if spawner_identity is not None:
        providers.add(spawner_identity)
        name = spawner_cls.__name__
        if ours and spawner_identity is not auth.identity_class:
            problems.append(_mismatch(name, spawner_identity, auth))
        elif not ours and not explicit:
            problems.append(
                Problem(
                    f"c.{name}.identity_class",
                    "is not set, so identities come from the hub's own NSS"
                    " (sssd); a hub pod without sssd knows no student",
                    f"set c.{name}.identity_class = 'aaltohub.LDAPIdentity'"
                    " (or StaticIdentity/NSSIdentity) and configure it",
                    WARNING,
                )
            )
    for provider in sorted(providers, key=lambda c: c.__name__):
        problems += provider_problems(config, provider)
    return problems


def _mismatch(name: str, spawner_identity, auth) -> Problem:
    auth_identity = auth.identity_class
    return Problem(
        f"c.{name}.identity_class",
        f"is {spawner_identity.__name__} but the authenticator's"
        f" identity_class is {auth_identity.__name__}: logins and spawns"
        " would see different identities",
        f"set both to the same class (c.{name}.identity_class ="
        f" '{auth_identity.__module__}.{auth_identity.__name__}')",
        WARNING,
    )


def provider_problems(config: Config, provider_cls) -> list[Problem]:
    """What one identity provider needs: servers and bases, or a file."""
    from ..identity import LDAPIdentity, StaticIdentity

    name = provider_cls.__name__
    try:
        provider = provider_cls(config=config)
    except TraitError as e:
        return [Problem(f"c.{name}", f"has an invalid setting: {e}", TRAIT_FIX)]
    problems = []
    if isinstance(provider, LDAPIdentity):
        for trait, example in (
            ("server_urls", "['ldaps://ldap.example.org']"),
            ("user_search_base", "'ou=people,dc=example,dc=org'"),
        ):
            if not getattr(provider, trait):
                problems.append(
                    Problem(
                        f"c.{name}.{trait}",
                        "is empty, so no user can be looked up",
                        f"set it, e.g. c.{name}.{trait} = {example}",
                    )
                )
        if provider.bind_dn and not provider.bind_password:
            problems.append(
                Problem(
                    f"c.{name}.bind_password",
                    f"is empty while bind_dn is {provider.bind_dn!r}: the"
                    " service account cannot bind (on Kubernetes, the Secret"
                    " did not reach the hub's environment)",
                    "give the hub the password from a Secret"
                    " (hub.extraEnv LDAP_BIND_PASSWORD: valueFrom.secretKeyRef)"
                    " and set c.LDAPIdentity.bind_password from it",
                )
            )
    elif isinstance(provider, StaticIdentity):
        problem = unreadable(provider.path, file=True)
        if problem:
            problems.append(
                Problem(
                    f"c.{name}.path",
                    problem,
                    "point it at the YAML users file, readable by the hub",
                )
            )
    return problems
