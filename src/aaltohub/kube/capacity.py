"""How much room the user nodes have, and how many more servers fit.

Pure computation over the API's objects as plain dicts (nodes, pods);
``capacity_monitor`` reads them from the Kubernetes API and sets the
metrics. Kept apart as kubespawner keeps ``objects.py`` apart from
``spawner.py``: everything here is testable without a cluster.

The scheduler places a pod on *one* node, so "how many more fit" is counted
per node (what is left on each node, divided by one server's requests,
rounded down) and summed; the cluster-wide free total would overstate it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ..course_values import MEM_RE, memory_bytes

#: Pods in these phases hold no resources on their node any more.
DONE_PHASES = frozenset({"Succeeded", "Failed"})

#: z2jh's labels: user servers, and the placeholders its user-scheduler
#: runs to keep room warm. Placeholders are preempted by any user server,
#: so their requests count as free room.
USER_POD_LABELS = {"component": "singleuser-server"}
PLACEHOLDER_LABELS = {"component": "user-placeholder"}

_QUANTITY = re.compile(
    r"^(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<exponent>[eE][+-]?[0-9]+)|(?P<suffix>[KMGTPE]i|[numkMGTPE]))?$"
)
_SUFFIXES = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    **{
        s: Decimal(1024) ** (i + 1)
        for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))
    },
}


def parse_quantity(text) -> float:
    """A Kubernetes resource quantity (``"3920m"``, ``"15Gi"``, ``"1.5"``,
    ``"128974848"``, ``"129e6"``, ``"12k"``) as a float: cores for cpu,
    bytes for memory. Note the API's decimal ``M``/``G`` are powers of
    1000 and ``Mi``/``Gi`` powers of 1024."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    try:
        number = Decimal(match["number"])
    except InvalidOperation as e:  # pragma: no cover (the pattern rules it out)
        raise ValueError(f"not a Kubernetes quantity: {text!r}") from e
    if match["exponent"]:  # "1E3" is 1000; "1E" alone is exa
        factor = Decimal(10) ** int(match["exponent"][1:])
    else:
        factor = _SUFFIXES[match["suffix"] or ""]
    value = float(number * factor)
    return -value if match["sign"] == "-" else value


def spawner_bytes(value) -> float:
    """A memory size as JupyterHub's ``ByteSpecification`` (and so
    KubeSpawner's ``mem_guarantee``) reads it, by the one rule course files
    are checked with (:func:`aaltohub.course_values.memory_bytes`): ``K``,
    ``M``, ``G``, ``T`` are powers of 1024, unlike the API's. None is 0."""
    if value is None:
        return 0.0
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if not MEM_RE.fullmatch(text):
        raise ValueError(f"not a memory size: {value!r}")
    return float(memory_bytes(text))


#: KubeSpawner's resource traits, as ``course.Resources`` names them.
RESOURCE_KEYS = ("cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee")


@dataclass(frozen=True)
class Request:
    """What one server asks of a node (cores, bytes)."""

    cpu: float = 0.0
    memory: float = 0.0


def server_request(resources: Mapping) -> Request:
    """The requests a server gets from KubeSpawner's resource traits
    (``cpu_guarantee``, ``mem_guarantee``, ``cpu_limit``, ``mem_limit``):
    the guarantee, else the limit, since Kubernetes sets a container's
    request to its limit when only the limit is given."""
    cpu = resources.get("cpu_guarantee")
    if cpu is None:
        cpu = resources.get("cpu_limit")
    memory = resources.get("mem_guarantee")
    if memory is None:
        memory = resources.get("mem_limit")
    return Request(float(cpu or 0), spawner_bytes(memory))


def course_requests(
    courses: Mapping, defaults: Mapping
) -> tuple[dict[str, Request], dict[str, str]]:
    """One server's requests per course slug, for its student variant: the
    course's own ``resources.student`` over the spawner's ``defaults`` (as
    ResourcesHook does); "" is a server without a course. Also the courses
    left out, with why (a size KubeSpawner would refuse as well)."""
    out = {"": server_request(defaults)}
    problems = {}
    for slug, course in courses.items():
        values = dict(defaults)
        own = course.resources.get("student")
        for key in RESOURCE_KEYS:
            if own is not None and getattr(own, key) is not None:
                values[key] = getattr(own, key)
        try:
            out[slug] = server_request(values)
        except ValueError as e:
            problems[slug] = str(e)
    return out, problems


def pod_request(pod: Mapping) -> Request:
    """A pod's effective requests, as the scheduler counts them: the sum
    over its containers, or the largest init container if that is more,
    plus the pod's overhead."""
    spec = pod.get("spec") or {}

    def requests(container, name):
        value = ((container.get("resources") or {}).get("requests") or {}).get(name)
        return parse_quantity(value) if value is not None else 0.0

    out = {}
    for name in ("cpu", "memory"):
        main = sum(requests(c, name) for c in spec.get("containers") or [])
        init = max(
            (requests(c, name) for c in spec.get("initContainers") or []), default=0
        )
        overhead = (spec.get("overhead") or {}).get(name)
        out[name] = max(main, init) + (parse_quantity(overhead) if overhead else 0.0)
    return Request(out["cpu"], out["memory"])


def _labels(obj: Mapping) -> Mapping:
    return (obj.get("metadata") or {}).get("labels") or {}


def matches(obj: Mapping, selector: Mapping[str, str]) -> bool:
    """Equality label selector, as ``nodeSelector`` and ``-l a=b`` read it."""
    labels = _labels(obj)
    return all(labels.get(k) == v for k, v in selector.items())


@dataclass
class Node:
    """One node user servers may run on: its allocatable, and what the pods
    on it request (user servers separately, for the metric)."""

    name: str
    cpu: float
    memory: float
    pods: float
    used: Request = Request()
    used_pods: int = 0
    user: Request = Request()

    def fits(self, one: Request) -> int:
        """How many more servers of ``one``'s size fit on this node."""
        counts = [self.pods - self.used_pods]
        if one.cpu > 0:
            counts.append((self.cpu - self.used.cpu) / one.cpu)
        if one.memory > 0:
            counts.append((self.memory - self.used.memory) / one.memory)
        return max(0, math.floor(min(counts) + 1e-9))


def _usable(node: Mapping, selector: Mapping[str, str]) -> bool:
    if not matches(node, selector):
        return False
    return not (node.get("spec") or {}).get("unschedulable", False)


def build_nodes(
    nodes: Iterable[Mapping], pods: Iterable[Mapping], selector: Mapping[str, str]
) -> list[Node]:
    """The user nodes (matching ``selector``, not cordoned) with the
    requests of the pods running on them. Placeholders and finished pods
    hold nothing."""
    found: dict[str, Node] = {}
    for raw in nodes:
        if not _usable(raw, selector):
            continue
        allocatable = (raw.get("status") or {}).get("allocatable") or {}
        name = raw["metadata"]["name"]
        found[name] = Node(
            name=name,
            cpu=parse_quantity(allocatable.get("cpu", 0)),
            memory=parse_quantity(allocatable.get("memory", 0)),
            pods=parse_quantity(allocatable.get("pods", 110)),
        )
    for pod in pods:
        node = found.get((pod.get("spec") or {}).get("nodeName") or "")
        phase = (pod.get("status") or {}).get("phase")
        if node is None or phase in DONE_PHASES:
            continue
        if matches(pod, PLACEHOLDER_LABELS):
            continue
        request = pod_request(pod)
        node.used = _add(node.used, request)
        node.used_pods += 1
        if matches(pod, USER_POD_LABELS):
            node.user = _add(node.user, request)
    return list(found.values())


def _add(a: Request, b: Request) -> Request:
    return Request(a.cpu + b.cpu, a.memory + b.memory)


@dataclass(frozen=True)
class Capacity:
    """The user nodes at one moment."""

    nodes: tuple[Node, ...]

    @classmethod
    def of(cls, nodes, pods, selector) -> Capacity:
        return cls(tuple(build_nodes(nodes, pods, selector)))

    @property
    def allocatable(self) -> Request:
        return Request(
            sum(n.cpu for n in self.nodes), sum(n.memory for n in self.nodes)
        )

    @property
    def requested(self) -> Request:
        """What running user servers request (not other pods)."""
        return Request(
            sum(n.user.cpu for n in self.nodes), sum(n.user.memory for n in self.nodes)
        )

    def free_servers(self, one: Request) -> int:
        """How many more servers of this size fit now, node by node."""
        return sum(n.fits(one) for n in self.nodes)
