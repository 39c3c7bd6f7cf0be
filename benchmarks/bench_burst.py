"""Term-start burst benchmark (issue 14): a plain JupyterHub against an
aaltohub one, interleaved, through a real hub, configurable-http-proxy,
slapd (behind a delay proxy), Postgres or sqlite, and a mock server farm.

Run: ``.tox/py/bin/python benchmarks/bench_burst.py`` (``--quick`` for a
smoke run). Needs root (Postgres runs as the postgres user), slapd,
Debian's postgresql, ``npm ci`` and psycopg2-binary. See docs/benchmarks.md.

Scenarios (each prints a table row per hub):
1. throughput: N users log in and start a server, C at a time, on
   Postgres (R runs, plain and aaltohub alternating first) and sqlite;
2. slow LDAP: 50 users at once with 0.5 s and 2 s per LDAP round trip;
3. LDAP down (refusing, black-holed): 50 new users try to log in while 20
   who logged in before start their servers.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import burst_env  # noqa: E402
from bench_core import make_catalog  # noqa: E402
from burst_env import Env, Hub, process_cpu  # noqa: E402

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


@dataclass
class Outcome:
    user: str
    login_ok: bool = False
    ready: bool = False
    login_s: float = 0.0
    ready_s: float = 0.0  # login start to server ready
    message: str = ""


@dataclass
class Burst:
    outcomes: list[Outcome] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0
    proxy_cpu: float = 0.0  # the hub's configurable-http-proxy
    slapd_cpu: float = 0.0  # the directory (plain hubs never ask it)
    lag: list[float] = field(default_factory=list)
    starts: list[str] = field(default_factory=list)

    def row(self, name: str) -> dict:
        ok = [o for o in self.outcomes if o.ready]
        ready = sorted(o.ready_s for o in ok) or [0.0]
        logins = [o.login_s for o in self.outcomes if o.login_ok] or [0.0]
        lag = sorted(self.lag) or [0.0]
        twice = len(self.starts) - len(set(self.starts))
        return {
            "hub": name,
            "spawns/s": len(ok) / self.wall if self.wall else 0.0,
            "login p50": statistics.median(logins),
            "ready p50": ready[len(ready) // 2],
            "ready p95": ready[min(len(ready) - 1, int(len(ready) * 0.95))],
            "failed logins": sum(not o.login_ok for o in self.outcomes),
            "lag p99 ms": 1000 * lag[min(len(lag) - 1, int(len(lag) * 0.99))],
            "lag max ms": 1000 * lag[-1],
            "cpu ms/user": 1000 * self.cpu / max(1, len(self.outcomes)),
            "proxy ms/user": 1000 * self.proxy_cpu / max(1, len(self.outcomes)),
            "slapd ms/user": 1000 * self.slapd_cpu / max(1, len(self.outcomes)),
            "started twice": twice,
            "lost": sum(o.login_ok and not o.ready for o in self.outcomes),
        }


async def login(client: httpx.AsyncClient, user: str) -> tuple[bool, str]:
    await client.get("/hub/login")
    r = await client.post(
        "/hub/login",
        data={
            "username": user,
            "password": f"{user}-pw",
            "_xsrf": client.cookies.get("_xsrf", ""),
        },
    )
    ok = r.status_code == 200 and "/hub/login" not in str(r.url)
    if ok:
        return True, ""
    if "try again in a minute" in r.text:
        return False, "retry"
    return False, f"HTTP {r.status_code} at {r.url.path}"


async def spawn(client: httpx.AsyncClient, user: str, deadline: float) -> bool:
    headers = {"X-XSRFToken": client.cookies.get("_xsrf", "")}
    r = await client.post(f"/hub/api/users/{user}/server", headers=headers)
    if r.status_code == 201:
        return True
    if r.status_code not in (202, 400):  # 400: already running
        return False
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        r = await client.get(f"/hub/api/users/{user}", headers=headers)
        server = (r.json().get("servers") or {}).get("")
        if server and server.get("ready"):
            return True
    return False


async def one_user(url: str, user: str, do_spawn: bool) -> Outcome:
    out = Outcome(user)
    started = time.monotonic()
    async with httpx.AsyncClient(
        base_url=url, follow_redirects=True, timeout=120
    ) as client:
        out.login_ok, out.message = await login(client, user)
        out.login_s = time.monotonic() - started
        if out.login_ok and do_spawn:
            out.ready = await spawn(client, user, started + 180)
            out.ready_s = time.monotonic() - started
    return out


async def burst(url: str, users: list[str], concurrency: int, do_spawn=True):
    gate = asyncio.Semaphore(concurrency)

    async def limited(user):
        async with gate:
            return await one_user(url, user, do_spawn)

    return await asyncio.gather(*(limited(u) for u in users))


PROFILE_DIR: Path | None = None  # --profile: py-spy stacks of each hub


def measure(
    hub: Hub, users: list[str], concurrency: int, do_spawn=True, cold=False
) -> Burst:
    """One burst. Unless ``cold``, it starts once the hub is in service."""
    result = Burst()
    if not cold:
        hub.wait_in_service()
    spy = None
    if PROFILE_DIR is not None:
        out = PROFILE_DIR / f"{hub.kind}-{hub.dir.name}.txt"
        spy = subprocess.Popen(
            [
                *(PY_SPY, "record", "--pid", str(hub.proc.pid), "--format", "raw"),
                *("--rate", "250", "--nonblocking", "-o", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
    slapd = hub.env.slapd.proc.pid
    proxy0, slapd0 = hub.proxy_cpu_seconds(), process_cpu(slapd)
    cpu0, t0 = hub.cpu_seconds(), time.monotonic()
    result.outcomes = asyncio.run(burst(hub.url, users, concurrency, do_spawn))
    t1 = time.monotonic()
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        spy.wait(60)
    result.wall, result.cpu = t1 - t0, hub.cpu_seconds() - cpu0
    result.proxy_cpu = hub.proxy_cpu_seconds() - proxy0
    result.slapd_cpu = process_cpu(slapd) - slapd0
    result.lag = hub.lag_between(t0, t1)
    result.starts = hub.starts()
    return result


def print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n## {title}")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()]
        print("| " + " | ".join(cells) + " |")
    sys.stdout.flush()


def throughput(env, catalog, users, args) -> None:
    for db, runs, n in (("postgres", args.runs, args.users), ("sqlite", 1, 100)):
        rows, ratios = [], []
        for run in range(runs):
            order = ("plain", "aalto") if run % 2 == 0 else ("aalto", "plain")
            rates = {}
            for kind in order:
                with Hub(env, kind, db, catalog) as hub:
                    burst_result = measure(hub, users[:n], args.concurrency)
                    row = burst_result.row(f"{kind} run {run + 1}")
                    explain(hub, burst_result.outcomes)
                rates[kind] = row["spawns/s"]
                rows.append(row)
            ratios.append(rates["aalto"] / rates["plain"])
        if not rows:
            continue  # --runs 0: no Postgres runs
        print_rows(f"throughput, {db}, {n} users, concurrency {args.concurrency}", rows)
        print(
            f"ratio aaltohub/plain per run: {[round(r, 3) for r in ratios]}; "
            f"median {statistics.median(ratios):.3f}"
        )


def explain(hub: Hub, outcomes: list[Outcome]) -> None:
    """Say why logins failed (a count per message) and keep the hub log."""
    failed = Counter(o.message for o in outcomes if not o.login_ok)
    lost = sum(o.login_ok and not o.ready for o in outcomes)
    if failed or lost:
        print(f"({hub.kind}: failed logins {dict(failed)}, lost {lost})")
        hub.keep_log("failed logins or lost servers")


# (label, hub kind, LDAP delay, DN template, burst at once after the start)
# The plain hub has no directory: its rows are the same burst without LDAP.
SLOW_RUNS = [
    ("plain (no LDAP), +0.5 s run", "plain", 0.5, False, False),
    ("aalto, LDAP +0.5 s", "aalto", 0.5, False, False),
    ("plain (no LDAP), +2 s run", "plain", 2.0, False, False),
    ("aalto, LDAP +2 s", "aalto", 2.0, False, False),
    ("aalto, LDAP +2 s, DN template", "aalto", 2.0, True, False),
    ("aalto, LDAP +2 s, burst as the hub starts", "aalto", 2.0, False, True),
]


def slow_ldap(env, catalog, users, args) -> None:
    """Every row of SLOW_RUNS, the whole list ``--slow-runs`` times (this
    machine's noise is of the size of the margins), then each row's median
    login p50."""
    rows, logins = [], {}
    for run in range(args.slow_runs):
        for label, kind, delay, template, cold in SLOW_RUNS:
            env.proxy.delay = delay
            with Hub(env, kind, "postgres", catalog, dn_template=template) as hub:
                result = measure(hub, users[:50], 50, cold=cold)
                rows.append(result.row(f"{label} #{run + 1}"))
                explain(hub, result.outcomes)
            logins.setdefault(label, []).append(rows[-1]["login p50"])
    env.proxy.delay = 0.0
    print_rows("slow LDAP: 50 users at once (login + spawn), Postgres", rows)
    print(f"median login p50 over {args.slow_runs} run(s):")
    for label, values in logins.items():
        print(f"  {label}: {statistics.median(values):.2f} s {sorted(values)}")


async def outage(hub: Hub, env, mode: str, before: list[str], newcomers: list[str]):
    """``before`` log in while LDAP is up, then it goes down: ``newcomers``
    try to log in, and ``before`` start servers with their sessions."""
    clients = [
        httpx.AsyncClient(base_url=hub.url, follow_redirects=True, timeout=120)
        for _ in before
    ]
    try:
        logged = await asyncio.gather(
            *(login(c, u) for c, u in zip(clients, before, strict=True))
        )
        failed = Counter(message for ok, message in logged if not ok)
        if failed:  # the directory is still up here: this should not happen
            print(f"(earlier users' logins failed before the outage: {dict(failed)})")
            hub.keep_log("earlier logins failed")
        await asyncio.sleep(2.5)  # their identities are no longer fresh
        env.proxy.mode = mode
        try:
            tried = await burst(hub.url, newcomers, len(newcomers), do_spawn=False)
            deadline = time.monotonic() + 60
            spawned = await asyncio.gather(
                *(spawn(c, u, deadline) for c, u in zip(clients, before, strict=True))
            )
        finally:
            env.proxy.mode = "up"
    finally:
        for client in clients:
            await client.aclose()
    return sum(ok for ok, _ in logged), tried, sum(spawned)


def ldap_down(env, catalog, users, args) -> None:
    rows = []
    for mode in ("refuse", "blackhole"):
        with Hub(env, "aalto", "postgres", catalog, cache_ttl=2.0) as hub:
            hub.wait_in_service()
            logged, tried, spawned = asyncio.run(
                outage(hub, env, mode, users[:20], users[20:70])
            )
            starts = hub.starts()
        rows.append(
            {
                "LDAP": mode,
                "newcomers told to retry": sum(o.message == "retry" for o in tried),
                "slowest newcomer s": max(o.login_s for o in tried),
                "earlier users logged in": logged,
                "earlier users spawned": spawned,
                "started twice": len(starts) - len(set(starts)),
            }
        )
    print_rows("LDAP down: 50 newcomers log in, 20 earlier users spawn", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--runs", type=int, default=5, help="throughput runs (pairs) on Postgres"
    )
    parser.add_argument(
        "--slow-runs", type=int, default=3, help="repeats of the slow-LDAP rows"
    )
    parser.add_argument("--quick", action="store_true", help="60 users, 1 run")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not give each hub a CPU of its own (everything shares all)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="directory for py-spy raw stacks of each hub during each burst",
    )
    parser.add_argument(
        "--only", choices=["throughput", "slow", "down"], action="append"
    )
    args = parser.parse_args()
    global PROFILE_DIR
    PROFILE_DIR = args.profile
    if PROFILE_DIR:
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.users, args.runs, args.slow_runs = 60, 1, 1
    pinned = not args.no_pin and burst_env.pin()
    print(
        f"hub on CPU {sorted(burst_env.HUB_CPUS)}, the rest on"
        f" {sorted(burst_env.REST_CPUS)}"
        if pinned
        else "not pinned: the hub shares every CPU with the rest",
        flush=True,
    )
    # Rostered users of the generated catalog (user0 ... user19999).
    users = [f"user{i}" for i in range(max(args.users, 100))]
    with tempfile.TemporaryDirectory() as tmp:
        catalog = make_catalog(Path(tmp) / "courses")
        env = Env(users)
        try:
            scenarios = {"throughput": throughput, "slow": slow_ldap, "down": ldap_down}
            for name in args.only or list(scenarios):
                scenarios[name](env, catalog, users, args)
        finally:
            env.close()


if __name__ == "__main__":
    main()
