"""Users' homes: local and remote (forced-command) provisioners, the helper."""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from aaltohub.identity.base import Identity
from aaltohub.storage import homes, storage_helper, user_dirs
from aaltohub.storage.homes import ProvisionError, make_home
from aaltohub.storage.storage_helper import helper_main, parse_command
from aaltohub.storage.user_dirs import (
    LocalHomeProvisioner,
    NoHomeProvisioner,
    RemoteCommandHomeProvisioner,
)

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="changing ownership needs root")
# As root, homes get a real user's numbers; otherwise our own (chown to
# oneself is allowed), so the same tests run either way.
UID, GID = (1001234, 70000) if ROOT else (os.geteuid(), os.getegid())
PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
MIN_UID = min(1000, UID)

MALICIOUS_NAMES = [
    "..",
    "../etc",
    "a/../../etc",
    "a/b",
    "/root",
    "a\0b",
    "x" * 300,
    "Alice",
    "",
    "-rf",
    ".hidden",
    "alice;id",
    "alice bob",
    "al\nice",
]


def ident(username="alice", uid=UID, gid=GID):
    return Identity(username=username, uid=uid, gid=gid)


def listing(root):
    return sorted(
        os.path.relpath(os.path.join(d, n), root)
        for d, dirs, files in os.walk(root)
        for n in dirs + files
    )


# --- make_home ---
def test_make_home_creates_owner_group_and_mode(tmp_path):
    assert make_home(str(tmp_path), "u/34/alice", UID, GID) is True
    st = os.lstat(tmp_path / "u/34/alice")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, 0o700)
    assert stat.S_IMODE(os.lstat(tmp_path / "u/34").st_mode) == 0o755
    assert listing(tmp_path) == ["u", "u/34", "u/34/alice"]  # no temp names left
    assert make_home(str(tmp_path), "u/34/alice", UID, GID) is False


def test_failure_leaves_nothing_half_made(tmp_path, monkeypatch):
    (tmp_path / "u/34").mkdir(parents=True)

    def broken_chown(fd, uid, gid):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(homes.os, "fchown", broken_chown)
    with pytest.raises(ProvisionError) as info:
        make_home(str(tmp_path), "u/34/alice", UID, GID)
    assert "Operation not permitted" in info.value.detail
    assert os.listdir(tmp_path / "u/34") == []


def test_an_existing_symlink_is_refused_and_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "store"
    (root / "u/34").mkdir(parents=True)
    (root / "u/34/alice").symlink_to(outside)
    with pytest.raises(ProvisionError, match="not usable") as info:
        make_home(str(root), "u/34/alice", UID, GID)
    assert "symbolic link" in info.value.detail
    assert os.listdir(outside) == []


def test_a_symlinked_parent_cannot_lead_outside_the_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "store"
    (root / "u").mkdir(parents=True)
    (root / "u/34").symlink_to(outside)
    with pytest.raises(ProvisionError, match="could not be created"):
        make_home(str(root), "u/34/alice", UID, GID)
    assert os.listdir(outside) == []


@needs_root
def test_an_existing_home_of_another_uid_is_refused(tmp_path):
    (tmp_path / "u/34/alice").mkdir(parents=True)
    os.chown(tmp_path / "u/34/alice", 4242, 4242)
    with pytest.raises(ProvisionError, match="belongs to another account") as info:
        make_home(str(tmp_path), "u/34/alice", UID, GID)
    assert "owned by uid 4242, expected 1001234" in info.value.detail


# --- LocalHomeProvisioner ---
def local(tmp_path, **kw):
    kw = {"username_pattern": PATTERN, "min_uid": MIN_UID, **kw}
    return LocalHomeProvisioner(storage_root=str(tmp_path), **kw)


async def test_local_provisioner_makes_the_home(tmp_path):
    p = local(tmp_path)
    assert await p.ensure_home(ident(), "u/34/alice") is True
    assert os.path.isdir(tmp_path / "u/34/alice")
    assert await p.ensure_home(ident(), "u/34/alice") is False


@pytest.mark.parametrize("name", MALICIOUS_NAMES)
async def test_bad_usernames_never_reach_a_path(tmp_path, name):
    p = local(tmp_path)
    with pytest.raises(ProvisionError, match="cannot be created for this account"):
        await p.ensure_home(ident(name), "u/34/alice")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "uid,gid,sub_path",
    [
        (0, GID, "u/00/alice"),  # root
        (5, GID, "u/05/alice"),  # system account
        (UID, -1, "u/34/alice"),
        (2**32 - 1, GID, "u/34/alice"),  # (uid_t)-1: chown's "no change"
        (UID, GID, "../u/34/alice"),
        (UID, GID, "/u/34/alice"),
    ],
)
async def test_bad_ids_and_paths_are_refused(tmp_path, uid, gid, sub_path):
    p = local(tmp_path, min_uid=max(MIN_UID, 6))
    with pytest.raises(ProvisionError):
        await p.ensure_home(ident(uid=uid, gid=gid), sub_path)
    assert os.listdir(tmp_path) == []


def test_defaults_come_from_the_identity_provider():
    from aaltohub.identity.base import IdentityProvider

    p = LocalHomeProvisioner()
    assert p.username_pattern == IdentityProvider().username_pattern
    assert p.min_uid == IdentityProvider().min_uid


async def test_known_homes_are_not_checked_again(tmp_path):
    p = local(tmp_path)
    await p.ensure_home(ident(), "u/34/alice")
    os.rmdir(tmp_path / "u/34/alice")
    assert await p.ensure_home(ident(), "u/34/alice") is False  # remembered
    assert not os.path.exists(tmp_path / "u/34/alice")
    p.known_ttl = 0
    assert await p.ensure_home(ident(), "u/34/alice") is True


async def test_local_timeout_and_misconfiguration(tmp_path, monkeypatch):
    def slow(*args):
        time.sleep(1)
        return True

    monkeypatch.setattr(user_dirs, "make_home", slow)
    p = local(tmp_path, timeout=0.05)
    started = time.monotonic()
    with pytest.raises(ProvisionError, match="did not answer in time"):
        await p.ensure_home(ident(), "u/34/alice")
    assert time.monotonic() - started < 0.9
    with pytest.raises(ProvisionError) as info:
        await LocalHomeProvisioner(min_uid=MIN_UID).ensure_home(ident(), "u/34/x")
    assert "c.LocalHomeProvisioner.storage_root" in info.value.detail


async def test_none_provisioner_does_nothing(tmp_path):
    assert await NoHomeProvisioner().ensure_home(ident("../x"), "../x") is False


# --- the forced command ---
def test_parse_command_accepts_exactly_one_shape():
    assert parse_command("ensure-home alice 1001234 70000", PATTERN, 1000, 1) == (
        "alice",
        1001234,
        70000,
    )


@pytest.mark.parametrize(
    "command",
    [
        None,
        "",
        "ensure-home alice 1001234 70000; rm -rf /",
        "ensure-home alice 1001234 70000 extra",
        "ensure-home alice 1001234",
        "ensure-home  alice 1001234 70000",
        "ensure-home ../etc 1001234 70000",
        "ensure-home .. 1001234 70000",
        "ensure-home a/b 1001234 70000",
        "ensure-home alice 0 70000",
        "ensure-home alice 999 70000",
        "ensure-home alice 1001234 0",
        "ensure-home alice 99999999999 70000",
        "ensure-home alice -1 70000",
        "ensure-home alice 12a 70000",
        "ensure-home alice $(id) 70000",
        "ensure-home alice `id` 70000",
        "ensure-home 'alice' 1001234 70000",
        "ensure-home alice\n 1001234 70000",
        "ensure-home al\0ice 1001234 70000",
        "ensure-home ålice 1001234 70000",
        "remove-home alice 1001234 70000",
        "ensure-home " + "a" * 400 + " 1001234 70000",
    ],
)
def test_parse_command_refuses_everything_else(command):
    with pytest.raises(ValueError):
        parse_command(command, PATTERN, 1000, 1)


def run_helper(monkeypatch, capsys, root, command, *extra):
    if command is None:
        monkeypatch.delenv("SSH_ORIGINAL_COMMAND", raising=False)
    else:
        monkeypatch.setenv("SSH_ORIGINAL_COMMAND", command)
    code = helper_main(["--root", str(root), "--min-uid", str(MIN_UID), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_helper_makes_the_home_it_computes_itself(tmp_path, monkeypatch, capsys):
    cmd = f"ensure-home alice {UID} {GID}"
    code, out, err = run_helper(monkeypatch, capsys, tmp_path, cmd)
    rel = f"u/{UID % 100:02d}/alice"
    assert (code, out.strip(), err) == (0, f"created {rel}", "")
    st = os.lstat(tmp_path / rel)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, 0o700)
    code, out, _ = run_helper(monkeypatch, capsys, tmp_path, cmd)
    assert (code, out.strip()) == (0, f"exists {rel}")


@pytest.mark.parametrize(
    "command",
    [
        None,
        f"ensure-home ../../etc {UID} {GID}",
        f"ensure-home alice {UID} {GID}; touch /tmp/pwned",
        f"ensure-home alice 1 {GID}",
    ],
)
def test_helper_refuses_bad_commands(tmp_path, monkeypatch, capsys, command):
    code, out, err = run_helper(monkeypatch, capsys, tmp_path, command)
    assert code == 2 and out == "" and err.startswith("refused: ")
    assert os.listdir(tmp_path) == []


def test_helper_uses_its_own_template(tmp_path, monkeypatch, capsys):
    code, _out, _ = run_helper(
        monkeypatch,
        capsys,
        tmp_path,
        f"ensure-home bob {UID} {GID}",
        "--sub-path",
        "homes/{username}",
    )
    assert code == 0 and os.path.isdir(tmp_path / "homes/bob")


# --- the helper checks the pair against the storage host's own directory ---
@pytest.fixture
def directory(monkeypatch):
    """This host's user database, as sssd would answer from LDAP."""
    users = {
        "alice": pwd.struct_passwd(
            ("alice", "*", UID, GID, "Alice", "/home/alice", "/bin/bash")
        )
    }

    def getpwnam(name):
        try:
            return users[name]
        except KeyError:
            raise KeyError(f"getpwnam(): name not found: {name!r}") from None

    monkeypatch.setattr(storage_helper.pwd, "getpwnam", getpwnam)
    monkeypatch.setattr(
        storage_helper.os,
        "getgrouplist",
        lambda name, base: [base, 4242] if name == "alice" else [base],
    )


@pytest.mark.parametrize(
    "command,flag,reason",
    [
        # a compromised hub asks for alice's home under someone else's uid
        (f"ensure-home alice {UID + 1} {GID}", "--check-nss", f"has uid {UID} on"),
        (f"ensure-home mallory {UID} {GID}", "--check-nss", "not in this host's"),
        (f"ensure-home alice {UID} 5555", "--check-nss=uid-gid", "not in group 5555"),
    ],
)
def test_helper_refuses_a_pair_its_directory_does_not_know(
    tmp_path, monkeypatch, capsys, directory, command, flag, reason
):
    code, out, err = run_helper(monkeypatch, capsys, tmp_path, command, flag)
    assert (code, out) == (2, "") and err.startswith("refused: ")
    assert reason in err
    assert os.listdir(tmp_path) == []


def test_helper_accepts_the_pair_its_directory_knows(
    tmp_path, monkeypatch, capsys, directory
):
    for flag, gid in [("--check-nss", GID), ("--check-nss=uid-gid", 4242)]:
        cmd = f"ensure-home alice {UID} {gid}"
        code, _, err = run_helper(monkeypatch, capsys, tmp_path, cmd, flag)
        assert code == 0, err
    # off (the default) trusts the hub: documented in docs/storage.md
    cmd = f"ensure-home mallory {UID} {GID}"
    assert run_helper(monkeypatch, capsys, tmp_path, cmd)[0] == 0


def test_helper_checks_the_real_user_database_as_a_process(tmp_path):
    """nobody (uid 65534) is in every /etc/passwd."""
    nobody = pwd.getpwnam("nobody")

    def helper(command, *extra):
        env = dict(os.environ, SSH_ORIGINAL_COMMAND=command)
        return subprocess.run(
            [
                sys.executable,
                "-c",
                "from aaltohub.storage.storage_helper import main; main()",
                "--root",
                str(tmp_path),
                "--min-uid",
                "1000",
                *extra,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    wrong = helper(f"ensure-home nobody 1001234 {nobody.pw_gid}", "--check-nss")
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert (
        f"refused: user nobody has uid {nobody.pw_uid} on this host, but the hub"
        " asked for uid 1001234" in wrong.stderr
    )
    unknown = helper("ensure-home no-such-user-x 1001234 70000", "--check-nss")
    assert unknown.returncode == 2 and "not in this host's user database" in (
        unknown.stderr
    )
    assert os.listdir(tmp_path) == []
    if ROOT:
        right = helper(
            f"ensure-home nobody {nobody.pw_uid} {nobody.pw_gid}", "--check-nss=uid-gid"
        )
        assert right.returncode == 0, right.stderr
        made = tmp_path / right.stdout.split()[1]
        assert (made.stat().st_uid, made.stat().st_gid) == (
            nobody.pw_uid,
            nobody.pw_gid,
        )


# --- the remote provisioner over a stand-in ssh ---
@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    """An ``ssh`` first on PATH that stands in for ssh + sshd: it turns the
    remote words into SSH_ORIGINAL_COMMAND exactly as sshd does (joined with
    spaces) and execs the forced command from authorized_keys, which here is
    the real helper with ``--root`` pointing at a temporary storage root."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    root = tmp_path / "storage"
    root.mkdir()
    script = bindir / "ssh"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import os, sys
            args = sys.argv[1:]
            if os.environ.get("FAKE_SSH_HANG"):
                import time; time.sleep(30)
            host, words = args[args.index("--") + 1], args[args.index("--") + 2 :]
            with open(os.environ["FAKE_SSH_LOG"], "a") as log:
                log.write(repr(args) + "\\n")
            os.environ["SSH_ORIGINAL_COMMAND"] = " ".join(words)
            forced = [
                {sys.executable!r}, "-c",
                "from aaltohub.storage.storage_helper import main; main()",
                "--root", {str(root)!r}, "--min-uid", os.environ["FAKE_MIN_UID"],
            ]
            os.execv(forced[0], forced)
            """
        )
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_LOG", str(tmp_path / "ssh.log"))
    monkeypatch.setenv("FAKE_MIN_UID", str(MIN_UID))
    return root


def remote(**kw):
    return RemoteCommandHomeProvisioner(
        host="nfs1.example.org", username_pattern=PATTERN, min_uid=MIN_UID, **kw
    )


def test_remote_command_is_an_argument_list():
    p = remote(identity_file="/etc/jupyterhub/storage_key", user="jhadmin")
    assert p.command(ident()) == [
        "ssh",
        "-T",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "StrictHostKeyChecking=yes",
        "-i",
        "/etc/jupyterhub/storage_key",
        "-l",
        "jhadmin",
        "--",
        "nfs1.example.org",
        "ensure-home",
        "alice",
        str(UID),
        str(GID),
    ]


async def test_remote_provisioner_through_the_forced_command(fake_ssh, tmp_path):
    p = remote()
    assert await p.ensure_home(ident(), "ignored/by/the/helper") is True
    rel = f"u/{UID % 100:02d}/alice"
    st = os.lstat(fake_ssh / rel)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, 0o700)
    p.known_ttl = 0
    assert await p.ensure_home(ident(), "u/x/alice") is False
    assert (tmp_path / "ssh.log").read_text().count("ensure-home") == 2


async def test_remote_refusal_stops_the_spawn_with_the_helpers_reason(
    fake_ssh, monkeypatch
):
    monkeypatch.setenv("FAKE_MIN_UID", str(UID + 1))  # storage side is stricter
    with pytest.raises(ProvisionError, match="could not be created") as info:
        await remote().ensure_home(ident(), "u/34/alice")
    assert "exit 2: refused: uid" in info.value.detail
    assert os.listdir(fake_ssh) == []


async def test_bad_names_are_refused_before_ssh_runs(fake_ssh, tmp_path):
    for name in MALICIOUS_NAMES:
        with pytest.raises(ProvisionError):
            await remote().ensure_home(ident(name), "u/34/x")
    assert not (tmp_path / "ssh.log").exists()


async def test_remote_timeout_kills_ssh(fake_ssh, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_HANG", "1")
    started = time.monotonic()
    with pytest.raises(ProvisionError, match="did not answer in time"):
        await remote(timeout=0.5).ensure_home(ident(), "u/34/alice")
    assert time.monotonic() - started < 5


async def test_missing_ssh_is_a_configuration_error():
    p = remote(ssh_command=["/nonexistent/ssh"])
    with pytest.raises(ProvisionError, match="misconfigured") as info:
        await p.ensure_home(ident(), "u/34/alice")
    assert "/nonexistent/ssh" in info.value.detail


def test_helper_console_script_runs_as_a_process(tmp_path):
    env = dict(os.environ, SSH_ORIGINAL_COMMAND=f"ensure-home carol {UID} {GID}")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from aaltohub.storage.storage_helper import main; main()",
            "--root",
            str(tmp_path),
            "--min-uid",
            str(MIN_UID),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("created u/")


def test_event_loop_is_not_blocked_by_a_slow_storage(tmp_path, monkeypatch):
    """The loop keeps ticking while make_home runs in its thread."""

    def slow(*args):
        time.sleep(0.3)
        return True

    monkeypatch.setattr(user_dirs, "make_home", slow)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await local(tmp_path).ensure_home(ident(), "u/34/alice")
        task.cancel()
        return ticks

    assert asyncio.run(main()) > 10


def test_a_trailing_newline_is_not_a_command():
    # '$' matches before a final newline; the helper's checks are full matches.
    with pytest.raises(ValueError, match="not allowed"):
        parse_command("ensure-home alice 1001234 70000\n", PATTERN, MIN_UID, 1)
