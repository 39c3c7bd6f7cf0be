"""Why a server failed to start, in plain words for the user and in detail
for the admin log.

Pure, like kubespawner's ``objects.py``: no I/O. ``CourseSpawner`` hands in
what KubeSpawner's reflectors saw (the pod and its events), the log lines it
fetched, and the exceptions the Kubernetes client raised; this module
answers with a :class:`Failure`, or ``None`` while the start may still
succeed. Every text the user can see is in :data:`TEXTS`.

The fail-fast rule (docs/kubernetes.md, "When a spawn fails"):

* fatal at first sight: image not found, pull denied, an invalid image name;
  a crash loop or a container that exited (OOM kills included); a container
  Kubernetes could not create (CreateContainerConfigError and kin); a failed
  mount (FailedMount); a missing storage claim; a pod the cluster failed
  (Evicted …); FailedScheduling after the autoscaler's NotTriggerScaleUp;
* transient, fatal once it has lasted a grace period (:class:`StartWatch`):
  FailedScheduling with no autoscaler adding a node, an image pull failing
  with a network or rate-limit error, an NFS mount timing out;
* never a failure: ContainerCreating, an image pull in progress,
  FailedScheduling after TriggeredScaleUp (only ``start_timeout`` applies),
  and the harmless FailedMount "… not registered".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date

USER_LOG_LINES = 5  # log lines shown to the user …
ADMIN_LOG_LINES = 20  # … and kept in the admin log

SETTINGS = (
    "This is a problem in the server's settings, not on your side: please tell"
    " the course staff or the JupyterHub administrators."
)
ADMINS = "You cannot fix this yourself: please tell the JupyterHub administrators."
LATER = (
    "Please try again in a few minutes; if it keeps happening, tell the"
    " JupyterHub administrators."
)

#: cause -> what the user reads; {fields} come from the diagnosis.
TEXTS = {
    "image": "Your server could not start: its software image {image} could not"
    " be downloaded: {what}. {advice}",
    "crash": "Your server stopped right after starting (exit code {code}{again})."
    " A recent change in your home directory can cause this (packages in"
    " ~/.local, an edited ~/.jupyter configuration); otherwise please tell the"
    " course staff or the JupyterHub administrators.",
    "init": "A preparation step of your server ({name}) failed (exit code {code}"
    "{again}). " + SETTINGS,
    "oom": "Your server ran out of memory while starting{limit} and was stopped."
    " Try again; if it happens again, choose a profile with more memory or tell"
    " the course staff.",
    "config": "Your server could not be created: Kubernetes could not prepare its"
    " container ({said}). " + SETTINGS,
    "evicted": "The cluster stopped your server before it was ready ({said}). " + LATER,
    "mount": "Your server's storage could not be attached: {what}. {advice}",
    "no-room": "There is no room for your server in the cluster right now{parts}."
    "{asks} Please try again in a few minutes, or choose a smaller profile if there"
    " is one.",
    "no-node": "No node in the cluster can run your server: {parts}{selector}. "
    + ADMINS,
    "no-claim": "Your server's storage (claim {claim}) does not exist. " + ADMINS,
    "api-unreachable": "The hub cannot reach the Kubernetes cluster that runs the"
    " servers, so your server was not started. " + LATER,
    "api-timeout": "The Kubernetes cluster did not answer the hub in time. " + LATER,
    "api-unauthorized": "The hub may not start servers right now: Kubernetes did"
    " not accept its credentials (401 Unauthorized). " + ADMINS,
    "api-forbidden": "The hub is not allowed to start servers: Kubernetes refused"
    " to let {who} {doing} (403 Forbidden). " + ADMINS,
    "api-policy": "The cluster's security policy refused your server ({said}). "
    + ADMINS,
    "api-quota": "The cluster's resource quota is used up ({said}). Please try"
    " again when other servers have stopped, or choose a smaller profile.",
    "api-conflict": "Your server could not be created: a pod of the same name"
    " exists and could not be replaced. " + LATER,
    "api-stale": "A server of yours from an earlier start is still shutting down,"
    " so a new one cannot start yet. " + LATER,
    "api-invalid": "Kubernetes refused your server's settings as invalid: {why}. "
    + SETTINGS,
    "api-not-found": "Kubernetes could not find what the hub needs ({said}). " + ADMINS,
    "api-server": "The Kubernetes cluster had an internal error ({code}) and did"
    " not start your server. " + LATER,
}
#: Causes that may clear by themselves: HTTP 503 rather than 500.
LATER_CAUSES = {"evicted", "no-room", "api-unreachable", "api-timeout", "api-quota"}
LATER_CAUSES |= {"api-conflict", "api-stale", "api-server"}

IMAGE_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName"}
IMAGE_REASONS |= {"ErrImageNeverPull"}
CREATE_REASONS = {"CreateContainerConfigError", "CreateContainerError"}
CREATE_REASONS |= {"RunContainerError", "PreStartHookError", "PostStartHookError"}
PULL_NOT_FOUND = ("not found", "manifest unknown", "does not exist")
PULL_DENIED = ("denied", "unauthorized", "forbidden", "authentication required")
PULL_TRANSIENT = ("timeout", "timed out", "too many requests", "toomanyrequests")
PULL_TRANSIENT += ("connection refused", "connection reset", "service unavailable")
# kubelet's own pull rate limit: a whole class starting at once hits it.
PULL_TRANSIENT += ("qps exceeded", "context deadline exceeded")
#: A container runtime under load says this; it usually clears by itself.
RUNTIME_TRANSIENT = ("context deadline exceeded", "deadline exceeded")
SCALE_UP = {"TriggeredScaleUp", "Nominated"}  # cluster-autoscaler, Karpenter


@dataclass(frozen=True)
class Failure:
    """A start that failed for good (or, ``transient``, may still clear)."""

    cause: str  # a key of TEXTS
    message: str  # for the user: what happened, what to do
    detail: str  # for the admin log
    status: int = 500  # the HTTP status JupyterHub reports
    transient: bool = False
    log_container: str = ""  # whose log would explain it …
    log_previous: bool = False  # … from its previous run (a crash loop)

    def with_log(self, text: str) -> Failure:
        """The same failure with the last lines the container printed."""
        lines = [line for line in (text or "").splitlines() if line.strip()]
        if not lines:
            return self
        shown = "\n".join("  " + clip(line) for line in lines[-USER_LOG_LINES:])
        kept = "\n".join(lines[-ADMIN_LOG_LINES:])
        return replace(
            self,
            message=f"{self.message}\nThe last lines it printed:\n{shown}",
            detail=f"{self.detail}\nlast log lines:\n{kept}",
        )


def failure(cause: str, detail: str, transient=False, log=("", False), **fields):
    """The Failure of ``cause``, its user text filled in from ``fields``."""
    later = cause in LATER_CAUSES or transient
    return Failure(
        cause,
        TEXTS[cause].format(**fields),
        detail,
        503 if later else 500,
        transient,
        *log,
    )


def as_dict(obj):
    """A Kubernetes object as the API's JSON (camelCase keys): reflectors
    hold dicts, the client returns V1 models."""
    if hasattr(obj, "openapi_types") and hasattr(obj, "attribute_map"):
        return {
            obj.attribute_map[key]: as_dict(getattr(obj, key))
            for key in obj.openapi_types
            if getattr(obj, key) is not None
        }
    if isinstance(obj, dict):
        return {key: as_dict(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [as_dict(value) for value in obj]
    return obj.isoformat() if isinstance(obj, date) else obj


class StartWatch:
    """Successive looks at one starting pod: a transient problem becomes a
    failure once it has lasted ``grace`` seconds. ``now`` is the caller's
    monotonic clock, so the API server's clock does not matter."""

    def __init__(self, grace: float):
        self.grace = grace
        self._since: float | None = None

    def check(self, pod, events, now: float) -> Failure | None:
        found = diagnose(pod, events)
        if found is None or not found.transient:
            self._since = None
            return found
        if self._since is None:
            self._since = now
        return found if now - self._since >= self.grace else None


def diagnose(pod, events=()) -> Failure | None:
    """What went wrong with a starting pod, judging by its status and its
    events (oldest first), or None if nothing has (yet)."""
    pod = as_dict(pod) or {}
    events = [as_dict(e) for e in events]
    for check in (_containers, _pod_phase, _mounts, _scheduling):
        found = check(pod, events)
        if found is not None:
            return found
    return None


# --- containers --------------------------------------------------------------------
def _containers(pod: dict, events: list) -> Failure | None:
    status = pod.get("status") or {}
    for key, init in (("initContainerStatuses", True), ("containerStatuses", False)):
        for cs in status.get(key) or []:
            state = cs.get("state") or {}
            waiting = state.get("waiting") or {}
            reason, said = waiting.get("reason", ""), waiting.get("message", "")
            detail = f"{_ref(pod)}: container {cs.get('name')} {reason}: {said}"
            if reason in IMAGE_REASONS:
                return _image(pod, cs, reason, said, events)
            if reason == "CrashLoopBackOff":
                last = (cs.get("lastState") or {}).get("terminated") or {}
                return _exited(pod, cs, last, init, previous=True)
            if reason in CREATE_REASONS:
                transient = any(t in said.lower() for t in RUNTIME_TRANSIENT)
                return failure(
                    "config", detail, transient, said=clip(said, 160) or reason
                )
            ended = state.get("terminated")
            if ended and not (init and ended.get("exitCode") == 0):
                return _exited(pod, cs, ended, init, previous=False)
    return None


def _image(pod, cs, reason: str, said: str, events: list) -> Failure:
    image = _spec(pod, cs.get("name")).get("image") or cs.get("image", "")
    pulls = [e.get("message", "") for e in events if e.get("reason") == "Failed"]
    text = " ".join([said, *pulls]).lower()
    transient = False
    if reason == "InvalidImageName":
        what = "its name is not a valid image name"
    elif reason == "ErrImageNeverPull":
        what = "it is not on the node and the pull policy forbids downloading it"
    elif any(w in text for w in PULL_NOT_FOUND):
        what = "it does not exist in the registry"
    elif any(w in text for w in PULL_DENIED):
        what = "the registry refused access to it"
    elif any(w in text for w in PULL_TRANSIENT):
        what, transient = "the registry did not answer or limited downloads", True
    else:
        what = f"Kubernetes said: {clip(pulls[-1] if pulls else said, 160)}"
    detail = f"{_ref(pod)}: container {cs.get('name')} {reason} for image {image!r}"
    return failure(
        "image",
        f"{detail}: {' | '.join(m for m in [said, *pulls] if m)}",
        transient,
        image=image,
        what=what,
        advice=LATER if transient else SETTINGS,
    )


def _exited(pod, cs, ended: dict, init: bool, previous: bool) -> Failure:
    name = cs.get("name", "")
    code, why = ended.get("exitCode"), ended.get("reason") or "no reason"
    code = "unknown" if code is None else code
    restarts = cs.get("restartCount", 0)
    detail = (
        f"{_ref(pod)}: {'init ' * init}container {name} terminated ({why}, exit"
        f" code {code}, {restarts} restarts) {ended.get('message', '')}"
    )
    log = (name, previous)
    if why == "OOMKilled":
        limit = _memory((_spec(pod, name).get("resources") or {}).get("limits"))
        limit = f" (its limit is {limit})" if limit else ""
        return failure("oom", detail, log=log, limit=limit)
    again = f", restarted {restarts} times" if restarts else ""
    cause = "init" if init else "crash"
    return failure(cause, detail, log=log, name=name, code=code, again=again)


def _pod_phase(pod: dict, events: list) -> Failure | None:
    status = pod.get("status") or {}
    if status.get("phase") not in ("Failed", "Succeeded"):
        return None
    why, said = status.get("reason") or status["phase"], status.get("message", "")
    detail = f"{_ref(pod)}: phase {status['phase']} during start: {why}: {said}"
    if status["phase"] == "Succeeded":  # the server exited with code 0
        return failure("crash", detail, code=0, again="")
    return failure("evicted", detail, said=clip(f"{why}: {said}".strip(": "), 160))


# --- volumes -----------------------------------------------------------------------
_NFS = re.compile(r"(?:mounting|nfs)\s+([\w.-]+|\[[0-9a-fA-F:]+\]):(/[^\s'\"]*)")


def mount_problem(message: str) -> tuple[str, bool]:
    """(plain words, transient) for the message of a FailedMount event."""
    nfs = _NFS.search(message)
    server, path = nfs.groups() if nfs else ("", "the directory")
    at = f"file server {server}" if server else "the file server"
    low = message.lower()
    missing = re.search(r'(\w+) "([^"]+)" not found', message)
    if "access denied" in low or "permission denied" in low:
        return f"{at} refused access to {path}", False
    if "no such file or directory" in low:
        return f"{path} does not exist on {at}", False
    if "timed out" in low:
        # mount.nfs timing out, or kubelet's "Unable to attach or mount
        # volumes ... timed out waiting for the condition": slow, not broken.
        return f"{at} did not answer when mounting {path}", True
    if missing:
        return f"the {missing[1]} {missing[2]} it needs does not exist", False
    volume = re.search(r'volume "([^"]+)"', message)
    name = f" {volume[1]}" if volume else ""
    return f"volume{name} could not be mounted ({clip(message, 120)})", False


def _mounts(pod: dict, events: list) -> Failure | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if any("waiting" not in (cs.get("state") or {"waiting": 1}) for cs in statuses):
        return None  # past mounting
    event = _last(events, {"FailedMount"})
    said = (event or {}).get("message", "")
    if event is None or "not registered" in said:
        return None  # a kubelet cache race after restarts; it clears itself
    if _after(events, event, {"Pulling", "Pulled", "Created", "Started"}):
        return None  # mounted since: the kubelet moved on to the image
    what, transient = mount_problem(said)
    advice = LATER if transient else ADMINS
    detail = f"{_ref(pod)}: FailedMount: {said}"
    return failure("mount", detail, transient, what=what, advice=advice)


# --- scheduling --------------------------------------------------------------------
_NODES = re.compile(r"(\d+)/(\d+) nodes are available:\s*(.*?)(?:\s*preemption:|$)")


def node_reasons(message: str) -> tuple[int, list[tuple[int, str, bool]]]:
    """Parse "0/3 nodes are available: 2 Insufficient memory, 1 node(s)
    didn't match Pod's node affinity/selector." into (3, [(2, "not enough
    free memory", True), (1, …, False)]): count, plain words, and whether
    waiting can help."""
    found = _NODES.search(" ".join(message.split()))
    if not found:
        return 0, []
    reasons = []
    for part in re.split(r",\s*(?=\d+ )", found[3].strip().rstrip(".")):
        count, _, said = part.strip().partition(" ")
        if count.isdigit():
            reasons.append((int(count), *_node_reason(said.rstrip("."))))
    return int(found[2]), reasons


def _node_reason(said: str) -> tuple[str, bool]:
    taint = re.search(r"taint \{([^}]*)\}", said)
    if said.startswith("Insufficient "):
        resource = said.removeprefix("Insufficient ")
        return f"have not enough free {'CPU' if resource == 'cpu' else resource}", True
    if "Too many pods" in said:
        return "already run as many pods as they can", True
    if "affinity/selector" in said or "node selector" in said:
        return "do not match the server's node selector", False
    if taint:
        return f"are reserved for other work (taint {taint[1]})", False
    if "unschedulable" in said:
        return "are closed for new servers (cordoned)", True
    if "volume node affinity conflict" in said:
        return "cannot reach the server's storage volume", False
    return said, True


def _scheduling(pod: dict, events: list) -> Failure | None:
    event = _last(events, {"FailedScheduling"})
    if event is None or _scheduled(pod):
        return None
    said = event.get("message", "")
    autoscaler = _last(events, SCALE_UP | {"NotTriggerScaleUp"}) or {}
    if autoscaler.get("reason") in SCALE_UP:
        return None  # a node is being added: only start_timeout applies
    detail = f"{_ref(pod)}: FailedScheduling: {said}"
    claim = re.search(r'persistentvolumeclaim "([^"]+)" not found', said)
    if claim:
        return failure("no-claim", detail, claim=claim[1])
    no_scale_up = autoscaler.get("message", "")
    if no_scale_up:
        detail += f" | NotTriggerScaleUp: {no_scale_up}"
    total, reasons = node_reasons(said)
    parts = ", ".join(f"{n} of {total} nodes {words}" for n, words, _ in reasons)
    if not reasons or any(helps for _, _, helps in reasons):
        parts = f": {parts}" if parts else ""
        if no_scale_up:
            parts += ", and the cluster cannot add a node for it"
        asks = _requests(pod)
        return failure("no-room", detail, not no_scale_up, parts=parts, asks=asks)
    selector = ", ".join(f"{k}={v}" for k, v in _node_selector(pod).items())
    selector = f" (it asks for {selector})" if selector else ""
    return failure("no-node", detail, not no_scale_up, parts=parts, selector=selector)


# --- small readers -------------------------------------------------------------------
def _ref(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    return f"pod {meta.get('namespace', '')}/{meta.get('name', '')}"


def _spec(pod: dict, name) -> dict:
    spec = pod.get("spec") or {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if c.get("name") == name:
            return c
    return {}


def _scheduled(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    placed = [c for c in conditions if c.get("type") == "PodScheduled"]
    if placed and placed[-1].get("status") == "True":
        return True
    return bool((pod.get("spec") or {}).get("nodeName"))


def _node_selector(pod: dict) -> dict:
    return (pod.get("spec") or {}).get("nodeSelector") or {}


def _requests(pod: dict) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    main = _spec(pod, "notebook") or containers[0]
    resources = main.get("resources") or {}
    # Kubernetes requests a container's limits when it sets no requests.
    asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    asks = [f"{_memory(asked)} of memory"] if asked.get("memory") else []
    asks += [f"{asked['cpu']} CPU"] if asked.get("cpu") else []
    return f" It asks for {' and '.join(asks)}." if asks else ""


def _memory(resources) -> str:
    value = (resources or {}).get("memory")
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        return f"{int(value) / 1024**3:g} GiB"
    return str(value or "")


def _after(events: list, event: dict, reasons: set) -> bool:
    """Whether an event of ``reasons`` came after ``event`` (events are in
    the order the reflector saw them)."""
    later = events[events.index(event) + 1 :] if event in events else []
    return any(e.get("reason") in reasons for e in later)


def _last(events: list, reasons: set) -> dict | None:
    found = [e for e in events if e.get("reason") in reasons]
    return found[-1] if found else None


def clip(text, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
