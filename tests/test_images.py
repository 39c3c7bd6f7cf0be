"""The notebook image's root-then-switch group hook, in its dry-run mode
(the image itself cannot be built here: there is no Docker engine)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "images" / "notebook" / "aaltohub-groups.sh"


def run(groups: str, user: str = "student1"):
    env = {
        "PATH": os.environ["PATH"],
        "NB_CREATE_GROUPS": groups,
        "NB_USER": user,
        "AALTOHUB_GROUPS_DRY_RUN": "1",
    }
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=True
    )


def test_valid_groups_become_commands_with_separate_arguments():
    out = run("jupyter-intro:70001,ta:70778").stdout.splitlines()
    assert "usermod --append --groups 70001 student1" in out
    assert "usermod --append --groups 70778 student1" in out


def test_malformed_entries_are_skipped_not_executed():
    result = run("evil;touch /tmp/pwned:123,$(id):70002,x:0,ok:70003")
    assert "skipping malformed entry 'evil;touch /tmp/pwned:123'" in result.stderr
    assert "skipping malformed entry '$(id):70002'" in result.stderr
    assert result.stdout.strip().endswith("usermod --append --groups 70003 student1")
    assert "70002" not in result.stdout


def test_bad_user_is_refused():
    result = run("ok:70003", user="root;id")
    assert result.stdout == "" and "refusing NB_USER" in result.stderr
