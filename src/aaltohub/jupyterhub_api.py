"""The JupyterHub internals aaltohub relies on, and nothing else.

JupyterHub has no public way to ask "who made this request" after it
finished, "was this server still starting when it was stopped", or "what
does the hub hand every spawner it builds". Each answer is a private name;
they are all here, so a JupyterHub upgrade that renames one breaks this
module, and ``tests/test_jupyterhub_api.py`` says which (against the
versions in ``.tox/py`` and the hub image's pins).
"""

from __future__ import annotations

from typing import Any

#: The request's user, set by BaseHandler.get_current_user() in prepare().
REQUEST_USER = "_jupyterhub_user"

#: True on a spawner while the hub waits for its new server to answer.
WAITING_FOR_RESPONSE = "_waiting_for_response"

#: What JupyterHub's User passes to every spawner it builds (User._new_spawner);
#: a spawner that builds spawners of its own passes them on. One is private.
PASSED_TO_SPAWNERS = (
    "proxy_spec",
    "_deprecated_db_session",
    "oauth_client_id",
    "cookie_options",
    "cookie_host_prefix_enabled",
    "trusted_alt_names",
    "internal_ssl",
    "internal_trust_bundles",
    "internal_certs_location",
    "public_url",
    "public_hub_url",
)


def request_user(handler) -> Any | None:
    """The user or service a finished request was made by, if known."""
    return getattr(handler, REQUEST_USER, None)


def waiting_for_response(spawner) -> bool:
    """True if the hub was still waiting for the server to answer."""
    return bool(getattr(spawner, WAITING_FOR_RESPONSE, False))
