"""The hub's REST API, as the CLI uses it: list users, stop servers.

A token and the API URL are read as a hub service reads them
(``JUPYTERHUB_API_URL``, ``JUPYTERHUB_API_TOKEN``) unless ``--hub-url`` /
``--hub-token-file`` are given. Every request has a timeout. The scopes a
token needs: ``list:users``, ``read:users:activity``, ``read:servers``
(``users inactive``) and ``delete:servers`` (``course end-term``); see
docs/term-lifecycle.md for a service definition.

Why the API and not the hub's database: the API is the hub's supported
interface, the same for SQLite and PostgreSQL and across JupyterHub
versions, needs no database credentials on an admin host, and sees what
the running hub sees (a database read could race the hub's own writes and
miss activity it has not flushed).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime

from ..course import parse_profile_slug

PAGE = 200


class HubError(Exception):
    """The hub could not be asked; str() names what to check."""


class HubAPI:
    def __init__(self, url: str | None, token: str | None, timeout: float = 10.0):
        url = url or os.environ.get("JUPYTERHUB_API_URL", "")
        token = token or os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not url or not token:
            raise HubError(
                "no hub API: pass --hub-url (e.g. http://hub:8081/hub/api) and a"
                " token (--hub-token-file, or JUPYTERHUB_API_URL and"
                " JUPYTERHUB_API_TOKEN as for a hub service)"
            )
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise HubError(f"hub URL {url!r}: use http:// or https://")
        self.url = url.rstrip("/")
        if not self.url.endswith("/hub/api"):
            self.url += "/hub/api"
        self.token = token
        self.timeout = timeout

    def _call(self, method: str, path: str, accept: str = "application/json"):
        request = urllib.request.Request(  # noqa: S310 (http/https only, above)
            self.url + path,
            method=method,
            headers={"Authorization": f"token {self.token}", "Accept": accept},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body = response.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode(errors="replace")
            raise HubError(
                f"{method} {path}: HTTP {e.code} {detail}; check the token's scopes"
                " (list:users, read:users:activity, read:servers, delete:servers)"
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise HubError(f"{method} {self.url}{path}: {e}") from None
        return json.loads(body) if body else None

    def users(self, state: str = "") -> list[dict]:
        """Every user model, page by page."""
        out, offset = [], 0
        while True:
            query = {"limit": PAGE, "offset": offset}
            if state:
                query["state"] = state
            page = self._call(
                "GET",
                "/users?" + urllib.parse.urlencode(query),
                accept="application/jupyterhub-pagination+json",
            )
            if isinstance(page, list):  # a hub without pagination
                return page
            out.extend(page.get("items", []))
            following = (page.get("_pagination") or {}).get("next")
            if not following:
                return out
            offset = following["offset"]

    def last_activity(self) -> dict[str, datetime | None]:
        return {u["name"]: parse_time(u.get("last_activity")) for u in self.users()}

    def course_servers(self, slug: str) -> list[tuple[str, str]]:
        """(user, server name) of every running or starting server of a course."""
        out = []
        for user in self.users(state="active"):
            for name, server in (user.get("servers") or {}).items():
                profile = (server.get("user_options") or {}).get("profile") or ""
                if profile and parse_profile_slug(profile)[0] == slug:
                    out.append((user["name"], name))
        return sorted(out)

    def stop(self, user: str, server: str) -> None:
        quoted = urllib.parse.quote(user, safe="")
        path = f"/users/{quoted}/server"
        if server:
            path = f"/users/{quoted}/servers/{urllib.parse.quote(server, safe='')}"
        self._call("DELETE", path)


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def hub_from_args(args) -> HubAPI:
    token = None
    if getattr(args, "hub_token_file", None):
        try:
            with open(args.hub_token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as e:
            raise HubError(f"--hub-token-file: {e}") from None
    return HubAPI(args.hub_url, token, getattr(args, "hub_timeout", 10.0))


def add_hub_options(parser) -> None:
    parser.add_argument(
        "--hub-url",
        metavar="URL",
        help="the hub's API, e.g. http://hub:8081/hub/api (default:"
        " $JUPYTERHUB_API_URL)",
    )
    parser.add_argument(
        "--hub-token-file",
        metavar="FILE",
        help="file holding an API token (default: $JUPYTERHUB_API_TOKEN); never"
        " put a token on the command line",
    )
    parser.add_argument(
        "--hub-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="timeout of each API request (default: 10)",
    )
