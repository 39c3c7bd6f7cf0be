"""Kubernetes API errors, in words: what the user reads when the hub could
not talk to the cluster, and the detail that goes to the hub log.

Pure: takes the exception and what the hub was doing, returns a
:class:`~aaltohub.kube.failures.Failure` (the texts are in
``failures.TEXTS``).
"""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
from kubernetes_asyncio.client.rest import ApiException

from .failures import Failure, clip, failure

_FORBIDDEN = re.compile(
    r'User "(?P<user>[^"]+)" cannot (?P<verb>\S+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "[^"]*")?(?: in the namespace "(?P<ns>[^"]+)")?'
)


def explain_api_error(
    exc: BaseException, *, verb: str, resource: str, namespace: str, server: str = ""
) -> Failure | None:
    """A Kubernetes API call that failed, in words (and the detail for the
    log), or None if ``exc`` is not about the API."""
    doing = f"{verb} {resource} in namespace {namespace}"
    where = f"Kubernetes API server {server or '(configured host)'}"
    if isinstance(exc, ApiException):
        return _api_status(exc, doing)
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError):
        detail = f"{where} unreachable while trying to {doing}: {exc!r}"
        return failure("api-unreachable", detail)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        detail = f"{where} did not answer in time while trying to {doing}: {exc!r}"
        return failure("api-timeout", detail)
    return None


def _api_status(exc: ApiException, doing: str) -> Failure:
    status = exc.status or 0
    body = _status_body(exc.body)
    said = body.get("message") or exc.reason or ""
    causes = [
        f"{c.get('field', '')}: {c.get('message', '')}".strip(": ")
        for c in (body.get("details") or {}).get("causes") or []
    ]
    detail = f"Kubernetes API answered {status} {exc.reason} to {doing}: {said}"
    detail += " | causes: " + "; ".join(causes) if causes else ""
    after = clip(re.split(r"forbidden: |exceeded quota: ", said)[-1], 200)
    if status == 401:
        return failure("api-unauthorized", detail)
    if status == 403 and "exceeded quota" in said:
        return failure("api-quota", detail, said=after)
    if status == 403 and ("PodSecurity" in said or "admission webhook" in said):
        return failure("api-policy", detail, said=after)
    if status == 403:
        return failure("api-forbidden", detail, **_forbidden(said, doing))
    if status == 409:
        return failure("api-conflict", detail)
    if status in (400, 422):
        return failure("api-invalid", detail, why="; ".join(causes) or clip(said))
    if status == 404:
        return failure("api-not-found", detail, said=clip(said, 160))
    return failure("api-server", detail, code=f"{status} {exc.reason}".strip())


def _forbidden(said: str, doing: str) -> dict:
    """Who may not do what, from the API server's 403 message."""
    found = _FORBIDDEN.search(said)
    if not found:
        return {"who": "the hub's service account", "doing": doing}
    user = found["user"]
    if user.startswith("system:serviceaccount:"):
        user = "service account " + user.split(":", 2)[2].replace(":", "/")
    where = f" in namespace {found['ns']}" if found["ns"] else " in the cluster"
    return {"who": user, "doing": f"{found['verb']} {found['resource']}{where}"}


def stale_pod_failure(namespace: str, name: str, error: BaseException) -> Failure:
    """KubeSpawner met a pod of the same name (409 Conflict), deleted it,
    and it did not go away in time."""
    detail = (
        f"pod {namespace}/{name}: 409 Conflict on create; KubeSpawner deleted the"
        f" existing pod and retried, but it did not go away: {error!r} (check the"
        " pod's finalizers and its node)"
    )
    return failure("api-stale", detail)


def _status_body(body) -> dict:
    """The Kubernetes Status object of an error response, if there is one."""
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else body
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
