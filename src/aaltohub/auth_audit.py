"""A login's audit record: the name typed (normalized) and why it failed;
never the password.

:class:`aaltohub.auth.IdentityAuthenticatorMixin` wraps JupyterHub's
``get_authenticated_user`` in :func:`audited_login`, and its refusals call
:func:`note_refusal`, so each attempt gets one ``login`` record, whichever
part of the login said no.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable

from .audit import audit_log

#: Refusal codes -> the reason a failed login's audit record gives.
AUDIT_REASONS = {
    "wrong-password": "bad credentials",
    "missing-credentials": "bad credentials",
    "empty-password": "bad credentials",
    "ldap-unavailable": "directory unreachable",
    "directory-unavailable": "directory unreachable",
}

# The refusal code of the login being handled: audited_login sets a holder,
# note_refusal fills it (same task), the audit record reads it.
_LOGIN_ATTEMPT: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "aaltohub_login_attempt", default=None
)


def audit_reason(code: str) -> str:
    """The record's reason for a refusal code."""
    if not code:
        # The base authenticator said no, or allowed_users/blocked_users did.
        return "bad credentials or not allowed"
    return AUDIT_REASONS.get(code, code.replace("-", " "))


def note_refusal(code: str) -> None:
    """Why the login being handled (if any) is refused, for its record."""
    attempt = _LOGIN_ATTEMPT.get()
    if attempt is not None:
        attempt["reason"] = code


async def audited_login(authenticator, data, login: Awaitable):
    """Await ``login`` (JupyterHub's get_authenticated_user) and record it."""
    attempt = {"reason": ""}
    reset = _LOGIN_ATTEMPT.set(attempt)
    try:
        model = await login
    except Exception:
        record_login(authenticator, data, None, attempt["reason"] or "internal-error")
        raise
    finally:
        _LOGIN_ATTEMPT.reset(reset)
    record_login(authenticator, data, model, attempt["reason"])
    return model


def record_login(authenticator, data, model, code: str) -> None:
    """One ``login`` record: the user's name, or the name typed (normalized,
    cut to 64 characters) and the reason for ``code``."""
    if model:
        name = model.get("name", "")
    else:
        raw = (data or {}).get("username") if isinstance(data, dict) else None
        try:
            name = (
                authenticator.normalize_username(raw.strip())
                if isinstance(raw, str)
                else ""
            )
        except Exception:
            name = str(raw)
        name = name if len(name) <= 64 else name[:64] + "..."
    audit_log(authenticator.config).record(
        "login",
        actor=name,
        target=name,
        outcome="ok" if model else "failed",
        reason="" if model else audit_reason(code),
    )
