"""Check a hub's configuration before it serves anyone.

``check(config)`` looks at a loaded traitlets :class:`~traitlets.config.Config`
(what ``jupyterhub_config.py`` built) and returns every :class:`Problem`:

- an unknown option of an aaltohub class (``c.StoragePaths.home_sub_pth``)
  or a section that is almost an aaltohub class name (``c.StoragePath``);
- a missing or broken identity setup (no LDAP server, an unreadable users
  file, a bind DN without its password);
- an unreadable course catalog directory;
- a default image that is no image reference, or an alias (``DEFAULT``)
  that the catalog's images file does not define, which would reach pods
  as the literal string;
- ``auth_state`` enabled without a crypt key, or a crypt key that is no key.

``aaltohub check-config`` prints them; the hub runs the same checks at
start (:func:`raise_for_problems`) and refuses to start on an error. The
checks read files (the catalog's images file, a users file) but start and
connect to nothing.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import importlib
import os
import re
import threading
from dataclasses import dataclass
from importlib.metadata import entry_points

import yaml
from traitlets import TraitError
from traitlets.config import Config, Configurable
from traitlets.utils.importstring import import_item

# Modules whose configurable classes are aaltohub's. Imported on demand; a
# module whose optional dependency is missing is skipped.
CONFIGURABLE_MODULES = """
    aaltohub.auth aaltohub.spawn aaltohub.catalog aaltohub.identity
    aaltohub.hooks aaltohub.hooks.provision aaltohub.hooks.quota
    aaltohub.storage aaltohub.storage.layout aaltohub.storage.paths
    aaltohub.storage.quota aaltohub.storage.quota_policy
    aaltohub.storage.user_dirs aaltohub.web.quota aaltohub.kube aaltohub.local
    aaltohub.demo.auth aaltohub.wrap aaltohub.slurm
    aaltohub.announcements aaltohub.web.announcements
""".split()  # noqa: SIM905 (one word per module, short)

# The grammar of an image reference (distribution/reference): an optional
# registry host[:port], slash-separated lowercase path components, an
# optional tag and an optional digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)"
_DOMAIN = rf"(?:{_HOST}(?:\.{_HOST})*(?::[0-9]+)?/)"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = re.compile(
    rf"{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?"
)


ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration: the key, what, and the fix."""

    key: str
    message: str
    fix: str
    severity: str = ERROR

    def __str__(self) -> str:
        return f"{self.key} {self.message}. Fix: {self.fix}"


class ConfigProblems(ValueError):
    """The hub's configuration has errors; the message lists each one."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"the hub's configuration has {len(problems)} error(s); fix them and"
            f" restart (`aaltohub check-config` shows the same list):\n{lines}"
        )


def image_reference_ok(ref: str) -> bool:
    """True if ``ref`` is a well-formed image reference (``repo/name:tag``)."""
    return len(ref) <= 255 and IMAGE_REFERENCE.fullmatch(ref) is not None


# --- the entry points ----------------------------------------------------------
def check(
    config: Config, *, authenticator=None, environ: dict | None = None
) -> list[Problem]:
    """Every problem of ``config``, errors first.

    ``authenticator`` is the hub's authenticator when the hub itself checks
    (it is built from ``c.JupyterHub.authenticator_class`` otherwise, which
    starts nothing). ``environ`` defaults to ``os.environ``.
    """
    environ = os.environ if environ is None else environ
    problems = unknown_keys(config)
    auth, auth_problems = _authenticator(config, authenticator)
    problems += auth_problems
    spawner_cls, spawner_problems = _spawner_class(config)
    problems += spawner_problems
    problems += identity_problems(config, auth, spawner_cls)
    problems += catalog_problems(config, spawner_cls)
    problems += spawner_config_problems(config, spawner_cls)
    problems += crypt_key_problems(config, auth, environ)
    return sorted(problems, key=lambda p: p.severity != ERROR)


def raise_for_problems(
    config: Config, *, authenticator=None, log=None, timeout: float | None = None
) -> None:
    """Log warnings; raise :class:`ConfigProblems` if there is any error.

    For the hub's start (``check_allow_config``): the hub refuses to start
    on a configuration error instead of failing the first login or spawn.
    With ``timeout``, the checks run in a thread: a hung NFS mount (the
    catalog, a storage path) costs the hub's start ``timeout`` seconds and
    an error in the log, not a hub that never starts.
    """
    if timeout is None:
        problems = check(config, authenticator=authenticator)
    else:
        problems = _check_within(config, authenticator, timeout)
        if problems is None:
            if log is not None:
                log.error(
                    "config check did not finish in %ss: a storage path or the"
                    " course catalog (c.CourseCatalog.path) does not answer,"
                    " probably a hung NFS mount. Starting without the check;"
                    " run `aaltohub check-config` once the storage answers.",
                    timeout,
                )
            return
    errors = [p for p in problems if p.severity == ERROR]
    if log is not None:
        for p in problems:
            if p.severity != ERROR:
                log.warning("config %s", p)
    if errors:
        raise ConfigProblems(errors)


def _check_within(config, authenticator, timeout: float) -> list[Problem] | None:
    """:func:`check` in a daemon thread; None if it did not finish in time
    (the thread is abandoned: it holds no lock and writes nothing)."""
    box: dict = {}

    def run():
        try:
            box["problems"] = check(config, authenticator=authenticator)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    worker = threading.Thread(target=run, name="aaltohub-config-check", daemon=True)
    worker.start()
    worker.join(timeout)
    if "error" in box:
        raise box["error"]
    return box.get("problems")


# --- unknown keys ----------------------------------------------------------------
def aaltohub_classes() -> dict[str, list[type]]:
    """aaltohub's configurable classes by name (importing their modules)."""
    for name in CONFIGURABLE_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue  # an optional dependency (kubespawner...) is missing
    out: dict[str, list[type]] = {}
    for cls in _all_configurables():
        if cls.__module__.startswith("aaltohub."):
            out.setdefault(cls.__name__, []).append(cls)
    return out


def _all_configurables() -> set[type]:
    seen: set[type] = set()
    todo = [Configurable]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return seen


def _moved_names() -> dict[str, set[str]]:
    """Old option names that still work (with a DeprecationWarning)."""
    out: dict[str, set[str]] = {}
    for classes in aaltohub_classes().values():
        for cls in classes:
            for old_class, old_name in getattr(cls, "MOVED", {}):
                out.setdefault(old_class, set()).add(old_name)
    return out


def unknown_keys(config: Config) -> list[Problem]:
    """Options no aaltohub class has, and near-misses of aaltohub class names."""
    ours = aaltohub_classes()
    moved = _moved_names()
    known = {cls.__name__ for cls in _all_configurables()}
    problems = []
    for section in sorted(config):
        if not section[:1].isupper():
            continue
        if section in ours:
            allowed = set().union(
                *(c.class_trait_names(config=True) for c in ours[section])
            ) | moved.get(section, set())
            for key in sorted(config[section]):
                if key[:1].isupper() or key in allowed:
                    continue
                problems.append(_unknown_option(section, key, allowed))
        elif section not in known:
            close = difflib.get_close_matches(section, list(ours), n=1, cutoff=0.85)
            if close:
                problems.append(
                    Problem(
                        f"c.{section}",
                        "is not a configurable class, so none of its settings is used",
                        f"did you mean c.{close[0]}? Rename the section.",
                    )
                )
    return problems


def _unknown_option(section: str, key: str, allowed: set[str]) -> Problem:
    close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
    hint = f"did you mean c.{section}.{close[0]}? " if close else ""
    return Problem(
        f"c.{section}.{key}",
        f"is not an option of {section}, so the setting is ignored",
        f"{hint}Correct the name; every option is listed in docs/reference.md",
    )


# --- authenticator and spawner classes ----------------------------------------
def _resolve(value, group: str):
    """A class from a class, an entry-point name or a dotted import path."""
    if isinstance(value, type):
        return value
    for ep in entry_points(group=group):
        if ep.name == value:
            return ep.load()
    return import_item(value)


def _authenticator(config: Config, given):
    """The hub's authenticator, or one built from the config (no I/O)."""
    if given is not None:
        return given, []
    value = config.get("JupyterHub", {}).get("authenticator_class")
    if value is None:
        return None, []  # JupyterHub's default (PAM): nothing of ours
    key = "c.JupyterHub.authenticator_class"
    try:
        cls = _resolve(value, "jupyterhub.authenticators")
    except (ImportError, AttributeError, ValueError) as e:
        return None, [Problem(key, f"{value!r} cannot be loaded: {e}", _NAME_FIX)]
    try:
        return cls(config=config), []
    except Exception as e:
        # TraitError, or a third-party class checking its own settings
        problem = f"cannot be created: {type(e).__name__}: {e}"
        return None, [Problem(key, problem, _TRAIT_FIX)]


def _spawner_class(config: Config):
    value = config.get("JupyterHub", {}).get("spawner_class")
    if value is None:
        return None, []
    try:
        return _resolve(value, "jupyterhub.spawners"), []
    except (ImportError, AttributeError, ValueError) as e:
        key = "c.JupyterHub.spawner_class"
        return None, [Problem(key, f"{value!r} cannot be loaded: {e}", _NAME_FIX)]


def spawner_config_problems(config: Config, spawner_cls) -> list[Problem]:
    """What the spawner class finds wrong in the config, if it checks
    (CourseWrapSpawner: its backends and what each can honour)."""
    check = getattr(spawner_cls, "config_problems", None)
    return list(check(config)) if callable(check) else []


_NAME_FIX = (
    "use an installed entry-point name (e.g. 'course', 'aaltohub-ldap') or a"
    " full import path, and check the package is installed in the hub image"
)
_TRAIT_FIX = "correct the value named in the message"


# --- identity ---------------------------------------------------------------------
def configured(config: Config, cls: type, name: str, default=None):
    """The value traitlets would give ``cls.name`` from ``config``: the most
    specific class section in the MRO that sets it, else ``default``."""
    value = default
    for klass in reversed(cls.mro()):
        section = config.get(klass.__name__) if klass.__name__ in config else None
        if section is not None and name in section:
            value = section[name]
    return value


def _spawner_identity_class(config: Config, spawner_cls):
    from .spawn_identity import SpawnerIdentityMixin

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
    from .identity import LDAPIdentity

    ours, ldap_login = login_kind(auth)
    try:
        spawner_identity, explicit = _spawner_identity_class(config, spawner_cls)
    except ImportError as e:
        key = f"c.{spawner_cls.__name__}.identity_class"
        return [Problem(key, f"cannot be loaded: {e}", _NAME_FIX)]
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
    from .identity import LDAPIdentity, StaticIdentity

    name = provider_cls.__name__
    try:
        provider = provider_cls(config=config)
    except TraitError as e:
        return [Problem(f"c.{name}", f"has an invalid setting: {e}", _TRAIT_FIX)]
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
        problem = _unreadable(provider.path, file=True)
        if problem:
            problems.append(
                Problem(
                    f"c.{name}.path",
                    problem,
                    "point it at the YAML users file, readable by the hub",
                )
            )
    return problems


def _unreadable(path: str, *, file: bool) -> str:
    """Why ``path`` cannot be used, or '' if it can."""
    kind = "file" if file else "directory"
    if not path:
        return f"is empty: no {kind} is given"
    if not os.path.exists(path):
        return f"is {path!r}, which does not exist (uid {os.getuid()})"
    if file and not os.path.isfile(path):
        return f"is {path!r}, which is not a regular file"
    if not file and not os.path.isdir(path):
        return f"is {path!r}, which is not a directory"
    mode = os.R_OK if file else os.R_OK | os.X_OK
    if not os.access(path, mode):
        return f"is {path!r}, which uid {os.getuid()} cannot read"
    return ""


# --- catalog and images -----------------------------------------------------------
def catalog_problems(config: Config, spawner_cls) -> list[Problem]:
    """The course directory is readable; default images are real references."""
    from .catalog import CourseCatalog

    if "CourseCatalog" not in config and spawner_cls is None:
        return []
    try:
        catalog = CourseCatalog(config=config)
    except TraitError as e:
        return [Problem("c.CourseCatalog", f"has an invalid setting: {e}", _TRAIT_FIX)]
    problems, table = [], None
    if catalog.path:
        why = _unreadable(catalog.path, file=False)
        if why:
            problems.append(
                Problem(
                    "c.CourseCatalog.path",
                    why,
                    "mount the course directory into the hub at this path"
                    " (z2jh: hub.extraVolumes and hub.extraVolumeMounts) or"
                    " correct the path",
                )
            )
        else:
            table, problem = _images_table(catalog)
            problems += [problem] if problem else []
    problems += _default_image_problems(catalog, table)
    problems += spawner_image_problems(config, spawner_cls)
    return problems


def _images_table(catalog):
    """The catalog's image table (None: no usable file) and its problem."""
    from .catalog.images import ImageTable, parse_images
    from .catalog.safe_files import Refused, read_bytes
    from .catalog.safe_yaml import load_yaml
    from .course import CourseError

    where = os.path.join(catalog.path, catalog.images_file)
    if not os.path.lexists(where):
        return ImageTable(), None
    root = os.open(catalog.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        data = read_bytes(root, catalog.images_file, catalog.max_file_size)
        return parse_images(load_yaml(data.decode()), catalog.images_file), None
    except (OSError, Refused, CourseError, ValueError, yaml.YAMLError) as e:
        fix = "correct the images file (`aaltohub validate DIR` checks it too)"
        return None, Problem("c.CourseCatalog.images_file", f"{where}: {e}", fix)
    finally:
        os.close(root)


def _default_image_problems(catalog, table) -> list[Problem]:
    ref, key = catalog.default_image, "c.CourseCatalog.default_image"
    if not ref:
        return []
    full = "or set a full reference such as quay.io/jupyter/scipy-notebook:2025-01-06"
    if ref.isupper():  # an alias, as ImageTable.resolve reads it
        where = os.path.join(
            catalog.path or "(no c.CourseCatalog.path)", catalog.images_file
        )
        if table is None or ref not in table.aliases:
            known = ", ".join(sorted(table.aliases)) if table else "file unreadable"
            return [
                Problem(
                    key,
                    f"is the alias {ref!r}, which {where} does not define (known"
                    f" aliases: {known or 'none'}): pods would get the literal"
                    f" image name {ref!r}",
                    f"add `aliases: {{{ref}: REGISTRY/IMAGE:TAG}}` to the images"
                    f" file, {full}",
                )
            ]
        ref = table.aliases[ref]
    if not image_reference_ok(ref):
        return [Problem(key, f"gives {ref!r}, which is no image reference", full)]
    return []


def spawner_image_problems(config: Config, spawner_cls) -> list[Problem]:
    """The spawner's image and its general profiles' images are references."""
    if spawner_cls is None:
        return []
    name, found = spawner_cls.__name__, []
    image = configured(config, spawner_cls, "image")
    if isinstance(image, str):
        found.append((f"c.{name}.image", image))
    profiles = configured(config, spawner_cls, "general_profiles") or []
    for i, profile in enumerate(profiles if isinstance(profiles, list) else []):
        override = (
            profile.get("kubespawner_override") if isinstance(profile, dict) else None
        )
        if isinstance(override, dict) and isinstance(override.get("image"), str):
            key = f"c.{name}.general_profiles[{i}].kubespawner_override.image"
            found.append((key, override["image"]))
    return [
        Problem(
            key, f"is {ref!r}, which is no image reference", "give REGISTRY/IMAGE:TAG"
        )
        for key, ref in found
        if not image_reference_ok(ref)
    ]


# --- auth_state and the crypt key ---------------------------------------------------
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
