"""``aaltohub capacity``: the user nodes' room now, and how many more
servers of each course fit (the numbers of the capacity metrics, on
demand, node by node)."""

from __future__ import annotations

import asyncio
import json
import os
import sys

DEFAULT_SELECTOR = "hub.jupyter.org/node-purpose=user"


def register(sub) -> None:
    p = sub.add_parser(
        "capacity",
        help="how many more servers of each course fit on the user nodes now",
        description="Read the user nodes and the pods of the hub's namespace"
        " from the Kubernetes API and print each node's free room and how many"
        " more servers of each course fit, node by node (a server must fit on"
        " one node). Needs get/list on nodes (deploy/monitoring/"
        "capacity-rbac.yaml) and list on pods; in the hub pod it uses the"
        " hub's service account.",
    )
    p.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", ""),
        help="the hub's namespace (default: $POD_NAMESPACE, set in z2jh's hub pod)",
    )
    p.add_argument(
        "--node-selector",
        action="append",
        metavar="KEY=VALUE",
        help=f"labels of the user nodes, repeatable (default: {DEFAULT_SELECTOR});"
        " --node-selector '' counts every node",
    )
    p.add_argument(
        "--catalog",
        "--courses",
        dest="courses",
        metavar="DIR",
        default=os.environ.get("AALTOHUB_CATALOG", ""),
        help="the course catalog directory, for each course's guarantees"
        " (default: $AALTOHUB_CATALOG, as the other commands)",
    )
    p.add_argument(
        "--cpu-guarantee",
        type=float,
        default=0.1,
        help="the spawner's cpu_guarantee (default 0.1, values.yaml's singleuser)",
    )
    p.add_argument(
        "--mem-guarantee",
        default="512M",
        help="the spawner's mem_guarantee (default 512M, values.yaml's singleuser)",
    )
    p.add_argument("--timeout", type=float, default=10, help="seconds per API call")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _selector(values) -> dict[str, str] | None:
    selector = {}
    for item in values if values is not None else [DEFAULT_SELECTOR]:
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            return None
        selector[key] = value
    return selector


def run(args) -> int:
    # Imported here: every `aaltohub` command builds this parser, and the
    # Kubernetes modules would slow them all.
    import aiohttp
    from kubernetes_asyncio.client.rest import ApiException

    from ..kube.capacity import course_requests, spawner_bytes

    selector = _selector(args.node_selector)
    if selector is None:
        print("error: --node-selector takes KEY=VALUE", file=sys.stderr)
        return 2
    if not args.namespace:
        print("error: give the hub's namespace with --namespace", file=sys.stderr)
        return 2
    try:
        defaults = {
            "cpu_guarantee": args.cpu_guarantee,
            "mem_guarantee": spawner_bytes(args.mem_guarantee),
        }
    except ValueError as e:
        print(f"error: --mem-guarantee: {e} (e.g. 512M or 2G)", file=sys.stderr)
        return 2
    courses = {}
    if args.courses:
        from ..catalog import CourseCatalog

        courses = CourseCatalog(path=args.courses).load().courses
    try:
        capacity = asyncio.run(_read(args.namespace, selector, args.timeout))
    except (ApiException, aiohttp.ClientError, OSError, TimeoutError) as e:
        print(f"error: cannot read nodes and pods: {_why(e)}", file=sys.stderr)
        return 1
    requests, problems = course_requests(courses, defaults)
    for slug, problem in problems.items():
        print(f"warning: course {slug} left out: {problem}", file=sys.stderr)
    fits = {slug: capacity.free_servers(one) for slug, one in requests.items()}
    if args.json:
        print(json.dumps(_as_json(capacity, requests, fits), indent=2))
    else:
        _print(capacity, requests, fits)
    return 0


async def _read(namespace, selector, timeout):
    from kubernetes_asyncio import config
    from kubernetes_asyncio.client import ApiClient, CoreV1Api

    from ..kube.capacity_monitor import read_capacity

    try:
        config.load_incluster_config()
    except config.ConfigException:
        await config.load_kube_config()
    async with ApiClient() as client:
        return await asyncio.wait_for(
            read_capacity(CoreV1Api(client), namespace, selector, timeout), timeout
        )


def _why(e: BaseException) -> str:
    from kubernetes_asyncio.client.rest import ApiException

    if isinstance(e, ApiException):
        hint = ""
        if e.status in (401, 403):
            hint = " (apply deploy/monitoring/capacity-rbac.yaml)"
        return f"HTTP {e.status} {e.reason}{hint}"
    return repr(e)


GI = 1024**3


def _print(capacity, requests, fits) -> None:
    print(f"{'node':24} {'cpu free/alloc':>16} {'memory free/alloc (GiB)':>24} pods")
    for n in capacity.nodes:
        cpu = f"{n.cpu - n.used.cpu:.2f}/{n.cpu:.2f}"
        mem = f"{(n.memory - n.used.memory) / GI:.1f}/{n.memory / GI:.1f}"
        print(f"{n.name:24} {cpu:>16} {mem:>24} {n.used_pods}/{n.pods:.0f}")
    alloc, used = capacity.allocatable, capacity.requested
    print(
        f"user servers request {used.cpu:.2f} of {alloc.cpu:.2f} cpu and"
        f" {used.memory / GI:.1f} of {alloc.memory / GI:.1f} GiB"
    )
    print("more servers that fit now (node by node):")
    for slug in sorted(fits):
        one = requests[slug]
        size = f"{one.cpu:g} cpu, {one.memory / GI:.2f} GiB each"
        print(f"  {slug or '(no course)':22} {fits[slug]:6}  ({size})")


def _as_json(capacity, requests, fits) -> dict:
    return {
        "nodes": [
            {
                "name": n.name,
                "allocatable": {"cpu": n.cpu, "memory": n.memory, "pods": n.pods},
                "requested": {"cpu": n.used.cpu, "memory": n.used.memory},
                "pods": n.used_pods,
            }
            for n in capacity.nodes
        ],
        "free_servers": {
            slug: {
                "fit": fits[slug],
                "cpu": requests[slug].cpu,
                "memory": requests[slug].memory,
            }
            for slug in sorted(fits)
        },
    }
