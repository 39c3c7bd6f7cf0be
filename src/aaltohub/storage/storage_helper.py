"""``aaltohub-storage-helper``: the ssh forced command on the storage host.

Owns the storage-host side of :class:`.user_dirs.RemoteCommandHomeProvisioner`:
it reads ``SSH_ORIGINAL_COMMAND``, accepts exactly
``ensure-home USERNAME UID GID``, checks the values again with the rules in
:mod:`.homes`, renders the path from its own template and makes the home.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from ..identity.base import DEFAULT_MIN_UID, DEFAULT_USERNAME_PATTERN
from .homes import HELPER_VERB, ProvisionError, check_ids, check_username, make_home
from .paths import DEFAULT_HOME_SUB_PATH, UnsafePath, render, user_fields

_COMMAND_CHARS = re.compile(r"^[A-Za-z0-9._ -]{1,300}$")
_NUMBER = re.compile(r"^[0-9]{1,10}$")


def parse_command(
    command: str | None, pattern: str, min_uid: int, min_gid: int
) -> tuple[str, int, int]:
    """Validate SSH_ORIGINAL_COMMAND; returns (username, uid, gid).

    Accepts exactly ``ensure-home USERNAME UID GID`` separated by single
    spaces; anything else (quotes, globs, ``;``, extra words) is refused.
    """
    if not command:
        raise ValueError(
            "no command; this helper runs as an ssh forced command and expects"
            f" '{HELPER_VERB} USERNAME UID GID'"
        )
    if not _COMMAND_CHARS.match(command):
        raise ValueError("command contains characters that are not allowed")
    words = command.split(" ")
    if len(words) != 4 or words[0] != HELPER_VERB:
        raise ValueError(f"expected '{HELPER_VERB} USERNAME UID GID'")
    _, username, uid_s, gid_s = words
    check_username(username, pattern)
    if not (_NUMBER.match(uid_s) and _NUMBER.match(gid_s)):
        raise ValueError("uid and gid must be decimal numbers")
    uid, gid = int(uid_s), int(gid_s)
    check_ids(uid, gid, min_uid, min_gid)
    return username, uid, gid


def helper_main(argv: list[str] | None = None) -> int:
    """``aaltohub-storage-helper``: make a home, as an ssh forced command."""
    p = argparse.ArgumentParser(
        prog="aaltohub-storage-helper",
        description="Forced command for authorized_keys: reads"
        f" SSH_ORIGINAL_COMMAND='{HELPER_VERB} USERNAME UID GID', checks it, and"
        " makes the user's home below --root.",
    )
    p.add_argument("--root", required=True, help="storage root on this host")
    p.add_argument(
        "--sub-path",
        default=DEFAULT_HOME_SUB_PATH,
        help="home template, as c.StoragePaths.home_sub_path on the hub",
    )
    p.add_argument("--min-uid", type=int, default=DEFAULT_MIN_UID)
    p.add_argument("--min-gid", type=int, default=1)
    p.add_argument("--username-pattern", default=DEFAULT_USERNAME_PATTERN)
    p.add_argument("--mode", type=lambda s: int(s, 8), default=0o700)
    args = p.parse_args(argv)
    command = os.environ.get("SSH_ORIGINAL_COMMAND")
    try:
        username, uid, gid = parse_command(
            command, args.username_pattern, args.min_uid, args.min_gid
        )
        rel = render(args.sub_path, user_fields(username, uid), "--sub-path")
    except (ValueError, UnsafePath) as e:
        print(f"refused: {e}", file=sys.stderr)
        return 2
    try:
        made = make_home(args.root, rel, uid, gid, args.mode)
    except ProvisionError as e:
        print(f"error: {e.detail or e}", file=sys.stderr)
        return 1
    print(f"{'created' if made else 'exists'} {rel}")
    return 0


def main() -> None:  # console script entry point
    sys.exit(helper_main())
