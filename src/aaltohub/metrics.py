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
