"""SlurmCourseSpawner: batchspawner's SlurmSpawner with the course plan.

``start()`` runs the one path (:meth:`~aaltohub.spawn.CourseSpawnMixin.
plan_spawn`: authorize, hooks, ``apply_plan``, record) and then submits
the job as SlurmSpawner does. ``apply_plan`` renders the plan into the job
(see :mod:`aaltohub.slurm.script`): the uid check, umask and generated
files go into the script's ``{prologue}``, the container with the plan's
mounts in front of ``{cmd}``, the environment into the job's environment,
CPU and memory into ``req_nprocs`` and ``req_memory``. Starts, failures
(cause ``unschedulable``: sbatch did not take the job; ``timeout``: a batch
command hung; ``crash``: the job left the queue or died at once) and stops
go to the audit log and the metrics through
:class:`~aaltohub.spawn_events.SpawnEventsMixin`.

Two changes to batchspawner's behaviour, for safety: commands (sbatch,
squeue, scancel and ``exec_prefix``) run without a shell, split with
:func:`shlex.split`, and with a timeout; and ``user_options`` are not
template variables of the script (batchspawner adds them; only the checked
``profile`` could reach it here, but nothing a user sends belongs there).
"""

from __future__ import annotations

import asyncio
import pwd
import shlex
import shutil

from batchspawner import SlurmSpawner
from traitlets import Float, Unicode, default

from ..local.profiles_form import CourseProfilesMixin
from ..spawn import user_error
from ..spawn_events import SpawnEventsMixin
from ..storage.paths import UnsafePath
from . import script


class BatchCommandError(RuntimeError):
    """A batch command (sbatch, squeue, scancel) failed or timed out.
    A RuntimeError whose first argument is its stderr, as batchspawner
    expects (it reads a failed squeue's stderr as the job's state)."""

    def __init__(self, message: str, *, timed_out=False, submitting=False):
        super().__init__(message)
        self.timed_out = timed_out
        self.submitting = submitting


def _passwd_home(name: str) -> str:
    # In a thread: sssd or LDAP behind the passwd database can hang.
    try:
        return pwd.getpwnam(name).pw_dir
    except KeyError:
        return ""


def _job_failure(error: RuntimeError) -> tuple[str, str]:
    """(cause, reason) of a failed start, for the audit and the metrics:
    a batch command that timed out, sbatch refusing the job (limits,
    partition, no such resources), or a job that vanished from the queue
    or died at once (batchspawner's RuntimeError)."""
    first = (str(error).splitlines() or [""])[0]
    if isinstance(error, BatchCommandError) and error.timed_out:
        return "timeout", first
    if isinstance(error, BatchCommandError) and error.submitting:
        return "unschedulable", f"sbatch refused the job: {first}"
    if "no jobid" in first:
        return "other", first
    return "crash", first


class SlurmCourseSpawner(SpawnEventsMixin, CourseProfilesMixin, SlurmSpawner):
    """A Slurm job per course server, with the course plan applied."""

    storage_root = Unicode(
        "",
        help="""Where the campus storage (the volume that pods mount as
        jupyter-nfs) is mounted on the compute nodes. Plan mounts are its
        sub-paths, bound at the pod's paths inside the server's container.
        Required: without it the plan's mounts cannot be honoured.""",
    ).tag(config=True)

    container_runtime = Unicode(
        "apptainer",
        help="""The container command on the compute nodes (``apptainer`` or
        ``singularity``), run as ``<runtime> exec --contain --home ...
        --bind ... <image> <server command>``.""",
    ).tag(config=True)

    image = Unicode(
        "",
        help="""Image of servers whose course names none; Apptainer's form,
        e.g. ``docker://jupyter/minimal-notebook`` or a .sif path. Course
        images (``image:`` in course files) go through image_template.""",
    ).tag(config=True)

    image_template = Unicode(
        "docker://{image}",
        help="""How a course's image name becomes Apptainer's image
        argument; ``{image}`` is the name, e.g. ``/images/{image}.sif``.""",
    ).tag(config=True)

    command_timeout = Float(
        30.0,
        help="""Seconds that sbatch, squeue or scancel may take before the
        command is killed and the attempt counts as failed.""",
    ).tag(config=True)

    @classmethod
    def backend_problems(cls, value) -> list[tuple[str, str]]:
        """What this class cannot honour with these settings, as (problem,
        fix); ``value(name)`` is a setting's effective value."""
        problems = []
        if not value("storage_root"):
            problems.append(
                (
                    "uses SlurmCourseSpawner without storage_root, so it cannot"
                    " honour the plan's mounts (home, course files, course data,"
                    " the nbgrader exchange)",
                    "set 'storage_root' in its settings: where the storage"
                    " volume is mounted on the compute nodes",
                )
            )
        if not value("container_runtime"):
            problems.append(
                (
                    "has no container_runtime, so the plan's mounts cannot be"
                    " bound at the pod's paths",
                    "set container_runtime to 'apptainer' or 'singularity'",
                )
            )
        template = value("batch_script") or ""
        if not all(f in template for f in ("prologue", "cmd")):
            problems.append(
                (
                    "has a batch_script without {prologue} and {cmd}, where the"
                    " plan's uid check, files and container go",
                    "keep {{prologue}} and {{cmd}} in the script (see"
                    " docs/backends.md)",
                )
            )
        return problems

    @default("req_homedir")
    def _homedir_default(self):
        # batchspawner asks the hub's passwd database, on the event loop
        # (sssd or LDAP can hang it), and course users need no account on
        # the hub: apply_plan sets the plan's home. After a restart the
        # record knows it.
        record = self.server_record
        if record is not None and record.backend.get("homedir"):
            return record.backend["homedir"]
        return ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._plan = None
        self._uid = None
        self._container = ""
        self._submitting = False  # sbatch runs: a failure is a job not taken

    async def start(self):
        # Recorded (audit, metrics) by SpawnEventsMixin around the whole start.
        return await self.recorded_start(self._start_job)

    async def _start_job(self):
        self._plan = None
        await self.plan_spawn()  # authorize, plan, apply_plan below
        if not self.req_homedir:  # a profile without a plan: the hub's passwd
            self.req_homedir = await asyncio.to_thread(_passwd_home, self.user.name)
        try:
            # SlurmSpawner's, past SpawnEventsMixin.start (which would
            # record this start a second time).
            return await SlurmSpawner.start(self)
        except RuntimeError as e:
            # For SpawnEventsMixin's record and aaltohub_spawn_failures.
            self.start_failure_cause, self.start_failure_reason = _job_failure(e)
            raise

    async def submit_batch_script(self):
        self._submitting = True
        try:
            return await super().submit_batch_script()
        finally:
            self._submitting = False

    async def apply_plan(self, plan, course, role) -> dict:
        identity = await self.get_identity()
        image = plan.image or ""
        image = self.image_template.format(image=image) if image else self.image
        if not image:
            raise user_error(
                500,
                "The hub is misconfigured: this environment has no image for the"
                " Slurm backend (set its 'image'). Please tell the hub operator.",
            )
        try:
            self._container = script.container_command(
                plan,
                runtime=self.container_runtime,
                storage_root=self.storage_root,
                files_root=self.files_root,
                image=image,
            )
            home = plan.mount("home")
            if home is not None:
                self.req_homedir = script.host_path(self.storage_root, home.sub_path)
            # The course's (or the spawner's) limits; else the backend's own.
            self.req_nprocs = (
                script.slurm_cpus(plan.resources.cpu_limit) or self.req_nprocs
            )
            self.req_memory = (
                script.slurm_memory(plan.resources.mem_limit) or self.req_memory
            )
            script.setup_lines(plan, identity.uid)  # refuses bad file names now
        except (UnsafePath, ValueError) as e:
            self.log.error(
                "spawn user=%s action=render outcome=failed: %s", self.user.name, e
            )
            raise user_error(
                500,
                f"Your server's job could not be prepared: {e}. Please tell the"
                " hub operator.",
            ) from e
        plan.image = image
        if plan.default_url:
            self.default_url = plan.default_url
        self._plan, self._uid = plan, identity.uid
        return {"homedir": self.req_homedir}

    # --- the job script -----------------------------------------------------------
    def get_req_subvars(self):
        subvars = super().get_req_subvars()
        # Now, not cached from the first spawn: the plan adds variables.
        keep = ",".join(self.get_env())
        extra = subvars.get("keepvars_extra")
        subvars["keepvars"] = f"{keep},{extra}" if extra else keep
        if self._plan is not None:
            setup = script.setup_lines(self._plan, self._uid)
            subvars["prologue"] = "\n".join(p for p in (setup, self.req_prologue) if p)
        return subvars

    def cmd_formatted_for_batch(self):
        command = super().cmd_formatted_for_batch()
        return f"{self._container} {command}" if self._container else command

    async def _get_batch_script(self, **subvars):
        # batchspawner adds user_options to these variables; not here.
        subvars = {**self.get_req_subvars(), "cmd": self.cmd_formatted_for_batch()}
        return await super()._get_batch_script(**subvars)

    async def run_command(self, cmd, input=None, env=None):
        """Run a batch command without a shell, with a timeout. Like
        batchspawner's: stdout on success, RuntimeError(stderr) on failure."""
        argv = shlex.split(cmd)
        # Found on the hub's PATH: the job's environment (env) has none
        # unless the deployer keeps one.
        argv[0] = await asyncio.to_thread(shutil.which, argv[0]) or argv[0]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(input.encode() if input else None),
                self.command_timeout,
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise BatchCommandError(
                f"{argv[0]} did not answer in {self.command_timeout:g} s",
                timed_out=True,
                submitting=self._submitting,
            ) from None
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip()
            self.log.error("%s exited with %s: %s", argv[0], proc.returncode, message)
            raise BatchCommandError(message, submitting=self._submitting)
        return out.decode(errors="replace").strip()

    # --- environment and progress -----------------------------------------------------
    def user_env(self, env):
        # No local account needed on the hub: the identity is the plan's.
        env["USER"] = self.user.name
        home = self._plan.mount("home") if self._plan is not None else None
        if home is not None:
            env["HOME"] = home.target
        return env

    def get_env(self):
        env = super().get_env()
        if self._plan is not None:
            env.update(self._plan.env)
        return env

    async def progress(self):
        """The plan's notices (e.g. a quota warning), then the queue's."""
        for notice in self._plan.notices if self._plan is not None else []:
            yield {"message": notice}
        async for event in super().progress():
            yield event

    def clear_state(self):
        super().clear_state()
        self._plan = None
        self._container = ""
