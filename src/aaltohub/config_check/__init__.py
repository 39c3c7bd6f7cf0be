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

The checks live in one module per topic: :mod:`.problems` (what a check
reports), :mod:`.options` (unknown options), :mod:`.classes` (the
authenticator and spawner classes), :mod:`.identity`, :mod:`.images` (the
course catalog and images) and :mod:`.crypt_keys`. This module runs them
all.
"""

from __future__ import annotations

import os
import threading

from traitlets.config import Config

from .classes import (
    configured,
    hub_authenticator,
    hub_spawner_class,
    spawner_config_problems,
)
from .crypt_keys import crypt_key_problems
from .identity import identity_problems, login_kind, provider_problems
from .images import (
    IMAGE_REFERENCE,
    catalog_problems,
    image_reference_ok,
    spawner_image_problems,
)
from .options import CONFIGURABLE_MODULES, aaltohub_classes, unknown_keys
from .problems import ERROR, WARNING, ConfigProblems, Problem

__all__ = [
    "CONFIGURABLE_MODULES",
    "ERROR",
    "IMAGE_REFERENCE",
    "WARNING",
    "ConfigProblems",
    "Problem",
    "aaltohub_classes",
    "catalog_problems",
    "check",
    "configured",
    "crypt_key_problems",
    "identity_problems",
    "image_reference_ok",
    "login_kind",
    "provider_problems",
    "raise_for_problems",
    "spawner_config_problems",
    "spawner_image_problems",
    "unknown_keys",
]


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
    auth, auth_problems = hub_authenticator(config, authenticator)
    problems += auth_problems
    spawner_cls, spawner_problems = hub_spawner_class(config)
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
