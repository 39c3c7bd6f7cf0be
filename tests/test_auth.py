"""Logins through JupyterHub's real get_authenticated_user path."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from jupyterhub.auth import Authenticator, DummyAuthenticator
from tornado import web
from traitlets.config import Config

from aaltohub.auth import IdentityAuthenticatorMixin, LDAPIdentityAuthenticator
from aaltohub.identity import LDAPIdentity, NSSIdentity, StaticIdentity

pytest_plugins = ["ldap_server"]


@pytest.fixture(autouse=True)
def _capture_info(caplog):
    caplog.set_level(logging.INFO)


@pytest.fixture
def closed_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield f"ldap://127.0.0.1:{s.getsockname()[1]}"
    s.close()


@pytest.fixture
def ldap_config(slapd):
    c = Config()
    c.LDAPIdentity.server_urls = [slapd.url]
    c.LDAPIdentity.bind_dn = slapd.service_dn
    c.LDAPIdentity.bind_password = slapd.service_password
    c.LDAPIdentity.user_search_base = f"ou=people,{slapd.suffix}"
    c.LDAPIdentity.group_membership = "memberOf"
    c.LDAPIdentity.lookup_timeout = 2.0
    c.LDAPIdentity.connect_timeout = 1.0
    c.LDAPIdentity.receive_timeout = 2.0
    c.LDAPIdentityAuthenticator.allow_all = True
    return c


@pytest.fixture
def ldap_auth(ldap_config):
    return LDAPIdentityAuthenticator(config=ldap_config)


async def login(authenticator, username, password, handler=None):
    return await authenticator.get_authenticated_user(
        handler, {"username": username, "password": password}
    )


# --- LDAPIdentityAuthenticator ------------------------------------------------------
async def test_ldap_login_attaches_identity(ldap_auth, slapd):
    model = await login(ldap_auth, "alice", "alice-pw")
    assert model["name"] == "alice"
    identity = model["auth_state"]["identity"]
    assert (identity["uid"], identity["gid"]) == (10001, 10001)
    assert identity["groups"] == ["course-cs101"]
    assert identity["email"] == "alice@example.org"
    assert model["auth_state"]["ldap_dn"] == f"uid=alice,ou=people,{slapd.suffix}"
    assert abs(model["auth_state"]["identity_updated"] - time.time()) < 60


def test_ldap_auth_shares_the_ldap_identity_settings(ldap_auth, slapd):
    # c.LDAPIdentity.* configured once serves both login and identity.
    assert isinstance(ldap_auth.identity_provider, LDAPIdentity)
    assert ldap_auth.ldap_identity is ldap_auth.identity_provider
    assert ldap_auth.ldap_identity.server_urls == [slapd.url]


@pytest.mark.parametrize(
    ("username", "password", "reason"),
    [
        ("alice", "wrong", "wrong-password"),
        ("alice", "", "empty-password"),
        ("mallory", "whatever", "unknown-user"),
        ("*)(uid=*", "alice-pw", "invalid-username"),
        ("admin)(|(uid=*", "alice-pw", "invalid-username"),
        ("*", "alice-pw", "invalid-username"),
        ("alice,ou=people", "alice-pw", "invalid-username"),
        ("sysacct", "sys-pw", "invalid-identity"),  # uid 500 < min_uid
    ],
)
async def test_ldap_login_refused(ldap_auth, caplog, username, password, reason):
    assert await login(ldap_auth, username, password) is None
    assert f"outcome=refused reason={reason}" in caplog.text


async def test_ldap_username_is_normalised(ldap_auth):
    model = await login(ldap_auth, "  ALICE \t", "alice-pw")
    assert model["name"] == "alice"
    assert model["auth_state"]["identity"]["username"] == "alice"


async def test_ldap_escapes_even_with_loose_username_pattern(ldap_config, caplog):
    # Escaping is a second line of defence behind username validation.
    ldap_config.LDAPIdentity.username_pattern = r"^.{1,64}$"
    auth = LDAPIdentityAuthenticator(config=ldap_config)
    for hostile in ["*", "*)(uid=*", "a*"]:
        assert await login(auth, hostile, "alice-pw") is None
    assert caplog.text.count("reason=unknown-user") == 3


async def test_ldap_empty_password_never_reaches_ldap(ldap_config, closed_url, caplog):
    ldap_config.LDAPIdentity.server_urls = [closed_url]
    auth = LDAPIdentityAuthenticator(config=ldap_config)
    assert await login(auth, "alice", "") is None
    assert "reason=empty-password" in caplog.text
    assert "ldap-unavailable" not in caplog.text


async def test_ldap_down_fails_login_quickly(ldap_config, closed_url, caplog):
    ldap_config.LDAPIdentity.server_urls = [closed_url]
    auth = LDAPIdentityAuthenticator(config=ldap_config)
    started = time.monotonic()
    assert await login(auth, "alice", "alice-pw") is None
    assert time.monotonic() - started < 2.0
    assert "user='alice' outcome=refused reason=ldap-unavailable" in caplog.text


async def test_ldap_down_shows_message_on_login_page(ldap_config, closed_url):
    ldap_config.LDAPIdentity.server_urls = [closed_url]
    auth = LDAPIdentityAuthenticator(config=ldap_config)
    with pytest.raises(web.HTTPError) as err:
        await login(auth, "alice", "alice-pw", handler=object())
    assert err.value.status_code == 403
    assert "could not be reached" in err.value.get_message()


async def test_wrong_password_message_stays_generic(ldap_auth):
    # No hint whether the account exists: JupyterHub shows its usual
    # "Invalid username or password".
    assert await login(ldap_auth, "alice", "nope", handler=object()) is None
    assert await login(ldap_auth, "mallory", "nope", handler=object()) is None


async def test_ldap_bind_dn_template(ldap_config, slapd, caplog):
    ldap_config.LDAPIdentityAuthenticator.bind_dn_template = [
        f"uid={{username}},ou=nowhere,{slapd.suffix}",
        f"uid={{username}},ou=people,{slapd.suffix}",
    ]
    auth = LDAPIdentityAuthenticator(config=ldap_config)
    model = await login(auth, "bob", "bob-pw")
    assert model["auth_state"]["ldap_dn"] == f"uid=bob,ou=people,{slapd.suffix}"
    assert model["auth_state"]["identity"]["uid"] == 10002
    assert await login(auth, "bob", "alice-pw") is None
    assert "reason=wrong-password" in caplog.text


async def test_ldap_auth_with_nss_identity_uses_ldap_identity_settings(
    ldap_config, slapd
):
    ldap_config.LDAPIdentityAuthenticator.identity_class = NSSIdentity
    auth = LDAPIdentityAuthenticator(config=ldap_config)
    assert isinstance(auth.identity_provider, NSSIdentity)
    assert auth.ldap_identity.server_urls == [slapd.url]
    # The password is right, but NSS on this host has no user "alice".
    assert await login(auth, "alice", "alice-pw") is None


# --- the mixin on other authenticators ------------------------------------------------
class StaticDummy(IdentityAuthenticatorMixin, DummyAuthenticator):
    pass


class TokenAuthenticator(IdentityAuthenticatorMixin, Authenticator):
    """Stands in for an OAuthenticator that returns its own auth_state."""

    async def authenticate(self, handler, data):
        return {"name": data["username"], "auth_state": {"access_token": "tok"}}


USERS = """\
users:
  alice: {uid: 1001, gid: 1001, name: Alice, groups: [students]}
"""


@pytest.fixture
def static_config(tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text(USERS)
    c = Config()
    c.Authenticator.identity_class = "aaltohub.identity.StaticIdentity"
    c.Authenticator.allow_all = True
    c.StaticIdentity.path = str(path)
    return c


def test_mixin_defaults_to_nss():
    assert isinstance(StaticDummy().identity_provider, NSSIdentity)


async def test_mixin_attaches_identity(static_config):
    auth = StaticDummy(config=static_config)
    assert isinstance(auth.identity_provider, StaticIdentity)
    model = await login(auth, "alice", "any")
    assert model["auth_state"]["identity"]["uid"] == 1001
    assert model["auth_state"]["identity"]["groups"] == ["students"]


async def test_mixin_keeps_authenticator_auth_state(static_config):
    model = await login(TokenAuthenticator(config=static_config), "alice", "")
    assert model["auth_state"]["access_token"] == "tok"
    assert model["auth_state"]["identity"]["name"] == "Alice"


async def test_mixin_refuses_unknown_user(static_config, caplog):
    auth = StaticDummy(config=static_config)
    assert await login(auth, "mallory", "any") is None
    assert "user='mallory' outcome=refused reason=unknown-user" in caplog.text
    with pytest.raises(web.HTTPError) as err:
        await login(auth, "mallory", "any", handler=object())
    assert "was not found" in err.value.get_message()


async def test_mixin_invalid_name_is_a_failed_login_not_a_500(static_config):
    # DummyAuthenticator accepts any name; the identity rules still apply.
    assert await login(StaticDummy(config=static_config), "a.b-!", "x") is None


async def test_mixin_provider_crash_is_a_failed_login(static_config, caplog):
    class Broken(StaticIdentity):
        def lookup_sync(self, username):
            raise RuntimeError("bug in a provider")

    static_config.Authenticator.identity_class = Broken
    assert await login(StaticDummy(config=static_config), "alice", "x") is None
    assert "reason=internal-error" in caplog.text


async def test_post_auth_hook_sees_identity(static_config):
    seen = {}

    def hook(authenticator, handler, model):
        seen.update(model["auth_state"]["identity"])
        return model

    static_config.Authenticator.post_auth_hook = hook
    await login(StaticDummy(config=static_config), "alice", "x")
    assert seen["uid"] == 1001


# --- refresh_user ---------------------------------------------------------------------
class FakeUser:
    def __init__(self, name, auth_state):
        self.name = name
        self.auth_state = auth_state

    async def get_auth_state(self):
        return self.auth_state


async def test_refresh_keeps_fresh_identity_and_updates_old_one(
    static_config, tmp_path
):
    static_config.Authenticator.enable_auth_state = True
    auth = StaticDummy(config=static_config)
    model = await login(auth, "alice", "x")
    user = FakeUser("alice", model["auth_state"])
    assert await auth.refresh_user(user) is True

    # The directory changed and the stored identity is older than cache_ttl.
    (tmp_path / "users.yaml").write_text(USERS.replace("uid: 1001", "uid: 1002"))
    user.auth_state["identity_updated"] -= auth.identity_provider.cache_ttl + 1
    auth.identity_provider.cache_ttl = 0
    refreshed = await auth.refresh_user(user)
    assert refreshed["auth_state"]["identity"]["uid"] == 1002
    assert time.time() - refreshed["auth_state"]["identity_updated"] < 60


async def test_refresh_logs_out_removed_user_but_survives_outage(
    static_config, tmp_path, caplog
):
    static_config.Authenticator.enable_auth_state = True
    static_config.StaticIdentity.cache_ttl = 0
    auth = StaticDummy(config=static_config)
    model = await login(auth, "alice", "x")
    old = dict(model["auth_state"], identity_updated=0)

    # Directory unreachable (file gone) and the cache expired: keep the user.
    auth.identity_provider.stale_ttl = 0
    (tmp_path / "users.yaml").rename(tmp_path / "moved.yaml")
    assert await auth.refresh_user(FakeUser("alice", dict(old))) is True
    assert "outcome=stale action=refresh" in caplog.text

    # Directory reachable and alice is gone: she must log in again.
    (tmp_path / "moved.yaml").write_text("users: {}\n")
    (tmp_path / "moved.yaml").rename(tmp_path / "users.yaml")
    assert await auth.refresh_user(FakeUser("alice", dict(old))) is False
    assert "reason=unknown-user action=refresh" in caplog.text


async def test_refresh_without_auth_state(static_config):
    auth = StaticDummy(config=static_config)  # enable_auth_state is False
    assert await auth.refresh_user(FakeUser("alice", None)) is True
    assert await auth.refresh_user(FakeUser("mallory", None)) is False


async def test_ldap_calls_are_measured_and_logins_audited(ldap_auth):
    from aaltohub import metrics
    from aaltohub.audit import audit_log

    calls = metrics.LDAP_CALL_SECONDS.labels(operation="check_password", outcome="ok")
    before = calls._sum.get(), count_of(calls)
    assert await login(ldap_auth, "alice", "not-alices-pw") is None
    assert (await login(ldap_auth, "alice", "alice-pw"))["name"] == "alice"
    # Both calls got an answer from the directory: two ok calls, timed.
    assert count_of(calls) == before[1] + 2
    assert calls._sum.get() > before[0]
    failed, ok = audit_log(ldap_auth.config).recent(action="login", actor="alice")[-2:]
    assert (failed["outcome"], failed["reason"]) == ("failed", "bad credentials")
    assert ok["outcome"] == "ok"
    assert "not-alices-pw" not in str(failed)


def count_of(histogram) -> float:
    return sum(b.get() for b in histogram._buckets)
