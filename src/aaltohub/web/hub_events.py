"""The hub's requests in the audit log: request ids, logouts, admin actions.

``configure(c)`` in jupyterhub_config.py installs two tornado hooks through
``c.JupyterHub.tornado_settings`` (JupyterHub has no other per-request
hook a library can add):

- an output *transform*, which tornado makes for every request before the
  handler runs: it starts the request's :class:`~aaltohub.audit.RequestContext`
  (``request_id``: a new id of the hub's own, after the incoming
  ``X-Request-Id`` if that is a plain token: ``<incoming>.<ours>``) and
  echoes the id in the response's ``X-Request-Id``;
- a *log function* around JupyterHub's own (``jupyterhub.log.log_request``,
  still called first, so the hub's log and its request metrics are
  unchanged), which runs when a request is finished and the requester is
  known. It records ``logout``, and ``admin-api`` for each POST, PUT, PATCH
  or DELETE to the hub's REST API by an admin or a service (the method and
  path, never the query string or body: they can hold tokens), and tells
  waiting work who asked: a server stopped by one of
  ``AuditLog.cull_services`` is recorded as ``cull``.

Logins, spawns, starts and stops are recorded without these hooks too,
but then have no ``request_id``, and culls are recorded as ``server-stop``.

Why the incoming id is never the whole id: the hub cannot tell an id that
an ingress made from one the browser sent. configurable-http-proxy passes
a client's ``X-Request-Id`` through, and so does ingress-nginx (it makes
one only when none came), and JupyterHub's ``xheaders`` and
``trusted_downstream_ips`` vouch for the client's address, not for other
headers. Used as is, a user could give their requests the id of someone
else's and muddle the log's correlation. Keeping the incoming id as a
prefix still finds the request in the ingress's log; our own suffix makes
the id unique to this request in the hub's.
"""

from __future__ import annotations

import re
import uuid

from jupyterhub.handlers.login import LogoutHandler
from jupyterhub.log import log_request
from tornado.web import GZipContentEncoding, OutputTransform

from ..audit import audit_log, begin_request
from ..jupyterhub_api import request_user

#: A request id from the proxy is used only if it is a plain token.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")
CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Not actions: an admin's own server reports its activity every few minutes.
ROUTINE = ("/activity",)
# The attribute under which the request keeps its context (for the log
# function, which may run outside the handler's task).
_CONTEXT = "aaltohub_audit_context"


class RequestContextTransform(OutputTransform):
    """Starts each request's audit context; answers with its id."""

    def __init__(self, request):
        super().__init__(request)
        context = begin_request(request_id(request.headers.get("X-Request-Id", "")))
        setattr(request, _CONTEXT, context)
        self.request_id = context.request_id

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        headers["X-Request-Id"] = self.request_id
        return status_code, headers, chunk


def request_id(given: str) -> str:
    """This request's id: ours, after ``given`` (the incoming header) if it
    is a plain token. Never ``given`` alone (see the module's docstring)."""
    ours = uuid.uuid4().hex
    return f"{given}.{ours}" if REQUEST_ID.fullmatch(given) else ours


def requester(handler) -> tuple[str, bool, bool]:
    """(name, is a service, is an admin) of a finished request, or ("",...)."""
    user = request_user(handler)
    if user is None and isinstance(handler, LogoutHandler):
        # The logout page forgets its user before it renders; the request's
        # login cookie still says who it was (one lookup, logouts only).
        user = handler.get_current_user_cookie()
    if user is None:
        return "", False, False
    kind = getattr(user, "kind", "user")
    return str(user.name), kind == "service", bool(getattr(user, "admin", False))


def make_log_function(previous=log_request):
    """A tornado log_function: ``previous`` (JupyterHub's), then the records."""

    def log_function(handler):
        previous(handler)
        # The hub's own config object: the AuditLog its spawners and
        # authenticator write to (one writer per file).
        audit = audit_log(handler.settings.get("config"))
        try:
            _record(audit, handler)
        except Exception:  # an audit failure must not break a request
            audit.log.exception("audit: could not record a request")

    return log_function


def _record(audit, handler) -> None:
    request = handler.request
    context = getattr(request, _CONTEXT, None)
    name, is_service, is_admin = requester(handler)
    status = handler.get_status()
    outcome = "ok" if status < 400 else "failed"
    ids = {"request_id": context.request_id} if context is not None else {}
    path = request.path
    if isinstance(handler, LogoutHandler) and name and status < 400:
        audit.record("logout", actor=name, target=name, **ids)
    elif (
        request.method in CHANGING
        and "/hub/api/" in path
        and (is_service or is_admin)
        and not path.rstrip("/").endswith(ROUTINE)
    ):
        audit.record(
            "admin-api",
            actor=name,
            target=f"{request.method} {path}",
            outcome=outcome,
            reason=f"HTTP {status}",
            **ids,
        )
    if context is not None:
        context.finish(name, is_service)


def configure(c) -> None:
    """Install the request hooks in a hub config (keeps other settings).

    Call it after any ``c.JupyterHub.tornado_settings = {...}``, which would
    replace what this adds.
    """
    hub = c.JupyterHub
    settings = dict(hub.tornado_settings) if "tornado_settings" in hub else {}
    transforms = list(settings.get("transforms") or [])
    if not transforms and (settings.get("compress_response") or settings.get("gzip")):
        transforms.append(GZipContentEncoding)  # what tornado adds by default
    if RequestContextTransform not in transforms:
        transforms.insert(0, RequestContextTransform)
    settings["transforms"] = transforms
    previous = settings.get("log_function") or log_request
    if not getattr(previous, "aaltohub_audit", False):
        log_function = make_log_function(previous)
        log_function.aaltohub_audit = True
        settings["log_function"] = log_function
    hub.tornado_settings = settings
