"""Real servers of LocalCourseSpawner: the sandbox, the server's log.

Each test starts a small probe program as the "server" through
``LocalCourseSpawner.start()``, the hub's own launch path. The probe
records what it sees in ``$HOME/probe-<name>.json`` (the user's home in the
storage), then listens on the server's port until it is stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tornado import web

from aaltohub.demo.runner import run_processes
from aaltohub.local.sandbox import command, namespaces_supported
from test_local import config, local_spawner, plan_for, storage  # noqa: F401


@pytest.fixture
def hub_config(request):
    """test_local's spawner config: demo-style storage, catalog and users."""
    return request.getfixturevalue("config")


needs_sandbox = pytest.mark.skipif(
    not namespaces_supported(), reason="needs root and a working bubblewrap"
)
ISOLATIONS = ["prefix", pytest.param("namespace", marks=needs_sandbox)]

PROBE = """\
import json, os, signal, socket, sys, time
facts = {}
%s
home = os.environ["HOME"]
with open(os.path.join(home, ".probe.tmp"), "w") as f:
    json.dump(facts, f)
os.replace(os.path.join(home, ".probe.tmp"),
           os.path.join(home, "probe-" + os.environ["PROBE_NAME"] + ".json"))
def stopped(signum, frame):
    open(os.path.join(home, "stopped-" + os.environ["PROBE_NAME"]), "w").close()
    sys.exit(0)
signal.signal(signal.SIGINT, stopped)
signal.signal(signal.SIGTERM, stopped)
port = int(os.environ["JUPYTERHUB_SERVICE_URL"].rsplit(":", 1)[1].split("/")[0])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen()
while True:
    time.sleep(1)
"""


async def start_probe(hub_config, body, *, user="student1", name="probe", **kw):
    """A running probe server; returns the spawner and what the probe saw."""
    spawner = local_spawner(hub_config, user)
    spawner.isolation = kw.get("isolation", "namespace")
    spawner.api_token = "probe-token"
    spawner.user_options = {"profile": kw.get("profile", "intro")}
    spawner.cmd = [sys.executable, "-c", PROBE % textwrap.dedent(body)]
    spawner.environment = {"PROBE_NAME": name, **kw.get("env", {})}
    await spawner.start()
    root = Path(spawner.storage_root)
    for _ in range(300):
        found = list(root.glob(f"u/*/{user}/probe-{name}.json"))
        if found:
            return spawner, json.loads(found[0].read_text())
        await asyncio.sleep(0.1)
    await spawner.stop(now=True)
    raise AssertionError(f"the probe {name} wrote nothing")


def _host_mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def _host_paths() -> dict:
    return {p: os.path.lexists(p) for p in ("/notebooks", "/course", "/coursedata")}


# --- finding: servers shared the hub's stdout and stderr ----------------------------
@pytest.mark.parametrize("isolation", ISOLATIONS)
async def test_server_cannot_write_the_hubs_stdout_or_stderr(
    hub_config, capfd, isolation
):
    marker = f"MARKER-{os.urandom(4).hex()}"
    targets = ["/proc/self/fd/1", "/proc/self/fd/2"]
    if isolation == "namespace":  # /proc/1 is the sandbox's (prefix: the host's)
        targets += ["/proc/1/fd/1", "/proc/1/fd/2", f"/proc/{os.getppid()}/fd/2"]
    body = f"""
        for target in {targets!r}:
            try:
                with open(target, "a") as f:
                    f.write("{marker} via " + target + "\\n")
                facts[target] = "written"
            except OSError as e:
                facts[target] = e.strerror
        print("{marker} on stdout", flush=True)
        print("{marker} on stderr", file=sys.stderr, flush=True)
        facts["fds"] = sorted(os.listdir("/proc/self/fd"))
    """
    spawner, facts = await start_probe(hub_config, body, isolation=isolation)
    server_dir = Path(spawner._launch.server_dir)
    await spawner.stop()
    hub_side = capfd.readouterr()
    assert marker not in hub_side.out + hub_side.err
    assert facts["fds"] in (["0", "1", "2"], ["0", "1", "2", "3"])  # 3: listdir's
    log = server_dir / "server.log"
    assert f"{marker} on stderr" in log.read_text()
    assert f"{marker} on stdout" in log.read_text()
    info = log.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()


@pytest.mark.parametrize("isolation", ISOLATIONS)
async def test_server_exiting_at_start_shows_its_log_to_the_user(hub_config, isolation):
    spawner = local_spawner(hub_config, "student1")
    spawner.isolation = isolation
    spawner.api_token = "probe-token"
    spawner.user_options = {"profile": "intro"}
    spawner.cmd = [
        sys.executable,
        "-c",
        "import sys; print('ImportError: no module named nbclassic_x',"
        " file=sys.stderr); sys.exit(3)",
    ]
    with pytest.raises(web.HTTPError) as info:
        await spawner.start()
    message = info.value.jupyterhub_message
    assert "exited with status 3 while starting" in message
    assert "ImportError: no module named nbclassic_x" in message
    assert "student1/server.log" in message  # where the operator finds it
    assert spawner.proc is None or spawner.proc.poll() is not None


async def test_running_servers_log_is_capped_when_polled(hub_config):
    body = """
        sys.stdout.write("x" * 5000 + "\\n")
        sys.stdout.flush()
    """
    spawner, _ = await start_probe(hub_config, body, isolation="prefix")
    log = Path(spawner._launch.log)
    try:
        spawner.log_max_bytes = 1000
        assert await spawner.poll() is None
        assert log.read_text().startswith("[aaltohub: log cut at")
        assert log.stat().st_size < 1000
    finally:
        await spawner.stop()


def test_log_is_capped_and_the_previous_run_kept(tmp_path):
    from aaltohub.local.views import cap_log, open_log

    path = str(tmp_path / "server.log")
    Path(path).write_text("the previous run\n")
    fd = open_log(path)
    try:
        assert Path(path + ".1").read_text() == "the previous run\n"
        os.write(fd, b"x" * 900 + b"\nlast line\n")
        assert not cap_log(fd, 1000)
        os.write(fd, b"y" * 200 + b"\nvery last line\n")
        assert cap_log(fd, 1000)
        text = Path(path).read_text()
        assert text.startswith("[aaltohub: log cut at") and len(text) < 400
        assert text.endswith("very last line\n")
        os.write(fd, b"appended\n")  # the server's O_APPEND writes go on
        assert Path(path).read_text().endswith("very last line\nappended\n")
    finally:
        os.close(fd)


# --- finding: /dev/shm was the host's, shared by every server ------------------------
@needs_sandbox
async def test_each_server_has_a_private_dev_shm(hub_config):
    host_before = sorted(os.listdir("/dev/shm"))
    body_a = """
        open("/dev/shm/aaltohub-probe-a", "w").write("a")
        facts["shm"] = sorted(os.listdir("/dev/shm"))
    """
    body_b = """
        facts["shm"] = sorted(os.listdir("/dev/shm"))
        open("/dev/shm/aaltohub-probe-b", "w").write("b")
        facts["mode"] = oct(os.stat("/dev/shm").st_mode & 0o7777)
    """
    a = b = None
    try:
        a, seen_a = await start_probe(hub_config, body_a, name="a")
        b, seen_b = await start_probe(hub_config, body_b, user="student2", name="b")
        assert seen_a["shm"] == ["aaltohub-probe-a"]
        assert seen_b == {"shm": [], "mode": "0o1777"}  # a's file is not there
        assert not [f for f in os.listdir("/dev/shm") if f.startswith("aaltohub-probe")]
    finally:
        for spawner in (a, b):
            if spawner is not None:
                await spawner.stop(now=True)
        for leaked in ("a", "b"):  # only the old sandbox leaves them here
            Path(f"/dev/shm/aaltohub-probe-{leaked}").unlink(missing_ok=True)
    assert not set(host_before) - set(os.listdir("/dev/shm"))


# --- finding: the hand-written sandbox; now bubblewrap ----------------------------
@needs_sandbox
async def test_sandbox_enforces_read_only_and_uid_without_touching_host(hub_config):
    mounts_before, host = _host_mounts(), _host_paths()
    token = os.urandom(6).hex()
    body = """
        import pwd
        try:
            open("/coursedata/x", "w")
            facts["w"] = "written"
        except OSError as e:
            facts["w"] = e.strerror
        open("/notebooks/mine.txt", "w").write("ok")
        status = dict(line.split(":\\t", 1) for line in
                      open("/proc/self/status").read().splitlines() if ":\\t" in line)
        facts.update(uid=os.getuid(), name=pwd.getpwuid(os.getuid())[0],
                     ids=status["Uid"].split() + status["Gid"].split(),
                     groups=sorted(os.getgroups()), cwd=os.getcwd(),
                     course=os.path.exists("/course"), nnp=status["NoNewPrivs"],
                     cfg=os.path.exists("/etc/aaltohub/jupyter/nbgrader_config.py"),
                     caps={k: v for k, v in status.items() if k.startswith("Cap")})
    """
    env = {"AALTOHUB_DEMO_RUN": token}
    spawner, facts = await start_probe(hub_config, body, env=env)
    server_dir = Path(spawner._launch.server_dir)
    asked = spawner._launch.spec  # the ids the sandbox was given
    try:
        assert run_processes(token)  # the probe, found as the demo finds them
    finally:
        await spawner.stop()
    home = Path(spawner.storage_root, "u/34/student1")
    assert (home / "stopped-probe").exists()  # SIGINT reached it: a clean stop
    assert facts.pop("ids") == [str(asked["uid"])] * 4 + [str(asked["gid"])] * 4
    assert facts.pop("groups") == asked["groups"]
    assert facts.pop("caps") == {
        k: "0000000000000000"
        for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
    }
    assert facts == {
        "uid": 1001234,
        "name": "student1",
        "w": "Read-only file system",
        "cwd": "/notebooks",
        "course": False,
        "cfg": True,
        "nnp": "1",
    }
    assert (home / "mine.txt").stat().st_uid == 1001234
    assert _host_mounts() == mounts_before and _host_paths() == host
    assert sorted(os.listdir(server_dir)) == ["server.log"]  # nothing else left
    assert run_processes(token) == []


@needs_sandbox
async def test_sandbox_has_its_own_pids_ipc_and_uts_but_the_hosts_network(hub_config):
    hub_ns = {
        n: os.readlink(f"/proc/self/ns/{n}") for n in ("pid", "ipc", "uts", "net")
    }
    body = """
        facts["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        facts["ns"] = {n: os.readlink("/proc/self/ns/" + n)
                       for n in ("pid", "ipc", "uts", "net")}
        facts["umask"] = os.umask(0)
    """
    spawner, facts = await start_probe(
        hub_config, body, user="instructor1", profile="intro-instructor"
    )
    await spawner.stop()
    assert os.getpid() not in facts["pids"] and max(facts["pids"]) < 100
    for name in ("pid", "ipc", "uts"):
        assert facts["ns"][name] != hub_ns[name]
    # The proxy reaches the server on 127.0.0.1:<port>: same network.
    assert facts["ns"]["net"] == hub_ns["net"]
    assert facts["umask"] == 0o007  # NB_UMASK of the course's instructors


@needs_sandbox
async def test_sandbox_without_network_for_isolated_jobs(hub_config):
    spawner = local_spawner(hub_config, "student1")
    plan = await plan_for(spawner, "intro")
    launch = spawner._prepare(plan, await spawner.get_identity(), "namespace")
    probe = "import socket; print(sorted(n for _, n in socket.if_nameindex()))"
    argv = command({**launch.spec, "share_net": False}, [sys.executable, "-c", probe])
    assert "--unshare-net" in argv and "--unshare-net" not in command(
        launch.spec, ["true"]
    )
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['lo']"


def test_command_is_an_argument_list_without_a_shell():
    spec = {
        "steps": [
            {"kind": "bind", "source": "/srv/a b;rm -rf /", "path": "/x y", "ro": True},
            {"kind": "tmpfs", "path": "/dev/shm", "mode": 0o1777, "size": 1024},
        ],
        "uid": 1001,
        "gid": 1002,
        "groups": [70001, 70002],
        "cwd": "/notebooks",
    }
    try:
        argv = command(spec, ["/usr/bin/python3", "-c", "print('$HOME')"])
    except FileNotFoundError:
        pytest.skip("bubblewrap is not installed")
    assert argv[0].endswith("/bwrap") and "sh" not in [Path(a).name for a in argv]
    assert argv[argv.index("--ro-bind") : argv.index("--ro-bind") + 3] == [
        "--ro-bind",
        "/srv/a b;rm -rf /",
        "/x y",
    ]
    for option in (
        "--unshare-pid",
        "--unshare-ipc",
        "--die-with-parent",
        "--new-session",
    ):
        assert option in argv
    assert argv[argv.index("--tmpfs") - 4 : argv.index("--tmpfs") + 2] == [
        "--perms",
        "1777",
        "--size",
        "1024",
        "--tmpfs",
        "/dev/shm",
    ]
    setpriv = argv.index("--") + 1
    assert argv[setpriv + 1 : setpriv + 4] == [
        "--reuid=1001",
        "--regid=1002",
        "--groups=70001,70002",
    ]
    assert argv[-5:] == [
        argv[-5],
        "--chdir=/notebooks",
        "/usr/bin/python3",
        "-c",
        "print('$HOME')",
    ]
    with pytest.raises(ValueError, match="cannot run"):
        command(spec, ["A=B"])
