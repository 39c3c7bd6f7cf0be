"""Helpers for CourseWrapSpawner tests: a catalog whose courses name
backends, a storage tree for the local backend, fake servers and a fake
Slurm (sbatch, squeue, scancel) on PATH, and JupyterHub's spawn sequence."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import Mock

import yaml
from jupyterhub.objects import Hub
from jupyterhub.utils import maybe_future

from conftest import COURSES, write_catalog
from kube_helpers import MockUser

#: A local "single-user server": listens where JupyterHub says, answers
#: 200, and leaves its environment in env.json of its working directory.
FAKE_SERVER = """\
import http.server, json, os, urllib.parse
url = urllib.parse.urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
with open("env.json", "w") as f:
    json.dump(dict(os.environ), f)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", url.port), H).serve_forever()
"""

#: Fake Slurm commands, in the spirit of batchspawner's own tests (which
#: replace the commands with shell one-liners): they keep the submitted
#: script and environment, and job states as files under STATE.
FAKE_SBATCH = """\
import json, os, sys
d = STATE
n = len([f for f in os.listdir(d) if f.startswith("script-")]) + 4242
open(os.path.join(d, f"script-{n}.sh"), "w").write(sys.stdin.read())
json.dump(dict(os.environ), open(os.path.join(d, f"env-{n}.json"), "w"))
json.dump(sys.argv[1:], open(os.path.join(d, f"argv-{n}.json"), "w"))
open(os.path.join(d, f"job-{n}"), "w").write("RUNNING node7")
print(n)
"""
FAKE_SQUEUE = """\
import os, sys
job = sys.argv[sys.argv.index("-j") + 1]
path = os.path.join(STATE, f"job-{job}")
if not os.path.exists(path):
    sys.exit("slurm_load_jobs error: Invalid job id specified")
print(open(path).read())
"""
FAKE_SCANCEL = """\
import os, sys
path = os.path.join(STATE, f"job-{sys.argv[1]}")
if os.path.exists(path):
    os.remove(path)
"""


def write_tool(bin_dir: Path, name: str, source: str) -> Path:
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n" + source)
    path.chmod(0o755)
    return path


def fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    """sbatch, squeue and scancel first on PATH; returns their state dir."""
    bin_dir, state = tmp_path / "fakebin", tmp_path / "slurm"
    bin_dir.mkdir()
    state.mkdir()
    where = f"STATE = {str(state)!r}\n"
    write_tool(bin_dir, "sbatch", where + FAKE_SBATCH)
    write_tool(bin_dir, "squeue", where + FAKE_SQUEUE)
    write_tool(bin_dir, "scancel", where + FAKE_SCANCEL)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return state


def catalog_with_backends(path: Path, backends: dict[str, str]) -> Path:
    """The shared test catalog, with ``backend: <name>`` added to courses."""
    files = dict(COURSES)
    for slug, backend in backends.items():
        files[f"{slug}.yaml"] = textwrap.dedent(files.get(f"{slug}.yaml", ""))
        files[f"{slug}.yaml"] += f"backend: {backend}\n"
    return write_catalog(path, files)


def storage_tree(root: Path, catalog_dir: Path, users_file: Path) -> Path:
    """Homes and course directories as the demo lays them out."""
    from aaltohub.catalog import CourseCatalog
    from aaltohub.demo.state import lay_out_storage
    from aaltohub.identity.static import parse_static_users

    root.mkdir(parents=True, exist_ok=True)
    users = parse_static_users(yaml.safe_load(users_file.read_text()), "users")
    users = {k: v for k, v in users.items() if v.uid >= 1000}
    names = {"kubernetes", "local", "slurm"}
    catalog = CourseCatalog(path=str(catalog_dir), backends=names).load()
    lay_out_storage(str(root), catalog, users)
    return root


def local_settings(tmp_path: Path, storage: Path) -> dict:
    server = tmp_path / "fake_server.py"
    server.write_text(FAKE_SERVER)
    return {
        "storage_root": str(storage),
        "servers_dir": str(tmp_path / "servers"),
        "isolation": "prefix",
        "cmd": [sys.executable, str(server)],
        "start_timeout": 20,
    }


def wrapper(config, username: str, name: str = "", cls=None):
    """A CourseWrapSpawner as JupyterHub builds one."""
    from aaltohub.wrap import CourseWrapSpawner

    spawner = (cls or CourseWrapSpawner)(
        config=config,
        user=MockUser(username),
        hub=Hub(),
        orm_spawner=SimpleNamespace(name=name, server=None, user_options=None),
        _deprecated_db_session=Mock(),
        oauth_client_id=f"jupyterhub-user-{username}",
    )
    return spawner


async def pre_spawn(spawner, options: dict) -> None:
    """JupyterHub 6's User.spawn before start(): options, clear_state,
    group overrides, the pre-spawn hook."""
    spawner.user_options = options
    spawner.clear_state()
    spawner.api_token = "token-of-" + spawner.user.name  # after clear_state
    await spawner.apply_group_overrides()
    await maybe_future(spawner.run_pre_spawn_hook())


async def begin(spawner, options: dict):
    """The same, then start() as a task."""
    import asyncio

    await pre_spawn(spawner, options)
    return asyncio.ensure_future(spawner.start())


def restarted(config, spawner):
    """The same server after a hub restart: a new spawner object, given
    the state JupyterHub kept in its database (through JSON)."""
    state = json.loads(json.dumps(spawner.get_state()))
    again = wrapper(config, spawner.user.name, spawner.name or "")
    again.load_state(state)
    return again, state
