"""The ``aaltohub`` command: a thin dispatcher to one module per command.

Each module in :mod:`aaltohub.commands` has ``register(subparsers)`` that
adds its sub-command and sets ``func`` (taking the parsed args, returning
an exit status). Logic lives in the library modules, not here.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    "validate",
    "check_config",
    "course",
    "images",
    "migrate",
    "quota",
    "probe",
    "capacity",
    "audit",
    "announce",
    "grade",
    "retention",
    "users",
    "demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aaltohub",
        description="Manage an aaltohub course hub: courses, storage, demo.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"aaltohub.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"aaltohub.commands.{name}":
                raise
            continue  # command not installed in this build
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
