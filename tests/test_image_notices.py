"""The notebook image's terminal message: /etc/profile.d/aaltohub-notices.sh.

Run with real bash the way /etc/profile runs it in JupyterLab's terminals
(login shells, interactive: *sourced*), in a temporary HOME, with the
environment QuotaHook gives the server. The demo's terminals source the
same file (tests/e2e/test_notices.py reads a real terminal).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = (
    Path(__file__).parents[1] / "src" / "aaltohub" / "web" / "singleuser" / "notices.sh"
)
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")

# What a sourcing shell must get back unchanged: options, no leftovers.
PROBE = f"""
set -u
before="$(set +o)"
source {SCRIPT}
status=$?
[ "$(set +o)" = "$before" ] || echo "OPTIONS CHANGED"
declare -F | grep -q aaltohub && echo "FUNCTION LEFT"
echo "status=$status"
"""


def run(tmp_path, env: dict, interactive: bool = True) -> str:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    base = {"HOME": str(home), "PATH": "/usr/bin:/bin", "TERM": "dumb"}
    args = [BASH, "--norc", "--noprofile"] + (["-i"] if interactive else [])
    done = subprocess.run(
        [*args, "-c", PROBE],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert "OPTIONS CHANGED" not in done.stdout and "FUNCTION LEFT" not in done.stdout
    assert done.stdout.rstrip().endswith("status=0")
    return done.stdout


def notice_file(tmp_path) -> Path:
    path = tmp_path / "quota-warning.txt"
    path.write_text(
        "Your home directory is 95 % full (9.5 GiB of 10.0 GiB).\n\n"
        "To free space, delete old data sets and ~/.cache.\n"
    )
    return path


def test_a_near_quota_login_shows_the_warning_the_help_and_the_commands(tmp_path):
    out = run(
        tmp_path,
        {
            "AALTOHUB_QUOTA_NOTICE": str(notice_file(tmp_path)),
            "AALTOHUB_QUOTA_PERCENT": "95",
        },
    )
    assert "*** Disk quota ***" in out
    assert "Your home directory is 95 % full (9.5 GiB of 10.0 GiB)." in out
    assert "To free space, delete old data sets and ~/.cache." in out  # site help
    assert "du -sh ~/* ~/.[!.]* 2>/dev/null | sort -h" in out
    assert "df -h ~" in out


def test_without_the_file_the_percentage_is_enough(tmp_path):
    out = run(
        tmp_path,
        {
            "AALTOHUB_QUOTA_NOTICE": str(tmp_path / "gone"),
            "AALTOHUB_QUOTA_PERCENT": "97",
        },
    )
    assert "Your home directory is 97 % full." in out


@pytest.mark.parametrize(
    "env",
    [
        {},  # under the threshold: the spawn passed nothing
        {"AALTOHUB_QUOTA_PERCENT": "$(touch pwned)"},  # never evaluated
        {"AALTOHUB_QUOTA_PERCENT": "95"} | {"AALTOHUB_QUOTA_NOTICE": ""},
    ],
)
def test_nothing_to_say_says_nothing_and_runs_nothing(tmp_path, env):
    out = run(tmp_path, env)
    if env.get("AALTOHUB_QUOTA_PERCENT") == "95":
        assert "95 % full" in out
    else:
        assert "Disk quota" not in out
    assert not list(tmp_path.rglob("pwned"))


def test_scripts_and_non_interactive_shells_get_no_extra_output(tmp_path):
    env = {"AALTOHUB_QUOTA_NOTICE": str(notice_file(tmp_path))}
    assert "Disk quota" not in run(tmp_path, env, interactive=False)
