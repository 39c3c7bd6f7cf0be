"""``aaltohub-storage-helper``: the ssh forced command on the storage host.

Owns the storage-host side of :class:`.user_dirs.RemoteCommandHomeProvisioner`:
it reads ``SSH_ORIGINAL_COMMAND``, accepts exactly
``ensure-home USERNAME UID GID``, checks the values again with the rules in
:mod:`.homes`, renders the path from its own template and makes the home.

With ``--check-nss`` it also checks the pair against this host's own user
database (NSS: /etc/passwd, sssd, LDAP), so a compromised hub cannot have it
make one user's home owned by another user's uid.
"""

from __future__ import annotations

import argparse
import os
import pwd
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
    if not _COMMAND_CHARS.fullmatch(command):
        raise ValueError("command contains characters that are not allowed")
    words = command.split(" ")
    if len(words) != 4 or words[0] != HELPER_VERB:
        raise ValueError(f"expected '{HELPER_VERB} USERNAME UID GID'")
    _, username, uid_s, gid_s = words
    check_username(username, pattern)
    if not (_NUMBER.fullmatch(uid_s) and _NUMBER.fullmatch(gid_s)):
        raise ValueError("uid and gid must be decimal numbers")
    uid, gid = int(uid_s), int(gid_s)
    check_ids(uid, gid, min_uid, min_gid)
    return username, uid, gid


#: ``--check-nss`` values: off; the uid must be the user's; and the gid must
#: be the user's primary group or one they are a member of.
NSS_CHECKS = ("off", "uid", "uid-gid")


def check_nss(username: str, uid: int, gid: int, mode: str) -> None:
    """ValueError unless this host's user database agrees with the hub.

    NSS cannot tell "no such user" from "directory unreachable" (both are
    KeyError), so either refuses; the message says where to look.
    """
    if mode == "off":
        return
    try:
        pw = pwd.getpwnam(username)
    except KeyError:
        raise ValueError(
            f"user {username} is not in this host's user database ('getent"
            f" passwd {username}' finds nothing); if the account exists, check"
            " that sssd (or nslcd) is running and reaches the directory"
        ) from None
    if pw.pw_uid != uid:
        raise ValueError(
            f"user {username} has uid {pw.pw_uid} on this host, but the hub asked"
            f" for uid {uid}; refusing to make a home owned by another account."
            " Compare the hub's identity provider with 'getent passwd"
            f" {username}'"
        )
    if mode == "uid-gid" and gid not in os.getgrouplist(username, pw.pw_gid):
        raise ValueError(
            f"user {username} is not in group {gid} on this host (primary group"
            f" {pw.pw_gid}); refusing the home's group. Compare the hub's"
            f" identity provider with 'id {username}'"
        )


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
    p.add_argument(
        "--check-nss",
        nargs="?",
        const="uid",
        default="off",
        choices=NSS_CHECKS,
        help="check USERNAME and UID (uid-gid: and GID) against this host's user"
        " database (getent passwd, e.g. sssd) and refuse a mismatch or an"
        " unknown user; use it whenever this host sees the same directory as"
        " the hub. Bare --check-nss means uid. Default: off, the hub is trusted"
        " for which uid a username has",
    )
    args = p.parse_args(argv)
    command = os.environ.get("SSH_ORIGINAL_COMMAND")
    try:
        username, uid, gid = parse_command(
            command, args.username_pattern, args.min_uid, args.min_gid
        )
        check_nss(username, uid, gid, args.check_nss)
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
