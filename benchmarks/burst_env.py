"""What the burst benchmark runs against: Postgres, slapd behind the delay
proxy, the mock server farm, and a JupyterHub (plain or aaltohub) per run.

Everything listens on loopback, lives in one temp dir, and is stopped by
``Env.close()``. Postgres is a throwaway cluster run as the ``postgres``
user (initdb refuses root); each hub run gets a fresh database.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))

from delay_proxy import DelayProxy  # noqa: E402
from ldap_server import Slapd, free_port, people_ldif  # noqa: E402

CHP = REPO / "node_modules" / ".bin" / "configurable-http-proxy"

#: CPUs of the hub process, and of everything else (driver, proxy, slapd,
#: Postgres, farm), when the benchmark pins them (``pin()``): a hub node
#: runs the hub alone, so the hub gets a core of its own here too.
HUB_CPUS: set[int] | None = None
REST_CPUS: set[int] | None = None


def pin() -> bool:
    """Pin this process (and so everything it starts later) to all CPUs
    but the first, which is left to each hub. False if there are too few."""
    global HUB_CPUS, REST_CPUS
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return False
    HUB_CPUS, REST_CPUS = {cpus[0]}, set(cpus[1:])
    os.sched_setaffinity(0, REST_CPUS)
    return True


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
    utime, stime = fields.split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


class Postgres:
    """A throwaway cluster. Its data lives in /dev/shm when there is one:
    a hub's database server has a disk with a write cache (commits in about
    a millisecond), which this machine's disk (18 ms per fsync) is not."""

    def __init__(self, root: Path) -> None:
        shm = Path("/dev/shm")
        self.dir = Path(
            tempfile.mkdtemp(prefix="aaltohub-pg-", dir=shm if shm.is_dir() else root)
        )
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()

    def _as_pg(self, *cmd: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *cmd],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        data = str(self.dir / "data")
        self._as_pg(str(PG_BIN / "initdb"), "-D", data, "-A", "trust", "-U", "hub")
        self._as_pg(
            str(PG_BIN / "pg_ctl"),
            "-D",
            data,
            "-l",
            str(self.dir / "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
            "start",
        )

    def fresh_db(self, name: str) -> str:
        for cmd in ("dropdb", "createdb"):
            args = [str(PG_BIN / cmd), "-h", "127.0.0.1", "-p", str(self.port)]
            args += ["-U", "hub", *(["--if-exists"] if cmd == "dropdb" else []), name]
            self._as_pg(*args)
        return f"postgresql+psycopg2://hub@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._as_pg(
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.dir / "data"),
                "-m",
                "fast",
                "stop",
            )


class Env:
    """slapd + delay proxy + farm + Postgres, for the whole benchmark."""

    def __init__(self, users: list[str]) -> None:
        # /tmp is on disk here (not tmpfs): sqlite pays the real fsync cost.
        self.root = Path(tempfile.mkdtemp(prefix="aaltohub-burst-"))
        self.slapd = Slapd()
        self.slapd.start()
        self.slapd.add(people_ldif(users, 100000, "burst-course"))
        self.proxy = DelayProxy("127.0.0.1", self.slapd.port).start()
        self.farm_port = free_port()
        farm_log = self.root / "farm.log"
        self.farm = subprocess.Popen(
            [sys.executable, str(HERE / "burst_farm.py"), str(self.farm_port)],
            stdout=farm_log.open("w"),
            stderr=subprocess.STDOUT,
        )
        _wait_http(f"http://127.0.0.1:{self.farm_port}/", self.farm, farm_log)
        self.pg = Postgres(self.root)
        self.pg.start()

    def close(self) -> None:
        self.farm.terminate()
        self.farm.wait(10)
        self.pg.stop()
        self.proxy.stop()
        self.slapd.stop()
        shutil.rmtree(self.root, ignore_errors=True)


COMMON = """\
c = get_config()
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.JupyterHub.db_url = {db_url!r}
c.JupyterHub.cookie_secret_file = "{dir}/cookie_secret"
c.JupyterHub.pid_file = "{dir}/hub.pid"
c.JupyterHub.authenticate_prometheus = False
c.JupyterHub.log_level = "WARN"
c.Authenticator.allow_all = True
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.JupyterHub.services = [{{"name": "bench", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "bench", "services": ["bench"],
    "scopes": ["list:users", "read:users", "read:servers"]}}]
"""

PLAIN = """\
c.JupyterHub.authenticator_class = "burst_hub.PlainAuthenticator"
c.JupyterHub.spawner_class = "burst_hub.FarmSpawner"
"""

AALTO = """\
c.JupyterHub.authenticator_class = "burst_hub.AaltoAuthenticator"
c.JupyterHub.spawner_class = "burst_hub.BenchCourseSpawner"
c.Authenticator.enable_auth_state = True
c.BenchCourseSpawner.identity_class = "aaltohub.identity.LDAPIdentity"
c.CourseCatalog.path = {catalog!r}
c.LDAPIdentity.server_urls = [{ldap_url!r}]
c.LDAPIdentity.bind_dn = {bind_dn!r}
c.LDAPIdentity.bind_password = {bind_pw!r}
c.LDAPIdentity.user_search_base = {base!r}
c.LDAPIdentity.group_membership = "memberOf"
c.LDAPIdentity.cache_ttl = {cache_ttl}
# Sized for the burst, as the option's help says: 50 logins at once.
c.LDAPIdentity.pool_keep_open = {keep_open}
"""

DN_TEMPLATE = """\
c.LDAPIdentityAuthenticator.bind_dn_template = [{template!r}]
"""


class Hub:
    """One JupyterHub process for one run; ``with Hub(...) as hub:``."""

    def __init__(
        self,
        env: Env,
        kind: str,
        db: str,
        catalog: Path,
        cache_ttl=300.0,
        keep_open=50,
        dn_template=False,
    ):
        self.env, self.kind = env, kind
        self.keep_open = keep_open
        self.dir = Path(tempfile.mkdtemp(prefix=f"hub-{kind}-", dir=env.root))
        self.port = free_port()
        self.token = secrets.token_hex(16)
        if db == "postgres":
            db_url = env.pg.fresh_db(f"hub_{kind}")
        else:
            db_url = f"sqlite:///{self.dir}/hub.sqlite"
        text = COMMON.format(
            port=self.port,
            hub_port=free_port(),
            api_port=free_port(),
            chp=str(CHP),
            db_url=db_url,
            dir=self.dir,
            token=self.token,
        )
        if kind == "plain":
            text += PLAIN
        else:
            text += AALTO.format(
                catalog=str(catalog),
                ldap_url=env.proxy.url,
                bind_dn=env.slapd.service_dn,
                bind_pw=env.slapd.service_password,
                base=f"ou=people,{env.slapd.suffix}",
                cache_ttl=cache_ttl,
                keep_open=keep_open,
            )
            if dn_template:
                text += DN_TEMPLATE.format(
                    template=f"uid={{username}},ou=people,{env.slapd.suffix}"
                )
        (self.dir / "jupyterhub_config.py").write_text(textwrap.dedent(text))
        self.lag_file = self.dir / "lag.txt"
        self.starts_file = self.dir / "starts.txt"
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Hub:
        log = self.dir / "hub.log"
        env = dict(
            os.environ,
            PYTHONPATH=str(HERE),
            BURST_FARM_PORT=str(self.env.farm_port),
            BURST_LAG_FILE=str(self.lag_file),
            BURST_STARTS_FILE=str(self.starts_file),
            JUPYTERHUB_CRYPT_KEY=secrets.token_hex(32),
            PATH=f"{CHP.parent}:{os.environ['PATH']}",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"],
            cwd=self.dir,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if HUB_CPUS is not None:
            # At once, before Python is up and starts threads (which would
            # keep the CPUs of the thread that made them).
            os.sched_setaffinity(self.proc.pid, HUB_CPUS)
        _wait_http(f"{self.url}/hub/health", self.proc, log)
        if REST_CPUS is not None and (proxy := self.proxy_pid()):
            os.sched_setaffinity(proxy, REST_CPUS)  # started by the hub
        return self

    def metric(self, name: str, labels: str = "") -> float | None:
        """One sample of the hub's /hub/metrics, None if absent."""
        text = httpx.get(f"{self.url}/hub/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(f"{name}{labels} "):
                return float(line.split()[-1])
        return None

    def wait_in_service(self, settle: float = 2.0, timeout: float = 60.0) -> float:
        """Wait until the hub is in service: every hub ``settle`` seconds
        after it answered /hub/health, and an aaltohub hub also until its
        metrics show the catalog loaded and the directory connections open.
        A term-start burst meets a hub in service, not one started a second
        ago. Returns the seconds waited."""
        started = time.monotonic()
        time.sleep(settle)
        if self.kind == "plain":
            return settle
        while time.monotonic() - started < timeout:
            courses = self.metric("aaltohub_catalog_courses") or 0
            idle = self.metric("aaltohub_ldap_pool_connections", '{state="idle"}') or 0
            if courses > 0 and idle >= self.keep_open:
                return time.monotonic() - started
            time.sleep(0.2)
        self.keep_log("not in service")
        raise RuntimeError(
            f"{self.kind} hub not in service after {timeout} s: catalog courses"
            f" {courses}, idle directory connections {idle} of {self.keep_open}"
        )

    def keep_log(self, why: str) -> Path:
        """Copy the hub log out of the temp dir (which is removed)."""
        dest = Path(tempfile.gettempdir()) / f"bench-burst-{self.dir.name}.log"
        shutil.copy(self.dir / "hub.log", dest)
        print(f"({why}: hub log kept in {dest})", flush=True)
        return dest

    def cpu_seconds(self) -> float:
        """User + system CPU of the hub process (not the proxy)."""
        return process_cpu(self.proc.pid)

    def proxy_pid(self) -> int | None:
        """The hub's configurable-http-proxy (a child of the hub)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        for pid in children.read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"configurable-http-proxy" in cmdline:
                return int(pid)
        return None

    def proxy_cpu_seconds(self) -> float:
        pid = self.proxy_pid()
        return process_cpu(pid) if pid else 0.0

    def lag_between(self, start: float, end: float) -> list[float]:
        time.sleep(1.2)  # the monitor flushes once a second
        samples = []
        for line in self.lag_file.read_text().splitlines():
            t, lag = line.split()
            if start <= float(t) <= end:
                samples.append(float(lag))
        return samples

    def starts(self) -> list[str]:
        if not self.starts_file.exists():
            return []
        return self.starts_file.read_text().split()

    def __exit__(self, *exc) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
