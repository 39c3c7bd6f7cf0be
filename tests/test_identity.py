"""Identity providers: StaticIdentity, NSSIdentity and LDAPIdentity (real slapd)."""

from __future__ import annotations

import asyncio
import itertools
import os
import pwd
import socket
import threading
import time

import pytest
from traitlets import TraitError

from aaltohub.identity import (
    IdentityUnavailable,
    InvalidIdentity,
    InvalidUsername,
    LDAPIdentity,
    NSSIdentity,
    StaticIdentity,
    UnknownUser,
)

pytest_plugins = ["ldap_server"]

BAD_USERNAMES = ["../x", "a/b", "A;rm", "x" * 100, "", "..", "*", "alice)(uid=*"]


# --- StaticIdentity -------------------------------------------------------------
GOOD_USERS = """\
users:
  alice:
    uid: 1001
    gid: 1001
    name: Alice Andersson
    email: alice@example.org
    home: /home/alice
    groups: [students, course-cs101]
  daemon:
    uid: 2
    gid: 2
"""


class RecordingStatic(StaticIdentity):
    """Counts calls that reach the backend."""

    calls: list[str]

    def lookup_sync(self, username):
        self.calls.append(username)
        return super().lookup_sync(username)


@pytest.fixture
def users_yaml(tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text(GOOD_USERS)
    return path


async def test_static_lookup_reads_file(users_yaml):
    provider = StaticIdentity(path=str(users_yaml))
    identity = await provider.lookup("alice")
    assert (identity.uid, identity.gid) == (1001, 1001)
    assert identity.name == "Alice Andersson"
    assert identity.email == "alice@example.org"
    assert identity.home == "/home/alice"
    assert identity.groups == {"students", "course-cs101"}


async def test_static_bad_yaml_keeps_last_good_file(users_yaml, caplog):
    provider = StaticIdentity(path=str(users_yaml), cache_ttl=0)
    assert (await provider.lookup("alice")).uid == 1001
    users_yaml.write_text("users:\n  alice: [this is: not valid\n")
    later = time.time() + 5
    os.utime(users_yaml, (later, later))  # a new mtime even on coarse clocks
    assert (await provider.lookup("alice")).uid == 1001
    assert str(users_yaml) in caplog.text
    assert "keeping the previous version" in caplog.text


async def test_static_picks_up_changes(users_yaml):
    provider = StaticIdentity(path=str(users_yaml), cache_ttl=0)
    assert (await provider.lookup("alice")).uid == 1001
    users_yaml.write_text(GOOD_USERS.replace("uid: 1001", "uid: 1005"))
    later = time.time() + 5
    os.utime(users_yaml, (later, later))
    assert (await provider.lookup("alice")).uid == 1005


async def test_static_unknown_user(users_yaml):
    provider = StaticIdentity(path=str(users_yaml))
    with pytest.raises(UnknownUser, match="mallory"):
        await provider.lookup("mallory")


async def test_static_system_uid_refused(users_yaml):
    provider = StaticIdentity(path=str(users_yaml))
    with pytest.raises(InvalidIdentity, match="uid 2"):
        await provider.lookup("daemon")


@pytest.mark.parametrize("username", BAD_USERNAMES)
async def test_bad_usernames_refused_before_lookup(users_yaml, username):
    provider = RecordingStatic(path=str(users_yaml))
    provider.calls = []
    with pytest.raises(InvalidUsername):
        await provider.lookup(username)
    assert provider.calls == []


async def test_concurrent_lookups_ask_backend_once(users_yaml):
    provider = RecordingStatic(path=str(users_yaml))
    provider.calls = []
    results = await asyncio.gather(*(provider.lookup("alice") for _ in range(20)))
    assert {r.uid for r in results} == {1001}
    assert provider.calls == ["alice"]


# --- NSSIdentity ------------------------------------------------------------------
async def test_nss_refuses_root_by_min_uid():
    with pytest.raises(InvalidIdentity, match="uid 0"):
        await NSSIdentity().lookup("root")


async def test_nss_reads_passwd_and_groups():
    root = pwd.getpwnam("root")
    provider = NSSIdentity(min_uid=0, email_template="{username}@example.org")
    identity = await provider.lookup("root")
    assert (identity.uid, identity.gid) == (0, root.pw_gid)
    assert identity.home == root.pw_dir
    assert identity.name == root.pw_gecos.split(",")[0]
    assert identity.email == "root@example.org"
    assert "root" in identity.groups


async def test_nss_no_email_by_default():
    assert (await NSSIdentity(min_uid=0).lookup("root")).email == ""


async def test_nss_unknown_user_and_group():
    provider = NSSIdentity()
    with pytest.raises(UnknownUser):
        await provider.lookup("no-such-user-aaltohub")


def test_nss_bad_email_template_is_a_config_error():
    with pytest.raises(TraitError, match="username"):
        NSSIdentity(email_template="{user}@example.org")


# --- LDAPIdentity against a real slapd ----------------------------------------------
@pytest.fixture
def make_ldap(slapd):
    def make(**overrides):
        settings = dict(
            server_urls=[slapd.url],
            bind_dn=slapd.service_dn,
            bind_password=slapd.service_password,
            user_search_base=f"ou=people,{slapd.suffix}",
            group_search_base=f"ou=groups,{slapd.suffix}",
            group_membership="posixGroup",
            lookup_timeout=2.0,
            connect_timeout=1.0,
            receive_timeout=2.0,
        )
        settings.update(overrides)
        return LDAPIdentity(**settings)

    return make


@pytest.fixture
def closed_port():
    """A port on which nothing listens (kept bound so nobody else takes it)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"ldap://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for conn in accepted:  # EOF releases the blocked lookup thread
        conn.close()


async def test_ldap_posixgroup_mode(make_ldap):
    identity = await make_ldap().lookup("alice")
    assert (identity.uid, identity.gid) == (10001, 10001)
    assert identity.home == "/home/alice"
    assert identity.name == "Alice Andersson"
    assert identity.email == "alice@example.org"
    assert identity.groups == {"students", "teachers"}


async def test_ldap_memberof_mode(make_ldap):
    provider = make_ldap(group_membership="memberOf")
    assert (await provider.lookup("alice")).groups == {"course-cs101"}
    carol = await provider.lookup("carol")
    assert carol.groups == {"staff"}
    # No displayName and no mail: the name falls back to cn.
    assert (carol.name, carol.email) == ("Carol Carlsson", "")


async def test_ldap_active_directory_style_config(make_ldap, slapd):
    provider = make_ldap(
        user_search_filter="(&(objectClass=inetOrgPerson)(sAMAccountName={username}))",
        username_attribute="sAMAccountName",
        group_membership="memberOf",
        group_search_base=f"ou=roles,{slapd.suffix}",
    )
    identity = await provider.lookup("aanders")
    assert identity.username == "aanders"
    assert (identity.uid, identity.name) == (10001, "Alice Andersson")
    assert identity.groups == {"course-cs101"}
    with pytest.raises(UnknownUser):
        await provider.lookup("alice")  # uid is not the login name here


async def test_ldap_unknown_and_system_users(make_ldap):
    provider = make_ldap()
    with pytest.raises(UnknownUser):
        await provider.lookup("mallory")
    with pytest.raises(InvalidIdentity, match="uid 500"):
        await provider.lookup("sysacct")


async def test_ldap_filter_escaping_without_username_validation(make_ldap):
    # Even if a deployer loosens username_pattern, the filter stays literal.
    provider = make_ldap(username_pattern=r"^.{1,64}$")
    for hostile in ["*", "*)(uid=*", "alice)(|(uid=*"]:
        with pytest.raises(UnknownUser):
            await provider.lookup(hostile)


async def test_ldap_wrong_service_password_is_unavailable(make_ldap):
    provider = make_ldap(bind_password="wrong")
    with pytest.raises(IdentityUnavailable, match="bind_dn"):
        await provider.lookup("alice")


async def test_ldap_fails_over_to_next_server(make_ldap, slapd, closed_port):
    provider = make_ldap(server_urls=[f"ldap://127.0.0.1:{closed_port}", slapd.url])
    assert (await provider.lookup("bob")).uid == 10002


async def test_ldap_down_is_unavailable_quickly(make_ldap, closed_port):
    provider = make_ldap(server_urls=[f"ldap://127.0.0.1:{closed_port}"])
    started = time.monotonic()
    with pytest.raises(IdentityUnavailable, match="Could not look up alice"):
        await provider.lookup("alice")
    assert time.monotonic() - started < 2.0


async def test_ldap_down_serves_stale_cache(make_ldap, closed_port, caplog):
    provider = make_ldap(cache_ttl=0)  # every lookup goes to the directory
    first = await provider.lookup("alice")
    provider.server_urls = [f"ldap://127.0.0.1:{closed_port}"]
    assert await provider.lookup("alice") == first
    assert "outcome=stale-cache" in caplog.text
    provider.stale_ttl = 0
    with pytest.raises(IdentityUnavailable):
        await provider.lookup("alice")


async def test_ldap_hung_server_times_out_without_blocking_loop(
    make_ldap, silent_server
):
    provider = make_ldap(
        server_urls=[silent_server], lookup_timeout=1.5, receive_timeout=3.0
    )
    ticks: list[float] = []

    async def ticker():
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    try:
        with pytest.raises(IdentityUnavailable, match="timed out"):
            await provider.lookup("alice")
    finally:
        task.cancel()
    elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 2.5
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) > 30
    assert max(gaps) < 0.25, f"event loop stalled for {max(gaps):.2f} s"


def test_ldap_config_is_validated():
    with pytest.raises(TraitError, match="ldap:// or ldaps://"):
        LDAPIdentity(server_urls=["ldap.example.org"])
    with pytest.raises(TraitError, match="must contain"):
        LDAPIdentity(user_search_filter="(uid=alice)")
    with pytest.raises(TraitError, match="placeholder"):
        LDAPIdentity(user_search_filter="(uid={user})")
