"""``aaltohub demo``: a whole course hub on this machine."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run a local demo hub with demo users and courses",
        description="Start a real JupyterHub with configurable-http-proxy and"
        " JupyterLab servers, the demo courses (intro, ml-private, old) and"
        " users (student1, student2, instructor1, admin1), storage laid out like"
        " the campus NFS, until Ctrl-C. Everything it writes goes to the state"
        " directory.",
    )
    p.add_argument("--port", type=int, default=8000, help="public port (8000)")
    p.add_argument(
        "--state-dir",
        default="demo-state",
        help="directory for everything the demo writes (./demo-state)",
    )
    p.add_argument(
        "--password",
        help="password of every demo user (default: a new one, printed at start)",
    )
    p.add_argument(
        "--isolation",
        choices=["auto", "namespace", "prefix"],
        default="auto",
        help="how servers see their storage: 'namespace' (root: private mount"
        " namespace, real paths, the user's uid), 'prefix' (symlinks, the hub's"
        " uid, nothing enforced); 'auto' picks namespace when it can",
    )
    p.add_argument(
        "--verbose", action="store_true", help="show the hub's log on the terminal"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..demo.runner import run as run_demo

    if args.password is not None and not args.password:
        print("error: --password must not be empty")
        return 2
    return run_demo(
        port=args.port,
        state_dir=args.state_dir,
        password=args.password,
        isolation=args.isolation,
        verbose=args.verbose,
    )
