"""``aaltohub probe``: start a server through the hub, check it, stop it."""

from __future__ import annotations

import os
import sys

from ..ops.probe import SpawnProbe


def register(sub) -> None:
    p = sub.add_parser(
        "probe",
        help="spawn probe: start, reach and stop a server; exit 1 on failure",
        description="Start a server for a probe user through the hub's REST"
        " API, wait until it is ready, reach it through the proxy, stop it,"
        " and report each step's time. The token (an admin's, or the probe"
        " user's own) is read from $JUPYTERHUB_API_TOKEN.",
    )
    p.add_argument("--url", required=True, help="the hub's public URL")
    p.add_argument("--user", required=True, help="a user kept for probing")
    p.add_argument("--profile", default="", help="profile (course) to start")
    p.add_argument("--server", default="", help="named server (default: none)")
    p.add_argument("--timeout", type=float, default=120, help="seconds per wait")
    p.add_argument(
        "--prometheus",
        metavar="FILE",
        help="also write the result for node_exporter's textfile collector",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not token:
        print(
            "error: set JUPYTERHUB_API_TOKEN to a token that may start the"
            f" server of {args.user}",
            file=sys.stderr,
        )
        return 2
    try:
        probe = SpawnProbe(
            args.url, token, args.user, args.profile, args.server, args.timeout
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = probe.run()
    for name, seconds in result.steps.items():
        print(f"{name:8} {seconds:7.2f} s")
    if args.prometheus:
        tmp = args.prometheus + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(result.prometheus(args.user))
        os.replace(tmp, args.prometheus)  # collectors never see half a file
    if result.ok:
        print(f"ok: {args.user} started, reached and stopped in {result.total:.2f} s")
        return 0
    print(f"FAILED: {result.error}", file=sys.stderr)
    return 1
