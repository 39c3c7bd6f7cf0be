"""``aaltohub users inactive|archive|restore``: leavers' homes.

``inactive --since DATE`` lists the homes on storage whose owners have not
used the hub since DATE (the hub's ``last_activity``, read through its REST
API: see :mod:`.hub_api` for why not the database), never used it, or are
no longer in the directory, with their sizes. ``archive`` moves those homes
aside (a rename, nothing copied); ``aaltohub retention`` deletes an
archived home after ``c.Retention.homes_days`` and its warning period.
``restore`` brings one back. The rule is :mod:`aaltohub.leavers`.
"""

from __future__ import annotations

import json

from ..leavers import leavers
from ..retention import Retention
from ..storage.homes_archive import archive_home, find_homes, restore_home
from ..storage.layout import StorageLayout
from ..storage.retention_store import human_size, tree_size
from ..term import as_time, day
from .course_common import (
    Audit,
    UsageError,
    audit_options,
    common_options,
    dry_run_option,
    err,
    guard,
    hub_config,
    storage_root,
    student_uid_of,
)
from .hub_api import HubError, add_hub_options, hub_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "users",
        help="homes of users who left or stopped using the hub; archive them",
        description="Leavers' homes: list, archive (then retention deletes"
        " them after c.Retention.homes_days), restore.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, func, extra, text in (
        ("inactive", run_inactive, [], "list homes of inactive users, with sizes"),
        (
            "archive",
            run_archive,
            [dry_run_option(), audit_options()],
            "move inactive users' homes to the archive",
        ),
    ):
        action = actions.add_parser(
            name, parents=[common_options(True), *extra], help=text
        )
        action.add_argument(
            "--since",
            required=True,
            metavar="DATE",
            help="inactive: no hub activity since this date (e.g. 2025-09-01)",
        )
        action.add_argument(
            "--directory",
            metavar="SOURCE",
            help="also report users no longer in the directory: 'nss' (this"
            " host's user database) or a 'username: uid' YAML file",
        )
        action.add_argument(
            "usernames", nargs="*", metavar="USER", help="only these users"
        )
        add_hub_options(action)
        action.set_defaults(func=func)
    restore = actions.add_parser(
        "restore",
        parents=[common_options(True), dry_run_option(), audit_options()],
        help="move an archived home back",
    )
    restore.add_argument("usernames", nargs="+", metavar="USER")
    restore.set_defaults(func=run_restore)


def _inactive(args) -> list:
    root = storage_root(args)
    paths = StorageLayout(config=hub_config(args)).paths
    since = as_time(args.since, "--since")
    try:
        activity = hub_from_args(args).last_activity()
    except HubError as e:
        raise UsageError(str(e)) from None
    args.student_uids = args.directory
    lookup = student_uid_of(args)
    in_directory = None if lookup is None else (lambda name: lookup(name) is not None)
    homes = find_homes(root, paths.home_sub_path)
    if args.usernames:
        homes = [h for h in homes if h[0] in set(args.usernames)]
    return leavers(homes, activity, since, in_directory)


@guard
def run_inactive(args) -> int:
    found = _inactive(args)
    root = storage_root(args)
    rows = [
        {
            "username": x.username,
            "home": x.path,
            "size": tree_size(root, x.path),
            "last_activity": day(x.last_activity) if x.last_activity else "",
            "reasons": list(x.reasons),
        }
        for x in found
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        table = [["USER", "SIZE", "LAST ACTIVITY", "HOME", "WHY"]]
        for r in rows:
            table.append(
                [
                    r["username"],
                    human_size(r["size"]),
                    r["last_activity"][:10] or "-",
                    r["home"],
                    "; ".join(r["reasons"]),
                ]
            )
        widths = [max(len(row[i]) for row in table) for i in range(5)]
        for row in table:
            print(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            )
    total = sum(r["size"] or 0 for r in rows)
    err(f"{len(rows)} inactive home(s), {human_size(total)}")
    return 0


@guard
def run_archive(args) -> int:
    found = _inactive(args)
    settings = Retention(config=hub_config(args))
    root = storage_root(args)
    audit = Audit(args, "users.archive")
    failed = 0
    try:
        for x in found:
            reason = "; ".join(x.reasons)
            if args.dry_run:
                print(f"would archive {x.path} ({x.username}: {reason})")
                continue
            try:
                dest = archive_home(
                    root, x.path, settings.homes_archive, x.username, reason
                )
            except OSError as e:
                failed += 1
                err(f"error: {x.username}: {e}")
                audit.record("", target=x.path, outcome="failed", reason=str(e))
                continue
            audit.record("", target=f"{x.path} -> {dest}", reason=reason)
            print(f"archived {x.path} -> {dest} ({reason})")
    finally:
        audit.close()
    err(
        f"{len(found) - failed} home(s) archived; retention deletes them"
        f" {settings.homes_days} days later, after a warning"
    )
    return 1 if failed else 0


@guard
def run_restore(args) -> int:
    settings = Retention(config=hub_config(args))
    root = storage_root(args)
    audit = Audit(args, "users.restore")
    failed = 0
    try:
        for name in args.usernames:
            if args.dry_run:
                print(f"would restore {name}")
                continue
            try:
                home = restore_home(root, settings.homes_archive, name)
            except (OSError, KeyError, ValueError) as e:
                failed += 1
                err(f"error: {name}: {e}")
                continue
            audit.record("", target=home, reason=f"restored {name}")
            print(f"restored {name} -> {home}")
    finally:
        audit.close()
    return 1 if failed else 0
