"""StoragePaths: every path rule in one place, checked at hub start."""

from __future__ import annotations

import pytest
from traitlets import TraitError
from traitlets.config import Config

from aaltohub.course import build_course
from aaltohub.storage.paths import (
    StoragePaths,
    UnsafePath,
    render,
    safe_relpath,
    uid_last2digits,
)


@pytest.mark.parametrize(
    "bad",
    ["", "/etc", "a/../b", "..", "a//b", "a/./b", "a/", "x\0y", "a/" + "x" * 256],
)
def test_safe_relpath_refuses_escapes(bad):
    with pytest.raises(UnsafePath):
        safe_relpath(bad)


def test_render_refuses_user_controlled_escapes():
    assert render("course/{coursedir_slug}/files/", {"coursedir_slug": "ok"}) == (
        "course/ok/files"  # a trailing slash in a template is harmless
    )
    for value in ("..", "../../etc", "a/b/..", "/abs", "x\0", "y" * 300):
        with pytest.raises(UnsafePath):
            render("u/{name}", {"name": value})


def test_render_names_the_setting_and_the_unknown_placeholder():
    with pytest.raises(UnsafePath) as info:
        render("u/{missing}", {"username": "a"}, "c.StoragePaths.home_sub_path")
    message = str(info.value)
    assert "c.StoragePaths.home_sub_path = 'u/{missing}'" in message
    assert "{missing} is not available here; use {username}" in message


def test_uid_last2digits_is_zero_padded():
    assert [uid_last2digits(u) for u in (1001234, 1000005, 100)] == ["34", "05", "00"]


def test_default_layout():
    paths = StoragePaths()
    course = build_course("intro", {"coursedir_slug": "intro-2026"})
    assert paths.home("alice", 1001234) == "u/34/alice"
    assert paths.course_files(course) == "course/intro-2026/files"
    assert paths.course_data(course) == "course/intro-2026/data"
    assert paths.exchange(course) == "exchange/intro-2026"
    assert (paths.home_target, paths.files_target) == ("/notebooks", "/course")
    assert paths.exchange_target == "/srv/nbgrader/exchange"


@pytest.mark.parametrize(
    "setting,value,words",
    [
        ("home_sub_path", "u/{usrname}", "placeholder {usrname} is not available"),
        ("home_sub_path", "../{username}", "refusing storage path"),
        ("home_sub_path", "/abs/{username}", "refusing storage path"),
        ("home_sub_path", "u/{username!r}", "use plain placeholders"),
        ("home_sub_path", "u/{username", "not a valid template"),
        ("files_sub_path", "course/{username}/files", "{username} is not available"),
        ("exchange_target", "exchange", "must be an absolute path"),
        ("extra_mounts", [{"target": "/m", "sub_path": "x/{slug}"}], "{slug}"),
        ("extra_mounts", [{"target": "m", "sub_path": "x"}], "absolute path"),
    ],
)
def test_bad_config_is_refused_when_built_naming_the_setting(setting, value, words):
    c = Config()
    c.StoragePaths[setting] = value
    with pytest.raises(TraitError) as info:
        StoragePaths(config=c)
    assert setting in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "cls,old,new",
    [(cls, old, new) for (cls, old), new in StoragePaths.MOVED.items()],
)
def test_every_moved_option_still_works_with_a_warning(cls, old, new):
    value = (
        [{"target": "/m", "sub_path": "m"}]
        if new == "extra_mounts"
        else "/x"
        if new.endswith("target")
        else "x/{course}"
        if new != "home_sub_path"
        else "x/{username}"
    )
    c = Config()
    c[cls][old] = value
    with pytest.warns(DeprecationWarning, match=rf"c.{cls}.{old} is deprecated"):
        paths = StoragePaths(config=c)
    assert getattr(paths, new) == value


def test_the_new_name_wins_over_the_old_one():
    c = Config()
    c.HomeHook.sub_path = "old/{username}"
    c.StoragePaths.home_sub_path = "new/{username}"
    assert StoragePaths(config=c).home("a", 1001) == "new/a"


def test_a_hub_with_a_bad_template_does_not_start(users_file):
    # JupyterHub calls check_allow_config() once at startup; the aaltohub
    # authenticator builds the storage paths there, so the hub stops with
    # the setting's name instead of failing someone's spawn later.
    from jupyterhub.auth import Authenticator

    from aaltohub.auth import IdentityAuthenticatorMixin

    class Login(IdentityAuthenticatorMixin, Authenticator):
        pass

    c = Config()
    c.Login.identity_class = "aaltohub.identity.StaticIdentity"
    c.StaticIdentity.path = str(users_file)
    c.Authenticator.allow_all = True
    c.StoragePaths.home_sub_path = "homes/{user}"
    with pytest.raises(TraitError, match=r"c.StoragePaths.home_sub_path.*\{user\}"):
        Login(config=c).check_allow_config()
    c.StoragePaths.home_sub_path = "homes/{username}"
    Login(config=c.copy()).check_allow_config()  # a fixed config starts


def test_a_moved_list_option_appended_to_still_works(caplog):
    # c.CourseMountsHook.extra_mounts.append(...) stores a lazy value.
    c = Config()
    c.CourseMountsHook.extra_mounts.append({"target": "/m", "sub_path": "m"})
    with pytest.warns(DeprecationWarning):
        paths = StoragePaths(config=c)
    assert paths.extra_mounts == [{"target": "/m", "sub_path": "m"}]
    assert "c.StoragePaths.extra_mounts instead" in caplog.text  # logged too
