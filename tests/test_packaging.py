"""The public contract: entry points, documented options, the CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import aaltohub

REPO = Path(__file__).resolve().parents[1]


def test_spawner_and_authenticator_entry_points():
    spawners = {e.name: e for e in entry_points(group="jupyterhub.spawners")}
    assert spawners["course"].load() is aaltohub.CourseSpawner
    auths = {e.name: e for e in entry_points(group="jupyterhub.authenticators")}
    assert auths["aaltohub-ldap"].load() is aaltohub.LDAPIdentityAuthenticator


def test_public_names_import():
    for name in aaltohub.__all__:
        assert getattr(aaltohub, name) is not None
    with pytest.raises(AttributeError):
        aaltohub.NoSuchThing  # noqa: B018


def configurable_classes():
    sys.path.insert(0, str(REPO / "docs"))
    import generate_reference

    for spec in generate_reference.CLASSES:
        cls = generate_reference.load(spec)
        if cls is not None:
            yield cls, list(generate_reference.own_traits(cls))


def test_every_option_has_help_text():
    undocumented = [
        f"{cls.__name__}.{name}"
        for cls, traits in configurable_classes()
        for name, trait in traits
        if len((trait.help or "").split()) < 3
    ]
    assert undocumented == []


def test_reference_doc_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(REPO / "docs" / "generate_reference.py"), "--check"]
    )
    assert result.returncode == 0, "run `tox -e docs` and commit docs/reference.md"


def test_jupyterhub_help_all_documents_course_spawner():
    out = subprocess.run(
        [sys.executable, "-m", "jupyterhub", "--help-all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # JupyterHub loads every class registered under its entry points, so the
    # spawner's own options appear with their help text.
    assert re.search(r"CourseSpawner\(.*CourseSpawnMixin, .*KubeSpawner\) options", out)
    assert "--CourseSpawner.identity_class=<Type>" in out
    assert "Where uid, gid, name, email and groups come from" in out


def test_cli_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "aaltohub.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for command in ("validate", "course", "quota", "probe", "demo"):
        assert command in out
