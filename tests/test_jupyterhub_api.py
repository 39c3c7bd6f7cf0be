"""The private JupyterHub names in aaltohub.jupyterhub_api still exist in
the installed JupyterHub (run in .tox/py and in the hub image's pins)."""

from __future__ import annotations

import ast
import inspect
import textwrap

from jupyterhub import user as jupyterhub_user
from jupyterhub.handlers import base
from jupyterhub.spawner import LocalProcessSpawner, Spawner

from aaltohub import jupyterhub_api


def test_the_request_user_is_set_by_get_current_user():
    source = inspect.getsource(base.BaseHandler.get_current_user)
    assert f"self.{jupyterhub_api.REQUEST_USER} = " in source


def test_the_hub_marks_spawners_it_waits_for():
    assert getattr(Spawner, jupyterhub_api.WAITING_FOR_RESPONSE) is False
    source = inspect.getsource(jupyterhub_user.User)
    assert f"spawner.{jupyterhub_api.WAITING_FOR_RESPONSE} = True" in source


def spawner_keywords() -> set[str]:
    """Every keyword User._new_spawner gives a spawner: the keys of its
    ``spawn_kwargs = dict(...)`` and ``ssl_kwargs = dict(...)``, and each
    ``spawn_kwargs["..."] = ...``."""
    tree = ast.parse(
        textwrap.dedent(inspect.getsource(jupyterhub_user.User._new_spawner))
    )
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "dict":
            found |= {k.arg for k in node.keywords if k.arg}
        stored = isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store)
        if stored and isinstance(node.slice, ast.Constant):
            found.add(node.slice.value)
    return found


def test_what_the_hub_passes_to_spawners_is_what_the_wrapper_passes_on():
    """Both ways: a name JupyterHub stops passing, or starts passing, fails
    here. The first five are the spawner's own (the wrapper builds its
    children with them itself); user_options is linked, not copied."""
    own = {"user", "orm_spawner", "hub", "authenticator", "config", "user_options"}
    passed = spawner_keywords()
    assert own <= passed
    assert passed - own == set(jupyterhub_api.PASSED_TO_SPAWNERS)
    for name in jupyterhub_api.PASSED_TO_SPAWNERS:
        assert name in LocalProcessSpawner.class_trait_names(), name


def test_helpers_read_them():
    class Handler:
        pass

    handler = Handler()
    assert jupyterhub_api.request_user(handler) is None
    setattr(handler, jupyterhub_api.REQUEST_USER, "alice")
    assert jupyterhub_api.request_user(handler) == "alice"
    assert jupyterhub_api.waiting_for_response(object()) is False
