"""The spawn plan as a Slurm batch job: pure functions, no batchspawner.

A pod gets the plan as Kubernetes objects; a batch job gets it as text in
its script, so every value that comes from data (a display name, a course
file's nbgrader config) must never be read by the shell as code:

- the environment travels in the job's environment (sbatch
  ``--export=NAMES``), never as text in the script;
- generated files are written from base64 (its alphabet needs no quoting);
- paths and the image are quoted with :func:`shlex.quote`, ids are numbers.

The server runs in an Apptainer (Singularity) container, which is how a
Slurm job gets the pod's view of the storage: each plan mount becomes
``--bind <storage_root>/<sub_path>:<target>[:ro]``, the home mount
``--home``, the generated files a read-only bind at ``files_root``.
"""

from __future__ import annotations

import base64
import math
import posixpath
import re
import shlex

from ..plan import SpawnPlan
from ..storage.paths import UnsafePath

#: What a generated file's relative path may look like.
_FILE_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*")
_UMASK = re.compile(r"0?[0-7]{3}")
_MEMORY = re.compile(r"(\d+)([KMGT])i?", re.IGNORECASE)
FILES_VAR = "AALTOHUB_FILES"


def host_path(storage_root: str, sub_path: str) -> str:
    """Where a plan mount's sub-path is on the compute node."""
    path = posixpath.normpath(posixpath.join(storage_root, sub_path))
    root = posixpath.normpath(storage_root)
    if posixpath.commonpath([root, path]) != root:
        raise UnsafePath(f"{sub_path!r} leaves the storage root {storage_root!r}")
    return path


def _bind_path(path: str) -> str:
    # Apptainer's bind syntax is src:dest:opts[,more]: those characters
    # cannot be part of a path.
    if not path.startswith("/") or any(c in path for c in ":,\n"):
        raise UnsafePath(f"{path!r} cannot be used as a bind path")
    return path


def container_command(
    plan: SpawnPlan,
    *,
    runtime: str,
    storage_root: str,
    files_root: str,
    image: str,
) -> str:
    """``apptainer exec ... <image>``: the prefix of the server's command."""
    argv = [runtime, "exec", "--contain"]
    home = plan.mount("home")
    if home is not None:
        source = _bind_path(host_path(storage_root, home.sub_path))
        argv.append(f"--home={source}:{_bind_path(home.target)}")
    for m in plan.mounts:
        if m is home:
            continue
        source = _bind_path(host_path(storage_root, m.sub_path))
        mode = "ro" if m.read_only else "rw"
        argv.append(f"--bind={source}:{_bind_path(m.target)}:{mode}")
    words = [shlex.quote(a) for a in argv]
    if plan.files:
        # The only unquoted word: the job's own directory of the files.
        words.append(f'--bind="${FILES_VAR}":{shlex.quote(_bind_path(files_root))}:ro')
    if plan.working_dir:
        words.append(shlex.quote(f"--pwd={_bind_path(plan.working_dir)}"))
    words.append(shlex.quote(image))
    return " ".join(words)


def setup_lines(plan: SpawnPlan, uid: int | None) -> str:
    """Shell lines before the server starts: the uid check, the umask and
    the generated files. Only numbers, fixed text and base64 in them."""
    lines = ["# aaltohub: the spawn plan (generated)"]
    if uid is not None:
        uid = int(uid)
        lines.append(
            f'if [ "$(id -u)" != "{uid}" ]; then echo "aaltohub: this job runs as'
            f" uid $(id -u), not the user's uid {uid}; check the backend's"
            ' exec_prefix" >&2; exit 1; fi'
        )
    umask = plan.env.get("NB_UMASK", "")
    if _UMASK.fullmatch(umask):
        lines.append(f"umask {umask}")
    if plan.files:
        lines.append(
            f'{FILES_VAR}="$(mktemp -d "${{TMPDIR:-/tmp}}/aaltohub-files.XXXXXX")"'
        )
        lines.append(f"trap 'rm -rf \"${FILES_VAR}\"' EXIT")
        for path in sorted(plan.files):
            if not _FILE_PATH.fullmatch(path) or ".." in path.split("/"):
                raise UnsafePath(f"generated file {path!r} is not a relative path")
            folder = posixpath.dirname(path)
            if folder:
                lines.append(f'mkdir -p "${FILES_VAR}/{folder}"')
            data = base64.b64encode(plan.files[path].encode()).decode()
            lines.append(f'printf %s {data} | base64 -d > "${FILES_VAR}/{path}"')
        lines.append(f'chmod -R a+rX,a-w "${FILES_VAR}"')
    return "\n".join(lines)


def slurm_memory(value) -> str:
    """A plan's memory (bytes, or "2G"/"512Mi") as Slurm's ``--mem``."""
    if value is None or value == "":
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{max(1, math.ceil(value / 2**20))}M"
    match = _MEMORY.fullmatch(str(value).strip())
    if not match:
        raise ValueError(f"memory {value!r} cannot be given to Slurm")
    return f"{match.group(1)}{match.group(2).upper()}"


def slurm_cpus(value) -> str:
    """A plan's CPU limit as Slurm's ``--cpus-per-task`` (whole CPUs)."""
    if value is None:
        return ""
    return str(max(1, math.ceil(float(value))))
