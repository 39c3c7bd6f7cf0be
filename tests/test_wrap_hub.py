"""CourseWrapSpawner inside a real JupyterHub, behind the real proxy, with
a Kubernetes backend and a Slurm backend, through a hub restart.

The Kubernetes API is absent (a dummy kubeconfig, as in test_kube_hub.py):
Kubernetes courses are only offered and refused here; tests/test_wrap.py
starts pods against kmock. Slurm is faked as in tests/test_slurm.py, but
this fake ``sbatch`` also runs the job: the submitted script, through fake
``srun``/``apptainer``/``id``, runs the real ``batchspawner-singleuser``,
which reports its port to the hub's API, then a tiny HTTP server in place
of jupyterhub-singleuser. The hub, the proxy, wrapspawner, batchspawner and
the database state across the restart are all real.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from hub_process import (
    DUMMY_LOGIN,
    NEEDS_PROXY,
    login,
    run_hub,
    start_process,
    stop_process,
    wait_healthy,
    xsrf,
)
from kube_helpers import use_dummy_kubeconfig
from test_kube_hub import offered
from wrap_helpers import (
    FAKE_SCANCEL,
    FAKE_SERVER,
    FAKE_SQUEUE,
    catalog_with_backends,
    write_tool,
)

pytestmark = NEEDS_PROXY

#: sbatch that also starts the job, as a compute node would, in its own
#: session; scancel (wrap_helpers) ends it by removing its state, and
#: this kills its process group too.
RUNNING_SBATCH = """\
import json, os, subprocess, sys
n = len([f for f in os.listdir(STATE) if f.startswith("script-")]) + 4242
script = os.path.join(STATE, f"script-{n}.sh")
open(script, "w").write(sys.stdin.read())
env = dict(os.environ, PATH=NODE_PATH)
log = open(os.path.join(STATE, f"job-{n}.log"), "w")
job = subprocess.Popen(["bash", script], env=env, cwd=STATE, stdout=log,
                       stderr=subprocess.STDOUT, start_new_session=True)
open(os.path.join(STATE, f"pid-{n}"), "w").write(str(job.pid))
open(os.path.join(STATE, f"job-{n}"), "w").write("RUNNING 127.0.0.1")
print(n)
"""
KILLING_SCANCEL = """\
import signal
try:
    os.killpg(int(open(os.path.join(STATE, f"pid-{sys.argv[1]}")).read()),
              signal.SIGTERM)
except (OSError, ValueError):
    pass
"""
NODE_APPTAINER = """\
import os, sys
args = sys.argv[2:]  # after "exec": options, the image, the command
while args[0].startswith("--"):
    args.pop(0)
os.execvp(args[1], args[1:])
"""


def fake_cluster(tmp: Path) -> Path:
    """Hub-side sbatch/squeue/scancel and node-side id/srun/apptainer."""
    hub_bin, node_bin, state = tmp / "hubbin", tmp / "nodebin", tmp / "slurm"
    for d in (hub_bin, node_bin, state):
        d.mkdir()
    node_path = f"{node_bin}:{Path(sys.executable).parent}:/usr/bin:/bin"
    head = f"import os, sys\nSTATE = {str(state)!r}\nNODE_PATH = {node_path!r}\n"
    write_tool(hub_bin, "sbatch", head + RUNNING_SBATCH)
    write_tool(hub_bin, "squeue", head + FAKE_SQUEUE)
    write_tool(hub_bin, "scancel", head + KILLING_SCANCEL + FAKE_SCANCEL)
    write_tool(node_bin, "id", "import os; print(os.environ['NB_UID'])\n")
    write_tool(
        node_bin, "srun", "import os, sys; os.execvp(sys.argv[1], sys.argv[1:])\n"
    )
    write_tool(node_bin, "apptainer", NODE_APPTAINER)
    write_tool(node_bin, "jupyterhub-singleuser", FAKE_SERVER)
    return hub_bin


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from conftest import USERS

    use_dummy_kubeconfig()
    tmp = tmp_path_factory.mktemp("wraphub")
    catalog = catalog_with_backends(tmp / "courses", {"ml-private": "slurm"})
    (tmp / "users.yaml").write_text(USERS)
    hub_bin = fake_cluster(tmp)
    env = dict(os.environ, PATH=f"{hub_bin}:{os.environ['PATH']}")
    url, proc = run_hub(
        tmp,
        DUMMY_LOGIN,
        f"""\
        c.JupyterHub.spawner_class = "course-wrap"
        # Servers outlive the hub, as in a real restart.
        c.JupyterHub.cleanup_servers = False
        c.CourseCatalog.path = "{catalog}"
        c.SpawnerIdentityMixin.identity_class = "aaltohub.identity.StaticIdentity"
        c.StaticIdentity.path = "{tmp}/users.yaml"
        c.CourseWrapSpawner.backends = {{
            "kubernetes": {{"spawner_class": "course"}},
            "slurm": {{
                "spawner_class": "course-slurm",
                "settings": {{
                    "storage_root": "{tmp}/storage",
                    "exec_prefix": "",
                    "startup_poll_interval": 0.2,
                    "start_timeout": 60,
                }},
            }},
        }}
        """,
        env=env,
    )
    state = {"proc": proc}
    yield url, tmp, env, state
    stop_process(state["proc"])
    for pid_file in (tmp / "slurm").glob("pid-*"):  # jobs left by a failure
        with contextlib.suppress(OSError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def server_of(client) -> dict | None:
    return client.get("/hub/api/user", headers=xsrf(client)).json()["servers"].get("")


def wait_ready(client, timeout=60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = server_of(client)
        if server and server["ready"]:
            return server
        time.sleep(0.3)
    pytest.fail(f"server never became ready: {server_of(client)}")


def test_the_form_and_the_access_check_across_backends(hub):
    url, _, _, _ = hub
    client = login(url, "student2")
    slugs = offered(client.get("/hub/spawn").text)
    assert {"intro", "exam", "nogid"} <= slugs and "ml-private" not in slugs
    # The private Slurm course: refused, whichever way it is asked for.
    response = client.post(
        "/hub/spawn",
        data={"profile": "ml-private", "_xsrf": xsrf(client)["X-XSRFToken"]},
    )
    assert "You (student2)" in response.text
    response = client.post(
        "/hub/api/users/student2/server",
        json={"profile": "ml-private"},
        headers=xsrf(client),
    )
    assert response.status_code == 403
    # A Kubernetes course cannot be sent to Slurm by the request.
    response = client.post(
        "/hub/api/users/student2/server",
        json={"profile": "intro", "backend": "slurm"},
        headers=xsrf(client),
    )
    assert response.status_code == 400 and server_of(client) is None


def test_a_slurm_server_starts_survives_a_restart_and_stops(hub):
    url, tmp, env, state = hub
    client = login(url, "student1")
    response = client.post(
        "/hub/spawn",
        data={"profile": "ml-private", "_xsrf": xsrf(client)["X-XSRFToken"]},
    )
    assert response.status_code < 400, response.text
    wait_ready(client)
    # Through the proxy, to the server in the "job".
    assert (
        client.get("/user/student1/api/status", follow_redirects=False).status_code
        == 200
    )
    script = (tmp / "slurm" / "script-4242.sh").read_text()
    assert 'if [ "$(id -u)" != "1001234" ]' in script
    assert (
        f"--bind={tmp}/storage/exchange/ml-private:/srv/nbgrader/exchange:rw" in script
    )

    # The job's token may report the port once, and set nothing else.
    token = json.loads((tmp / "slurm" / "env.json").read_text())["JUPYTERHUB_API_TOKEN"]
    auth = {"Authorization": f"token {token}"}
    for body, status in (
        ({"port": 1, "batch_script": "rm -rf ~"}, 400),
        ({"exec_prefix": "sh -c evil"}, 400),
        ({"port": 2}, 409),
    ):
        response = httpx.post(f"{url}/hub/api/batchspawner", json=body, headers=auth)
        assert response.status_code == status, response.text

    stop_process(state["proc"])
    state["proc"] = start_process(tmp, env)
    wait_healthy(url, state["proc"], tmp)
    wait_ready(client)  # found again, from the job's state
    assert (tmp / "slurm" / "job-4242").exists()
    assert (
        client.get("/user/student1/api/status", follow_redirects=False).status_code
        == 200
    )

    response = client.delete("/hub/api/users/student1/server", headers=xsrf(client))
    assert response.status_code in (202, 204), response.text
    deadline = time.monotonic() + 30
    while server_of(client) is not None and time.monotonic() < deadline:
        time.sleep(0.3)
    assert server_of(client) is None
    assert not (tmp / "slurm" / "job-4242").exists()  # scancel ran
