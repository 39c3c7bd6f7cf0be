"""Prometheus metrics for operators.

They live in prometheus_client's default registry, which JupyterHub serves
at ``/hub/metrics`` next to its own, so no extra endpoint is needed.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SPAWN_AUTHORIZATIONS = Counter(
    "aaltohub_spawn_authorizations",
    "Spawn requests by outcome of the server-side access check: refused,"
    " or planned (allowed, and the plan built), by role.",
    ["outcome", "role"],
)

IDENTITY_LOOKUPS = Histogram(
    "aaltohub_identity_lookup_seconds",
    "Directory lookups that missed the cache, by provider and outcome.",
    ["provider", "outcome"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

CATALOG_COURSES = Gauge(
    "aaltohub_catalog_courses", "Courses loaded and offered from the catalog."
)

CATALOG_ERRORS = Gauge(
    "aaltohub_catalog_errors",
    "Course or images files that failed validation (their courses are not offered).",
)

CATALOG_RELOAD_FAILURES = Counter(
    "aaltohub_catalog_reload_failures",
    "Catalog reloads that failed as a whole (the directory unreadable or"
    " timed out; the last good catalog is kept).",
)

# --- servers and spawns, per course ------------------------------------------------
# "course" is a course slug, or "" for a server without a course (the
# deployer's own profiles). "role" is student, instructor or "" likewise.

RUNNING_SERVERS = Gauge(
    "aaltohub_running_servers",
    "Servers running now, by course and role.",
    ["course", "role"],
)

PENDING_SPAWNS = Gauge(
    "aaltohub_pending_spawns",
    "Spawns started and not yet ready or failed, by course.",
    ["course"],
)

SPAWN_DURATION = Histogram(
    "aaltohub_spawn_duration_seconds",
    "Time from the spawn request to the server being ready (outcome=success)"
    " or failing (outcome=failure), by course.",
    ["course", "outcome"],
    buckets=(1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
)

#: The causes a spawn failure is counted under (``SPAWN_FAILURES``); an
#: adapter's cause outside this list is counted as "other"
#: (:func:`count_spawn_failure`).
FAILURE_CAUSES = (
    "image",
    "unschedulable",
    "mount",
    "timeout",
    "refused",
    "directory",
    "crash",
    "other",
)

SPAWN_FAILURES = Counter(
    "aaltohub_spawn_failures",
    "Spawns that did not start, by course and cause: image (pull failed),"
    " unschedulable (no room), mount (storage), timeout, refused (the access"
    " check said no), directory (the user's groups could not be looked up),"
    " crash (the server exited), other.",
    ["course", "cause"],
)


def failure_cause(cause: str) -> str:
    """``cause`` if it is one of :data:`FAILURE_CAUSES`, else "other"."""
    return cause if cause in FAILURE_CAUSES else "other"


def count_spawn_failure(course: str, cause: str) -> str:
    """Count one failure in ``SPAWN_FAILURES`` (the only place that does),
    under a declared cause; returns the cause it was counted under."""
    cause = failure_cause(cause)
    SPAWN_FAILURES.labels(course=course, cause=cause).inc()
    return cause


CULLS = Counter(
    "aaltohub_culls",
    "Servers stopped by the idle culler, by course.",
    ["course"],
)

# --- storage -----------------------------------------------------------------------

QUOTA_USERS_OVER_THRESHOLD = Gauge(
    "aaltohub_quota_users_over_threshold",
    "Users at or above the quota warning threshold in the last quota report.",
)

QUOTA_REPORT_AGE = Gauge(
    "aaltohub_quota_report_age_seconds",
    "Age of the quota report file the hub reads (its modification time).",
)

# --- the directory (LDAP) ----------------------------------------------------------

#: The ``operation`` label of the LDAP metrics: the directory calls' function
#: names without ``_sync`` (identity.calls). Users wait for the first two;
#: the others are the task keeping connections open (the alerts tell them
#: apart; tests/test_monitoring.py checks the rules name only these).
LDAP_USER_OPERATIONS = ("lookup", "check_password")
LDAP_BACKGROUND_OPERATIONS = ("open_spare", "check_kept")

LDAP_CALL_SECONDS = Histogram(
    "aaltohub_ldap_call_seconds",
    "Directory calls (bind, search), the call itself without queueing, by"
    " operation and outcome (ok, error, timeout, unavailable).",
    ["operation", "outcome"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

LDAP_ERRORS = Counter(
    "aaltohub_ldap_errors",
    "Directory calls that failed, by operation and kind (error, timeout,"
    " unavailable: refused at once while the directory is marked down).",
    ["operation", "kind"],
)

LDAP_POOL_CONNECTIONS = Gauge(
    "aaltohub_ldap_pool_connections",
    "Service connections to the directory by state (idle: open and ready;"
    " in-use), sampled every few seconds by the task keeping them open.",
    ["state"],
)

# --- capacity (read from the Kubernetes API, cached) -------------------------------

CAPACITY_ALLOCATABLE = Gauge(
    "aaltohub_capacity_allocatable",
    "Allocatable resources of the nodes user servers may run on (cpu in"
    " cores, memory in bytes).",
    ["resource"],
)

CAPACITY_REQUESTED = Gauge(
    "aaltohub_capacity_requested",
    "Resources requested by running user server pods (cpu in cores, memory in bytes).",
    ["resource"],
)

CAPACITY_FREE_SERVERS = Gauge(
    "aaltohub_capacity_free_servers",
    "How many more servers of a course fit now, by its guarantees against"
    " the nodes' free allocatable, by course.",
    ["course"],
)
