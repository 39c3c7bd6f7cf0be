"""``aaltohub check-config FILE``: check the hub's config without starting it.

The file is loaded the way JupyterHub loads ``-f FILE`` (traitlets'
PyFileConfigLoader, ``get_config()`` in its namespace, ``load_subconfig``
relative to it). That **runs the file's Python**, exactly as the hub would,
so run it where the hub runs (``kubectl exec deploy/hub -- aaltohub
check-config /usr/local/etc/jupyterhub/jupyterhub_config.py`` on z2jh, which
also runs the chart's ``jupyterhub_config.d``) or on a copy you trust.
Nothing is started and nothing is connected to; the checks are those of
:mod:`aaltohub.config_check`, which the hub also runs at start.
"""

from __future__ import annotations

import json
import os

from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader

from ..config_check import ERROR, check


def register(sub) -> None:
    p = sub.add_parser(
        "check-config",
        help="check a jupyterhub_config.py; exits 1 if it has errors",
        description="Load a hub config file as JupyterHub does (this runs its"
        " Python) and report unknown aaltohub options, a missing identity"
        " setup, an unreadable course directory, a default image that is no"
        " image, and auth_state without a crypt key. Starts nothing.",
    )
    p.add_argument("path", metavar="FILE", help="the hub's jupyterhub_config.py")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def load_config_file(path: str):
    """The Config the hub would build from ``path`` (runs the file)."""
    directory, name = os.path.split(os.path.abspath(path))
    return PyFileConfigLoader(name, path=directory).load_config()


def run(args) -> int:
    try:
        config = load_config_file(args.path)
    except ConfigFileNotFound:
        print(f"error: {args.path}: no such file; give the hub's config file")
        return 2
    except Exception as e:
        # The deployer's Python raised: say where, as the hub would fail.
        print(f"error: {args.path} raised {type(e).__name__}: {e}")
        return 2
    problems = check(config)
    errors = [p for p in problems if p.severity == ERROR]
    if args.json:
        out = [
            {"severity": p.severity, "key": p.key, "message": p.message, "fix": p.fix}
            for p in problems
        ]
        print(json.dumps({"file": args.path, "problems": out}, indent=2))
    else:
        for p in problems:
            print(f"{p.severity}: {p}")
        print(
            f"{args.path}: {len(errors)} error(s),"
            f" {len(problems) - len(errors)} warning(s)"
        )
    return 1 if errors else 0
