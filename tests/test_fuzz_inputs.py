"""Property-based tests over what users type: forms, profile names,
``user_options`` and usernames. No input may crash, hang or escape: every
refusal is an HTTP 400/403/503 whose message names the field, or the
documented exception of a pure check.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado import web

from aaltohub.identity.base import DEFAULT_USERNAME_PATTERN, username_ok
from aaltohub.profiles import PROFILE_NAME, declared_options, options_problem
from aaltohub.storage.homes import check_username
from aaltohub.storage.paths import StoragePaths, UnsafePath
from kube_helpers import base_config, make_spawner

FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=80
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4)
    ),
    max_leaves=20,
)


@FAST
@given(st.dictionaries(TEXT, JSON, max_size=6), st.integers(1, 10_000))
def test_options_problem_never_raises_and_respects_the_limit(options, limit):
    problem = options_problem(options, declared_options(None), limit)
    size = len(json.dumps(options))
    if problem is None:
        assert size <= limit and set(options) <= {"profile"}
    else:
        assert "option" in problem  # names what is wrong: options, sizes, keys


@FAST
@given(TEXT)
def test_usernames_are_full_matches_and_never_paths(name):
    ok = username_ok(name, DEFAULT_USERNAME_PATTERN)
    if ok:
        assert "/" not in name and ".." not in name and "\n" not in name
        assert StoragePaths().home(name, 1001234).endswith("/" + name)
    try:
        check_username(name, DEFAULT_USERNAME_PATTERN)
    except ValueError as e:
        assert not ok
        assert "username" in str(e)
    else:
        assert ok


@FAST
@given(TEXT, st.integers(0, 2**32))
def test_home_paths_never_leave_the_volume(name, uid):
    try:
        path = StoragePaths().home(name, uid)
    except UnsafePath as e:
        assert "c.StoragePaths.home_sub_path" in str(e)
    else:
        assert not path.startswith("/") and ".." not in path.split("/")


@pytest.fixture(scope="module")
def spawner_config(tmp_path_factory):
    from conftest import USERS, write_catalog

    tmp = tmp_path_factory.mktemp("fuzz")
    users = tmp / "users.yaml"
    users.write_text(USERS)
    return base_config(write_catalog(tmp / "courses"), users)


def _form_outcome(config, formdata):
    async def run():
        spawner = make_spawner(config, "student2")
        options = spawner.options_from_form(formdata)
        spawner.user_options = options
        await spawner.authorize(await spawner.effective_profile(options.get("profile")))
        return options

    return asyncio.run(run())


@settings(FAST, max_examples=60)
@given(
    st.dictionaries(
        st.sampled_from(["profile", "_xsrf", "profile-option-x--y"]) | TEXT,
        st.lists(TEXT, min_size=1, max_size=3),
        max_size=4,
    )
)
def test_any_posted_form_is_a_clear_answer(spawner_config, formdata):
    try:
        options = _form_outcome(spawner_config, formdata)
    except web.HTTPError as e:
        assert e.status_code in (400, 403, 503)
        assert e.jupyterhub_message  # shown to the user as written
    else:
        profile = options.get("profile")
        assert profile is None or PROFILE_NAME.fullmatch(profile)
