"""The Slurm backend: batchspawner's SlurmSpawner with the course plan.

No Slurm runs here. As in batchspawner's own tests, the batch commands are
fakes: ``sbatch``, ``squeue`` and ``scancel`` on PATH keep the submitted
script, its environment and the job's state as files (tests/wrap_helpers.py).
The submitted script is then really run by bash, with fake ``id``, ``srun``
and ``apptainer`` commands, to see what it would do on a compute node.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aaltohub import metrics
from aaltohub.audit import audit_log
from aaltohub.config_check import check
from aaltohub.servers import ServerRecord
from aaltohub.slurm import SlurmCourseSpawner
from aaltohub.slurm.script import container_command, host_path, slurm_memory
from aaltohub.storage.paths import UnsafePath
from aaltohub.wrap import BackendConfigError
from kube_helpers import base_config
from wrap_helpers import (
    catalog_with_backends,
    fake_slurm,
    pre_spawn,
    restarted,
    wrapper,
    write_tool,
)

#: Course text that a shell must never run: it reaches the job's files.
NASTY = "c.Exchange.note = '$(touch PWNED)' + \"`touch PWNED2`\" # EOF\n"


@pytest.fixture
def catalog_dir(tmp_path):
    catalog = catalog_with_backends(tmp_path / "courses", {"ml-private": "slurm"})
    path = catalog / "ml-private.yaml"
    path.write_text(
        path.read_text() + "nbgrader_config: |\n  " + NASTY.replace("\n", "\n  ")
    )
    return catalog


@pytest.fixture
def slurm_state(tmp_path, monkeypatch):
    return fake_slurm(tmp_path, monkeypatch)


@pytest.fixture
def config(tmp_path, catalog_dir, users_file, slurm_state):
    c = base_config(catalog_dir, users_file)
    c.SpawnerIdentityMixin.identity_class = "aaltohub.identity.StaticIdentity"
    c.CourseWrapSpawner.backends = {
        "kubernetes": {"spawner_class": "course"},
        "slurm": {
            "spawner_class": "course-slurm",
            "settings": {
                "storage_root": "/m/jupyter",
                "exec_prefix": "",  # the tests run as root, without sudo
                "req_partition": "interactive",
                "startup_poll_interval": 0.05,
            },
        },
    }
    return c


async def start_ml(config, user="student1"):
    spawner = wrapper(config, user)
    await pre_spawn(spawner, {"profile": "ml-private"})
    spawner.child_spawner.mock_port = 8888  # batchspawner's own test hook
    return spawner, await asyncio.wait_for(spawner.start(), 10)


def submitted(slurm_state: Path, n: int = 4242):
    script = (slurm_state / f"script-{n}.sh").read_text()
    env = json.loads((slurm_state / f"env-{n}.json").read_text())
    return script, env


# --- the plan, rendered ---------------------------------------------------------------
async def test_the_job_carries_the_plan(config, slurm_state):
    spawner, (host, port) = await start_ml(config)
    assert (host, port) == ("node7", 8888)
    child = spawner.child_spawner
    assert isinstance(child, SlurmCourseSpawner)
    plan = child._plan
    script, env = submitted(slurm_state)

    # Resources of the course's student role, and the deployer's partition.
    assert "#SBATCH --cpus-per-task=2\n" in script
    assert "#SBATCH --mem=2G\n" in script
    assert "#SBATCH --partition=interactive\n" in script
    # Runs in the user's home on the storage, as the user's uid.
    assert "#SBATCH --chdir=/m/jupyter/u/34/student1\n" in script
    assert 'if [ "$(id -u)" != "1001234" ]' in script
    # Every plan mount, at the pod's path; the image of the course.
    assert "--home=/m/jupyter/u/34/student1:/notebooks" in script
    for m in plan.mounts:
        if m.purpose != "home":
            mode = "ro" if m.read_only else "rw"
            assert f"--bind=/m/jupyter/{m.sub_path}:{m.target}:{mode}" in script
    assert "docker://example/notebook:7.0 batchspawner-singleuser" in script
    # The environment travels in the job's environment, not in the text.
    exported = script.split("#SBATCH --export=")[1].split("\n")[0].split(",")
    for name, value in plan.env.items():
        assert env[name] == value and name in exported
    assert env["NB_UID"] == "1001234" and env["HOME"] == "/notebooks"
    assert env["JUPYTERHUB_API_TOKEN"] == "token-of-student1"
    assert "PWNED" not in script  # the course's text is base64 in the script


async def test_the_script_writes_the_files_and_runs_nothing_from_data(
    config, slurm_state, tmp_path
):
    spawner, _ = await start_ml(config)
    plan = spawner.child_spawner._plan
    script, env = submitted(slurm_state)
    node = tmp_path / "node"
    node.mkdir()
    result = run_on_node(script, env, node, uid="1001234")
    assert result.returncode == 0, result.stderr
    files = node / "out" / "files"
    for rel, text in plan.files.items():
        assert (files / rel).read_text() == text  # byte for byte
    assert NASTY in (files / "jupyter" / "nbgrader_config.py").read_text()
    assert not list(node.rglob("PWNED*")) and not list(tmp_path.rglob("PWNED*"))
    argv = json.loads((node / "out" / "apptainer.json").read_text())
    assert argv[:3] == [
        "exec",
        "--contain",
        "--home=/m/jupyter/u/34/student1:/notebooks",
    ]

    wrong = run_on_node(script, env, tmp_path / "node2", uid="1001235")
    assert wrong.returncode == 1
    assert "not the user's uid 1001234" in wrong.stderr


def run_on_node(script: str, env: dict, node: Path, uid: str):
    """Run a submitted script as a compute node would, with fake id, srun
    and apptainer (which keeps its arguments and the bound files)."""
    node.mkdir(exist_ok=True)
    bin_dir = node / "bin"
    bin_dir.mkdir()
    write_tool(bin_dir, "id", "import os; print(os.environ['FAKE_UID'])\n")
    write_tool(
        bin_dir, "srun", "import os, sys; os.execvp(sys.argv[1], sys.argv[1:])\n"
    )
    write_tool(
        bin_dir,
        "apptainer",
        "import json, os, shutil, sys\n"
        "out = os.path.join(os.environ['FAKE_NODE'], 'out')\n"
        "os.makedirs(out, exist_ok=True)\n"
        "json.dump(sys.argv[1:], open(os.path.join(out, 'apptainer.json'), 'w'))\n"
        "for a in sys.argv[1:]:\n"
        "    if a.startswith('--bind=') and a.endswith(':/etc/aaltohub:ro'):\n"
        "        src = a[len('--bind='):].split(':')[0]\n"
        "        shutil.copytree(src, os.path.join(out, 'files'))\n",
    )
    env = {
        **env,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_UID": uid,
        "FAKE_NODE": str(node),
        "TMPDIR": str(node),
    }
    path = node / "job.sh"
    path.write_text(script)
    return subprocess.run(
        ["bash", str(path)],
        env=env,
        cwd=node,
        capture_output=True,
        text=True,
        timeout=30,
    )


# --- state, restart, stop -------------------------------------------------------------
async def test_a_restarted_hub_finds_the_job_and_stops_it(config, slurm_state):
    spawner, _ = await start_ml(config)
    again, state = restarted(config, spawner)
    assert state["backend"] == "slurm" and state["child_state"]["job_id"] == "4242"
    assert ServerRecord.from_state(state).course == "ml-private"
    assert isinstance(again.child_spawner, SlurmCourseSpawner)
    assert await again.poll() is None
    await again.stop()
    assert not (slurm_state / "job-4242").exists()  # scancel ran
    assert await again.poll() == 1


async def test_a_job_that_vanishes_is_seen_as_stopped(config, slurm_state):
    spawner, _ = await start_ml(config)
    (slurm_state / "job-4242").unlink()  # e.g. the time limit ended it
    before = running()
    assert await spawner.poll() == 1
    gone = audit_log(config).recent(action="server-stop", target="student1")[-1]
    assert gone["reason"] == "exited by itself" and running() == before - 1


# --- audit records and metrics (SpawnEventsMixin) -------------------------------------
def running(course="ml-private", role="student") -> float:
    return metrics.RUNNING_SERVERS.labels(course=course, role=role)._value.get()


def failures(cause: str, course="ml-private") -> float:
    return metrics.SPAWN_FAILURES.labels(course=course, cause=cause)._value.get()


async def test_a_job_start_and_stop_are_recorded_and_counted(config):
    log = audit_log(config)
    before = running()
    spawner, _ = await start_ml(config)
    started = log.recent(action="server-start", target="student1")[-1]
    assert started["course"] == "ml-private" and started["reason"] == "role student"
    assert running() == before + 1
    await spawner.stop()
    stopped = log.recent(action="server-stop", target="student1")[-1]
    assert stopped["course"] == "ml-private"
    assert running() == before


@pytest.mark.parametrize(
    ("sbatch", "cause", "words"),
    [
        (
            "import sys; sys.exit('sbatch: error: invalid partition')",
            "unschedulable",
            "sbatch refused the job: sbatch: error: invalid partition",
        ),
        ("import time; time.sleep(5)", "timeout", "did not answer"),
        # submitted, then gone from the queue before it ran
        ("print(4242)", "crash", "disappeared"),
    ],
)
async def test_a_job_that_fails_is_recorded_with_its_cause(
    config, slurm_state, sbatch, cause, words
):
    write_tool(slurm_state.parent / "fakebin", "sbatch", sbatch + "\n")
    config.CourseWrapSpawner.backends["slurm"]["settings"]["command_timeout"] = 1
    log = audit_log(config)
    before, failed = running(), failures(cause)
    spawner = wrapper(config, "student1")
    await pre_spawn(spawner, {"profile": "ml-private"})
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(spawner.start(), 10)
    record = log.recent(action="server-fail", target="student1")[-1]
    assert record["course"] == "ml-private" and record["outcome"] == "failed"
    assert record["reason"].startswith(f"{cause}: ") and words in record["reason"]
    assert failures(cause) == failed + 1 and running() == before


# --- batchspawner, made safer ---------------------------------------------------------
async def test_batch_commands_run_without_a_shell_and_time_out(config, tmp_path):
    spawner = wrapper(config, "student1")
    await pre_spawn(spawner, {"profile": "ml-private"})
    child = spawner.child_spawner
    out = await child.run_command(f"echo 'a; touch {tmp_path}/X' $(id)")
    assert out == f"a; touch {tmp_path}/X $(id)" and not (tmp_path / "X").exists()
    child.command_timeout = 0.2
    with pytest.raises(RuntimeError, match="did not answer"):
        await child.run_command("sleep 5")
    child.command_timeout = 30
    with pytest.raises(RuntimeError, match="nope"):
        await child.run_command(f"{sys.executable} -c \"import sys; sys.exit('nope')\"")


async def test_user_options_are_no_template_variables(config):
    spawner = wrapper(config, "student1")
    await pre_spawn(spawner, {"profile": "ml-private"})
    script = await spawner.child_spawner._get_batch_script(
        prologue="rm -rf ~", cmd="evil", partition="evil"
    )
    assert "rm -rf" not in script and "evil" not in script


# --- what cannot be honoured is refused at load ---------------------------------------
@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"storage_root": ""}, "cannot honour the plan's mounts"),
        ({"container_runtime": ""}, "no container_runtime"),
        ({"batch_script": "#!/bin/sh\n{{cmd}}\n"}, "without {prologue} and {cmd}"),
    ],
)
def test_a_slurm_backend_that_cannot_honour_the_plan_stops_the_hub(
    config, settings, words
):
    backend = config.CourseWrapSpawner.backends["slurm"]
    backend["settings"].update(settings)
    config.JupyterHub.spawner_class = "course-wrap"
    assert any(words in str(p) for p in check(config))
    with pytest.raises(BackendConfigError, match=r"storage_root|container|prologue"):
        wrapper(config, "student1")


def test_paths_that_would_break_out_or_break_the_bind_syntax():
    with pytest.raises(UnsafePath):
        host_path("/m/jupyter", "../../etc")
    from aaltohub.plan import SpawnPlan

    plan = SpawnPlan()
    plan.add_mount("/course", "course/a:b", True, "course-files")
    with pytest.raises(UnsafePath):
        container_command(
            plan, runtime="apptainer", storage_root="/m", files_root="/etc/x", image="i"
        )
    assert slurm_memory("2G") == "2G" and slurm_memory("512Mi") == "512M"
    assert slurm_memory(3 * 2**30) == "3072M"


def test_fake_commands_are_found_first(slurm_state):
    assert shutil.which("sbatch").startswith(str(slurm_state.parent))
