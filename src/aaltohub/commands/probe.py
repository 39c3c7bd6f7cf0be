"""``aaltohub probe``: start a server through the hub, check it, stop it."""

from __future__ import annotations

import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
    p.add_argument(
        "--url",
        default=os.environ.get("AALTOHUB_PROBE_URL"),
        required=not os.environ.get("AALTOHUB_PROBE_URL"),
        help="the hub's public URL (default: $AALTOHUB_PROBE_URL)",
    )
    p.add_argument("--user", required=True, help="a user kept for probing")
    p.add_argument("--profile", default="", help="profile (course) to start")
    p.add_argument("--server", default="", help="named server (default: none)")
    p.add_argument("--timeout", type=float, default=120, help="seconds per wait")
    p.add_argument(
        "--prometheus",
        metavar="FILE",
        help="also write the result for node_exporter's textfile collector",
    )
    p.add_argument(
        "--every",
        type=float,
        metavar="SECONDS",
        help="run again every SECONDS, forever (as a hub service: values.yaml's"
        " spawn-probe); a failed run is reported and the next one follows",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="with --every: serve the last result for Prometheus at"
        " http://0.0.0.0:PORT/metrics",
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
    if args.every is not None and args.every <= 0:
        print("error: --every needs a number of seconds above 0", file=sys.stderr)
        return 2
    if args.metrics_port is not None and not args.every:
        print("error: --metrics-port needs --every", file=sys.stderr)
        return 2
    if args.every:
        server = serve_metrics(args.metrics_port) if args.metrics_port else None
        return repeat(args, probe, server)
    return report(args, probe.run())


def report(args, result) -> int:
    """Print (and write) one run's result; 0 if it passed."""
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


def repeat(args, probe, server=None, runs=None) -> int:
    """Run the probe every ``args.every`` seconds (``runs`` times, or
    forever), keeping ``server``'s metrics at the last result."""
    done = 0
    while runs is None or done < runs:
        result = probe.run()
        report(args, result)
        if server is not None:
            server.text = result.prometheus(args.user)
        sys.stdout.flush()  # a service's log shows each run as it ends
        done += 1
        if runs is None or done < runs:
            time.sleep(args.every)
    return 0


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True
    text = ""  # the exposition of the last run; empty before the first


class _MetricsHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404, "only /metrics is served")
            return
        body = self.server.text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # scrapes every few seconds: not logged
        pass


def serve_metrics(port: int, host: str = "0.0.0.0") -> _MetricsServer:  # noqa: S104
    """Serve the probe's last result at /metrics, from a daemon thread."""
    server = _MetricsServer((host, port), _MetricsHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
