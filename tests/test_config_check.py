"""aaltohub check-config and the checks the hub runs at start."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import textwrap
import threading

import pytest
from traitlets.config import Config

from aaltohub import cli, config_check
from aaltohub.config_check import (
    ERROR,
    WARNING,
    ConfigProblems,
    check,
    image_reference_ok,
    raise_for_problems,
)

KEY = "a" * 64  # 32 bytes, hex: JupyterHub's crypt key format


def good_config(catalog_dir, users_file) -> Config:
    c = Config()
    c.JupyterHub.authenticator_class = "dummy"
    c.JupyterHub.spawner_class = "course"
    c.CourseSpawner.identity_class = "aaltohub.identity.StaticIdentity"
    c.StaticIdentity.path = str(users_file)
    c.CourseCatalog.path = str(catalog_dir)
    c.CourseCatalog.default_image = "DEFAULT"
    c.StoragePaths.home_sub_path = "u/{uid_last2digits}/{username}"
    return c


def keys_of(problems, severity=ERROR) -> list[str]:
    return [p.key for p in problems if p.severity == severity]


def only(problems, key):
    (found,) = [p for p in problems if p.key == key]
    return found


def test_a_good_config_has_no_problem(catalog_dir, users_file):
    assert check(good_config(catalog_dir, users_file), environ={}) == []


def test_unknown_option_names_the_key_and_the_likely_fix(catalog_dir, users_file):
    c = good_config(catalog_dir, users_file)
    c.StoragePaths.home_sub_pth = "x"
    c.CourseCatalog.reload_intervall = 3
    problems = check(c, environ={})
    assert keys_of(problems) == [
        "c.CourseCatalog.reload_intervall",
        "c.StoragePaths.home_sub_pth",
    ]
    p = only(problems, "c.StoragePaths.home_sub_pth")
    assert "did you mean c.StoragePaths.home_sub_path?" in p.fix
    assert "is ignored" in str(p)


def test_a_misspelt_section_is_reported_but_other_classes_are_not(
    catalog_dir, users_file
):
    c = good_config(catalog_dir, users_file)
    c.StoragePath.home_sub_path = "x"  # almost StoragePaths
    c.KubeSpawner.image = "quay.io/jupyter/base-notebook:2025-01-06"  # not ours
    c.SomeOtherPlugin.option = 1  # unknown, but nothing like ours
    problems = check(c, environ={})
    assert keys_of(problems) == ["c.StoragePath"]
    assert "c.StoragePaths" in problems[0].fix


def test_a_moved_option_is_still_accepted(catalog_dir, users_file):
    c = good_config(catalog_dir, users_file)
    c.HomeHook.sub_path = "homes/{username}"  # moved to StoragePaths
    assert keys_of(check(c, environ={})) == []


def test_ldap_identity_needs_servers_base_and_the_bind_password():
    c = Config()
    c.JupyterHub.authenticator_class = "aaltohub-ldap"
    c.JupyterHub.spawner_class = "course"
    c.CourseSpawner.identity_class = "aaltohub.identity.LDAPIdentity"
    c.LDAPIdentity.bind_dn = "cn=hub,ou=services,dc=example,dc=org"
    c.LDAPIdentity.bind_password = ""  # the Secret did not arrive
    problems = check(c, environ={})
    assert keys_of(problems) == [
        "c.LDAPIdentity.server_urls",
        "c.LDAPIdentity.user_search_base",
        "c.LDAPIdentity.bind_password",
    ]
    assert "secretKeyRef" in only(problems, "c.LDAPIdentity.bind_password").fix
    c.LDAPIdentity.server_urls = ["ldaps://ldap.example.org"]
    c.LDAPIdentity.user_search_base = "ou=people,dc=example,dc=org"
    c.LDAPIdentity.bind_password = "secret"
    assert keys_of(check(c, environ={})) == []


def test_an_invalid_identity_setting_is_an_error():
    c = Config()
    c.JupyterHub.authenticator_class = "aaltohub-ldap"
    c.LDAPIdentity.server_urls = ["http://ldap.example.org"]
    problems = check(c, environ={})
    assert "c.LDAPIdentity" in keys_of(problems)
    assert "must start with ldap:// or ldaps://" in str(
        only(problems, "c.LDAPIdentity")
    )


def test_static_identity_file_must_be_readable(catalog_dir, tmp_path):
    c = good_config(catalog_dir, tmp_path / "missing.yaml")
    p = only(check(c, environ={}), "c.StaticIdentity.path")
    assert "does not exist" in p.message and p.severity == ERROR


@pytest.mark.parametrize("trait_used_before", [False, True])
def test_no_identity_class_with_a_foreign_authenticator_is_a_warning(
    catalog_dir, trait_used_before
):
    if trait_used_before:
        # a spawner made earlier turns the trait's default into a class
        from aaltohub.spawn_identity import SpawnerIdentityMixin

        SpawnerIdentityMixin()
    c = Config()
    c.JupyterHub.authenticator_class = "dummy"
    c.JupyterHub.spawner_class = "course"
    c.CourseCatalog.path = str(catalog_dir)
    problems = check(c, environ={})
    assert keys_of(problems) == []
    assert keys_of(problems, WARNING) == ["c.CourseSpawner.identity_class"]


def test_authenticator_and_spawner_disagreeing_is_a_warning(catalog_dir, users_file):
    c = good_config(catalog_dir, users_file)
    c.JupyterHub.authenticator_class = "aaltohub-ldap"
    c.LDAPIdentity.server_urls = ["ldaps://ldap.example.org"]
    c.LDAPIdentity.user_search_base = "ou=people,dc=example,dc=org"
    c.Authenticator.enable_auth_state = True
    problems = check(c, environ={"JUPYTERHUB_CRYPT_KEY": KEY})
    assert keys_of(problems, WARNING) == ["c.CourseSpawner.identity_class"]
    assert "LDAPIdentity" in problems[0].message


def test_an_unloadable_class_is_named():
    c = Config()
    c.JupyterHub.spawner_class = "aaltohub.kube.NoSuchSpawner"
    assert keys_of(check(c, environ={})) == ["c.JupyterHub.spawner_class"]


def test_unreadable_catalog_path(tmp_path, users_file):
    c = good_config(tmp_path / "no-such-dir", users_file)
    problems = check(c, environ={})
    assert keys_of(problems) == [
        "c.CourseCatalog.path",
        "c.CourseCatalog.default_image",
    ]
    assert "hub.extraVolumeMounts" in problems[0].fix
    (tmp_path / "file").write_text("")
    c.CourseCatalog.path = str(tmp_path / "file")
    assert (
        "not a directory" in only(check(c, environ={}), "c.CourseCatalog.path").message
    )


def test_default_alias_missing_from_the_images_file(catalog_dir, users_file):
    (catalog_dir / "IMAGES.yaml").write_text("aliases:\n  R: example/r:1\n")
    p = only(
        check(good_config(catalog_dir, users_file), environ={}),
        "c.CourseCatalog.default_image",
    )
    assert "literal image name 'DEFAULT'" in p.message
    assert "known aliases: R" in p.message
    assert "aliases: {DEFAULT:" in p.fix


def test_default_alias_with_no_images_file(catalog_dir, users_file):
    (catalog_dir / "IMAGES.yaml").unlink()
    p = only(
        check(good_config(catalog_dir, users_file), environ={}),
        "c.CourseCatalog.default_image",
    )
    assert "known aliases: none" in p.message


def test_a_broken_images_file_is_reported(catalog_dir, users_file):
    (catalog_dir / "IMAGES.yaml").write_text("aliases: [1, 2\n")
    keys = keys_of(check(good_config(catalog_dir, users_file), environ={}))
    assert keys == ["c.CourseCatalog.images_file", "c.CourseCatalog.default_image"]


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("quay.io/jupyter/scipy-notebook:2025-01-06", True),
        ("registry.example.org:5000/team/img:v1.2-rc", True),
        ("busybox", True),
        ("example/notebook@sha256:" + "a" * 64, True),
        ("DEFAULT", False),
        ("Not An Image", False),
        ("example/notebook:", False),
        ("example//notebook", False),
        ("", False),
        ("a" * 256, False),
    ],
)
def test_image_reference_grammar(image, ok):
    assert image_reference_ok(image) is ok


def test_plain_default_image_and_spawner_images(catalog_dir, users_file):
    c = good_config(catalog_dir, users_file)
    c.CourseCatalog.default_image = "example/notebook:5.0"
    c.CourseSpawner.image = "Example/Notebook"
    c.CourseSpawner.general_profiles = [
        {"slug": "g", "kubespawner_override": {"image": "ok/image:1"}},
        {"slug": "h", "kubespawner_override": {"image": "bad image"}},
    ]
    assert keys_of(check(c, environ={})) == [
        "c.CourseSpawner.image",
        "c.CourseSpawner.general_profiles[1].kubespawner_override.image",
    ]


def test_auth_state_without_a_crypt_key(catalog_dir, users_file):
    c = good_config(catalog_dir, users_file)
    c.Authenticator.enable_auth_state = True
    p = only(check(c, environ={}), "c.CryptKeeper.keys")
    assert "hub.config.CryptKeeper.keys" in p.fix
    # either z2jh's way (config) or the environment variable satisfies it
    assert check(c, environ={"JUPYTERHUB_CRYPT_KEY": KEY}) == []
    c.CryptKeeper.keys = [KEY]
    assert check(c, environ={}) == []
    c.CryptKeeper.keys = [base64.urlsafe_b64encode(b"k" * 32).decode(), KEY]
    assert check(c, environ={}) == []  # base64 keys and rotation lists too


def test_a_crypt_key_that_is_no_key(catalog_dir, users_file):
    c = good_config(catalog_dir, users_file)
    c.CryptKeeper.keys = ["too-short"]
    assert "not a valid key" in only(check(c, environ={}), "c.CryptKeeper.keys").message


def test_identity_authenticator_without_auth_state_is_a_warning(users_file):
    c = Config()
    c.JupyterHub.authenticator_class = "aaltohub.demo.auth.DemoAuthenticator"
    c.DemoAuthenticator.identity_class = "aaltohub.identity.StaticIdentity"
    c.StaticIdentity.path = str(users_file)
    problems = check(c, environ={"JUPYTERHUB_CRYPT_KEY": KEY})
    assert keys_of(problems, WARNING) == ["c.Authenticator.enable_auth_state"]
    c.Authenticator.enable_auth_state = True
    assert check(c, environ={"JUPYTERHUB_CRYPT_KEY": KEY}) == []


def test_raise_for_problems_refuses_errors_and_logs_warnings(
    catalog_dir, users_file, caplog
):
    c = good_config(catalog_dir, users_file)
    raise_for_problems(c)  # nothing wrong: returns
    c.StoragePaths.home_sub_pth = "x"
    with pytest.raises(ConfigProblems) as info:
        raise_for_problems(c)
    assert info.value.problems[0].key == "c.StoragePaths.home_sub_pth"
    assert "c.StoragePaths.home_sub_pth is not an option" in str(info.value)
    del c.StoragePaths["home_sub_pth"]
    del c.CourseSpawner["identity_class"]
    c.JupyterHub.authenticator_class = "dummy"
    log = logging.getLogger("test-config-check")
    with caplog.at_level(logging.WARNING, logger="test-config-check"):
        raise_for_problems(c, log=log)
    assert "c.CourseSpawner.identity_class" in caplog.text


# --- the command -----------------------------------------------------------------
def write_config(path, body: str):
    path.write_text("c = get_config()\n" + textwrap.dedent(body))
    return path


def test_cli_exit_codes_and_output(tmp_path, catalog_dir, users_file, capsys):
    good = write_config(
        tmp_path / "good_config.py",
        f"""\
        c.JupyterHub.authenticator_class = "dummy"
        c.JupyterHub.spawner_class = "course"
        c.CourseSpawner.identity_class = "aaltohub.identity.StaticIdentity"
        c.StaticIdentity.path = {str(users_file)!r}
        c.CourseCatalog.path = {str(catalog_dir)!r}
        c.CourseCatalog.default_image = "DEFAULT"
        """,
    )
    assert cli.main(["check-config", str(good)]) == 0
    assert "0 error(s), 0 warning(s)" in capsys.readouterr().out
    bad = tmp_path / "bad_config.py"
    bad.write_text(good.read_text() + "c.CourseCatalog.pth = '/x'\n")
    assert cli.main(["check-config", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "error: c.CourseCatalog.pth is not an option of CourseCatalog" in out
    assert cli.main(["check-config", "--json", str(bad)]) == 1
    (problem,) = json.loads(capsys.readouterr().out)["problems"]
    assert problem["key"] == "c.CourseCatalog.pth" and problem["severity"] == ERROR


def test_cli_loads_like_the_hub_with_subconfig(tmp_path, capsys):
    # load_subconfig resolves beside the file, as under `jupyterhub -f`
    write_config(tmp_path / "extra.py", 'c.CourseCatalog.defalt_image = "x"\n')
    main = write_config(
        tmp_path / "jupyterhub_config.py", "load_subconfig('extra.py')\n"
    )
    assert cli.main(["check-config", str(main)]) == 1
    assert "c.CourseCatalog.defalt_image" in capsys.readouterr().out


def test_cli_missing_or_raising_file(tmp_path, capsys):
    assert cli.main(["check-config", str(tmp_path / "nope.py")]) == 2
    assert "no such file" in capsys.readouterr().out
    raising = write_config(tmp_path / "raising.py", "raise KeyError('LDAP_URLS')\n")
    assert cli.main(["check-config", str(raising)]) == 2
    assert "raised KeyError" in capsys.readouterr().out


def test_an_authenticator_that_cannot_be_created_is_named():
    from jupyterhub.auth import Authenticator

    class NeedsClientId(Authenticator):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            raise ValueError("client_id is required")  # as OAuth classes may

    class Broken(Authenticator):
        def __init__(self, **kwargs):
            raise RuntimeError("no network in a config check")

    for cls, words in ((NeedsClientId, "client_id"), (Broken, "RuntimeError")):
        c = Config()
        c.JupyterHub.authenticator_class = cls
        p = only(check(c, environ={}), "c.JupyterHub.authenticator_class")
        assert words in p.message


def test_the_hub_runs_the_same_checks_at_start(users_file):
    # JupyterHub calls check_allow_config() once at startup: a typo in an
    # aaltohub option stops the hub there, naming the key and the fix.
    from jupyterhub.auth import Authenticator

    from aaltohub.auth import IdentityAuthenticatorMixin
    from aaltohub.config_check import ConfigProblems

    class Login(IdentityAuthenticatorMixin, Authenticator):
        pass

    c = Config()
    c.Login.identity_class = "aaltohub.identity.StaticIdentity"
    c.StaticIdentity.path = str(users_file)
    c.Authenticator.allow_all = True
    c.Authenticator.enable_auth_state = False
    c.StoragePaths.home_subpath = "x/{username}"  # a typo: home_sub_path
    with pytest.raises(ConfigProblems, match="home_sub_path"):
        Login(config=c).check_allow_config()


def test_a_hung_check_at_hub_start_is_abandoned_with_an_error(monkeypatch, caplog):
    # A hung NFS mount makes os.path.isdir() on the catalog wait forever:
    # the hub's start must go on after the timeout, saying why.
    release = threading.Event()
    monkeypatch.setattr(
        config_check, "check", lambda config, authenticator=None: release.wait(30)
    )
    log = logging.getLogger("test-start-check")
    try:
        with caplog.at_level(logging.ERROR, logger="test-start-check"):
            config_check.raise_for_problems(Config(), log=log, timeout=0.2)
    finally:
        release.set()
    assert "did not finish in 0.2s" in caplog.text
    assert "aaltohub check-config" in caplog.text


def test_errors_found_in_the_thread_still_stop_the_hub(monkeypatch):
    problem = config_check.Problem("c.X.y", "broken", "fix it")
    monkeypatch.setattr(
        config_check, "check", lambda config, authenticator=None: [problem]
    )
    with pytest.raises(config_check.ConfigProblems, match="broken"):
        config_check.raise_for_problems(Config(), timeout=5)


async def test_the_hub_start_loads_the_catalog_in_the_background(
    users_file, catalog_dir
):
    # The first burst of spawns after a restart must not pay for loading
    # 1,000 course files: the start begins the load (in a thread).
    from jupyterhub.auth import Authenticator

    from aaltohub.auth import IdentityAuthenticatorMixin
    from aaltohub.catalog import CourseCatalog
    from aaltohub.shared import shared_instance

    class Login(IdentityAuthenticatorMixin, Authenticator):
        pass

    c = Config()
    c.Login.identity_class = "aaltohub.identity.StaticIdentity"
    c.StaticIdentity.path = str(users_file)
    c.Authenticator.allow_all = True
    c.Authenticator.enable_auth_state = False
    c.CourseCatalog.path = str(catalog_dir)
    c.CourseCatalog.default_image = "example/notebook:5.0"
    Login(config=c).check_allow_config()
    catalog = shared_instance(CourseCatalog, c)
    for _ in range(100):
        if catalog.get("intro") is not None:
            break
        await asyncio.sleep(0.05)
    assert catalog.get("intro") is not None
