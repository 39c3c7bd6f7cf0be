"""The private JupyterHub names in aaltohub.jupyterhub_api still exist in
the installed JupyterHub (run in .tox/py and in the hub image's pins)."""

from __future__ import annotations

import inspect

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


def test_what_the_hub_passes_to_spawners_is_what_the_wrapper_passes_on():
    source = inspect.getsource(jupyterhub_user.User._new_spawner)
    for name in jupyterhub_api.PASSED_TO_SPAWNERS:
        # a keyword of the dict, or set as spawn_kwargs["name"]
        assert f"{name}=" in source or f'spawn_kwargs["{name}"]' in source, name
        assert name in LocalProcessSpawner.class_trait_names(), name


def test_helpers_read_them():
    class Handler:
        pass

    handler = Handler()
    assert jupyterhub_api.request_user(handler) is None
    setattr(handler, jupyterhub_api.REQUEST_USER, "alice")
    assert jupyterhub_api.request_user(handler) == "alice"
    assert jupyterhub_api.waiting_for_response(object()) is False
