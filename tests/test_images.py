"""The notebook image's start hooks, run the way docker-stacks' start.sh
runs them.

There is no container engine here, so the image is not built. What is real:
our hook files, bash, nss_wrapper (Debian's libnss-wrapper, the library the
image installs), python, nbgrader and git, running as an arbitrary uid that
has no passwd entry, in a bubblewrap sandbox (aaltohub.local.sandbox) whose
/etc is the host's. What is emulated: start.sh itself. ``START_SH`` below
repeats, in order, the steps of docker-stacks' start.sh (2025-01-06 image,
non-root branch) that touch the hooks: ``set -e``, the start-notebook.d
hooks sourced by run-hooks.sh's loop (the loop of that image, which does not
protect ``set -e``), the ``whoami`` check, the before-notebook.d hooks, the
unset-variable reference of ``unset_explicit_env_vars``, then the command.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aaltohub.local import sandbox

IMAGE = Path(__file__).parents[1] / "images" / "notebook"
SCRIPT = IMAGE / "aaltohub-groups.sh"
UID, GID, COURSE_GID = 1234567, 1234567, 70101
HOOKS = "/opt/aaltohub-image"  # where the sandbox sees images/notebook

# run-hooks.sh of the 2025-01-06 image, for one directory's *.sh files
RUN_HOOKS = """\
for f in {files}; do
    echo "Sourcing shell script: ${{f}}"
    source "${{f}}"
    if [ $? -ne 0 ]; then echo "${{f}} has failed, continuing execution"; fi
done
"""
START_SH = """\
set -e
options_before="$(set +o)"
{start_hooks}
if ! whoami &>/dev/null; then echo "start.sh: no passwd entry for $(id -u)"; fi
{before_hooks}
# unset_explicit_env_vars: exits here if a hook left `set -u` on
if [ -n "${{JUPYTER_ENV_VARS_TO_UNSET}}" ]; then echo never; fi
[ "$(set +o)" = "$options_before" ] || {{ echo "OPTIONS CHANGED"; exit 3; }}
echo "whoami=$(whoami)"
echo "getuser=$(python -c 'import getpass; print(getpass.getuser())')"
echo "pw_dir=$(python -c 'import os, pwd; print(pwd.getpwuid(os.getuid()).pw_dir)')"
echo "groups=$(id -Gn)"
echo "nbgrader=$(nbgrader --version 2>&1 | tail -1)"
echo "email=$(git config user.email)"
echo written > "$HOME/.written" && echo "home=$HOME"
"""


def hook_layout() -> dict[str, list[str]]:
    """start.sh's hook directories and what the Dockerfile copies into each."""
    text = (IMAGE / "Dockerfile").read_text()
    layout: dict[str, list[str]] = {}
    # the image builds from the repository root: sources are repo paths
    for src, dest in re.findall(r"^COPY (?:--\S+ )*(\S+\.sh) (\S+)$", text, re.M):
        directory = os.path.basename(os.path.dirname(dest))
        if directory in ("start-notebook.d", "before-notebook.d"):
            assert src.startswith("images/notebook/"), src
            layout.setdefault(directory, []).append(os.path.basename(src))
    return layout


def start_script() -> str:
    layout = hook_layout()

    def hooks(directory):
        files = " ".join(f"{HOOKS}/{name}" for name in layout.get(directory, []))
        return RUN_HOOKS.format(files=files) if files else ""

    return START_SH.format(
        start_hooks=hooks("start-notebook.d"), before_hooks=hooks("before-notebook.d")
    )


def nss_wrapper() -> str:
    found = glob.glob("/usr/lib/*-linux-gnu/libnss_wrapper.so")
    return found[0] if found else ""


needs_sandbox = pytest.mark.skipif(
    bool(sandbox.sandbox_problem() or not nss_wrapper()),
    reason=sandbox.sandbox_problem()
    or "libnss_wrapper.so not found: apt-get install libnss-wrapper",
)


def system_steps(home: Path, files: Path) -> list[dict]:
    """The image's filesystem, approximated from the host: system and
    Python directories read-only, the host's /etc (no entry for UID), a
    private /tmp, the home mount and /etc/aaltohub as the pod has them."""
    steps: list[dict] = []
    for top in ("/bin", "/sbin", "/lib", "/lib64"):
        if os.path.islink(top):
            steps.append({"kind": "symlink", "path": top, "to": os.readlink(top)})
        elif os.path.isdir(top):
            steps.append({"kind": "bind", "source": top, "path": top, "ro": True})
    steps.append({"kind": "dir", "path": "/tmp", "mode": 0o1777})
    python = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}
    for path in ["/usr", *sorted(python)]:
        steps.append({"kind": "bind", "source": path, "path": path, "ro": True})
    # /etc: the host's entries as symlinks (as the sandbox module builds
    # it), so that /etc/aaltohub can be mounted as in the pod
    steps.append({"kind": "bind", "source": "/etc", "path": "/.host/etc", "ro": True})
    for entry in sorted(os.listdir("/etc")):
        if entry != "aaltohub":
            to = f"/.host/etc/{entry}"
            steps.append({"kind": "symlink", "path": f"/etc/{entry}", "to": to})
    steps += [
        {"kind": "dev", "path": "/dev"},
        {"kind": "proc", "path": "/proc"},
        {"kind": "bind", "source": str(IMAGE), "path": HOOKS, "ro": True},
        {"kind": "bind", "source": str(home), "path": "/notebooks", "ro": False},
        {"kind": "bind", "source": str(files), "path": "/etc/aaltohub", "ro": True},
    ]
    return steps


def run_start(tmp_path: Path, env: dict[str, str], uid: int = UID):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    os.chown(home, uid, GID)
    files = tmp_path / "files"
    files.mkdir()
    (files / "gitconfig").write_text(
        '[user]\n\tname = "Student One"\n\temail = "student1@example.org"\n'
    )
    spec = {
        "steps": system_steps(home, files),
        "uid": uid,
        "gid": GID,
        "groups": [COURSE_GID],
        "cwd": "/notebooks",
    }
    # No USER or LOGNAME: getpass.getuser() must find the passwd entry.
    base = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/home/jovyan",  # the image's HOME, not writable by UID
        "GIT_CONFIG_SYSTEM": "/etc/aaltohub/gitconfig",
        "NB_USER": "student1",
        "NB_UID": str(uid),
        "NB_GID": str(GID),
        "AALTOHUB_HOME": "/notebooks",
    }
    command = sandbox.command(spec, ["bash", "-c", start_script()])
    return subprocess.run(
        command, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def facts(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def test_dockerfile_installs_both_hooks_where_start_sh_sources_them():
    assert hook_layout() == {
        "start-notebook.d": ["aaltohub-user.sh"],
        "before-notebook.d": ["aaltohub-groups.sh"],
    }


@needs_sandbox
def test_arbitrary_uid_gets_a_user_and_a_writable_home(tmp_path):
    done = run_start(tmp_path, {})
    assert done.returncode == 0, done.stdout + done.stderr
    out = facts(done.stdout)
    assert out["whoami"] == out["getuser"] == "student1"
    assert out["pw_dir"] == out["home"] == "/notebooks"
    assert re.fullmatch(r"nbgrader version 0\.9\.\d+", out["nbgrader"].strip())
    assert out["email"] == "student1@example.org"
    assert (tmp_path / "home" / ".written").read_text() == "written\n"
    assert (tmp_path / "home" / ".written").stat().st_uid == UID
    assert "has failed" not in done.stdout


@needs_sandbox
def test_groups_get_names_from_the_hub(tmp_path):
    done = run_start(
        tmp_path, {"NB_GROUP": "students", "NB_CREATE_GROUPS": f"cs101:{COURSE_GID}"}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert facts(done.stdout)["groups"].split() == ["students", "cs101"]


@needs_sandbox
def test_no_writable_home_falls_back_with_a_warning(tmp_path):
    done = run_start(tmp_path, {"AALTOHUB_HOME": "/nonexistent"})
    assert done.returncode == 0, done.stdout + done.stderr
    out = facts(done.stdout)
    assert out["home"].startswith("/tmp/aaltohub-home-")
    assert out["whoami"] == "student1"
    assert "using /tmp/aaltohub-home-" in done.stderr


def source_as_start_sh(
    script: Path, env: dict[str, str]
) -> subprocess.CompletedProcess:
    """Source one hook in a `set -e` bash as start.sh does, then touch an
    unset variable as start.sh does next; report the options."""
    program = (
        'set -e\nbefore="$(set +o)"\n'
        f"source {shlex.quote(str(script))}\n"
        'echo "rc=$?"\n'
        'if [ -n "${JUPYTER_ENV_VARS_TO_UNSET}" ]; then :; fi\n'
        '[ "$(set +o)" = "$before" ] && echo options=same\n'
        'echo "preload=${LD_PRELOAD:-}"\n'
    )
    return subprocess.run(
        ["bash", "-c", program],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("hook", ["aaltohub-user.sh", "aaltohub-groups.sh"])
@pytest.mark.parametrize(
    "env",
    [
        {},
        {"NB_CREATE_GROUPS": "evil;id:1,ok:70003", "NB_USER": "root;id"},
        {"NB_CREATE_GROUPS": "ok:70003", "NB_USER": "student1"},
    ],
)
def test_sourced_hook_never_changes_or_ends_the_start_shell(hook, env):
    # as root here, like start.sh in root-then-switch mode; the groups hook
    # in dry-run so nothing on this machine changes
    done = source_as_start_sh(IMAGE / hook, {**env, "AALTOHUB_GROUPS_DRY_RUN": "1"})
    assert done.returncode == 0, done.stderr
    assert "rc=0" in done.stdout and "options=same" in done.stdout
    assert "preload=\n" in done.stdout  # root: the user hook does nothing


def test_root_then_switch_hook_adds_groups_as_root_would(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    done = source_as_start_sh(
        SCRIPT,
        {
            "NB_CREATE_GROUPS": "jupyter-intro:70001,ta:70778",
            "NB_USER": "student1",
            "AALTOHUB_GROUPS_DRY_RUN": "1",
        },
    )
    assert "usermod --append --groups 70001 student1" in done.stdout
    assert "usermod --append --groups 70778 student1" in done.stdout


# --- the group hook's validation (dry run, executed) --------------------------------
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


def _docker_ignored(root: Path) -> list[str]:
    lines = (root / ".dockerignore").read_text().splitlines()
    return [x.strip().rstrip("/") for x in lines if x.strip() and not x.startswith("#")]


def test_build_context_sends_what_the_images_copy_and_no_local_environments():
    """Both images build from the repository root: .dockerignore must keep
    .tox, .venv, node_modules and .git out of the context (gigabytes on a
    working copy, and baked into the hub image's COPY . layer), and must not
    exclude anything a Dockerfile copies."""
    import fnmatch

    root = Path(__file__).resolve().parent.parent
    ignored = _docker_ignored(root)
    for name in (".tox", ".venv", "node_modules", ".git"):
        assert name in ignored, name
    for dockerfile in root.glob("images/*/Dockerfile"):
        for line in dockerfile.read_text().splitlines():
            m = re.match(r"COPY\s+(?:--\S+\s+)*(\S+)\s+\S+", line)
            if not m or m.group(1) == ".":
                continue
            source = m.group(1)
            assert (root / source).exists(), f"{dockerfile}: {source}"
            parts = Path(source).parts
            prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            for pattern in ignored:
                hits = [p for p in prefixes if fnmatch.fnmatch(p, pattern)]
                assert not hits, f"{dockerfile}: {source} excluded by {pattern}"
