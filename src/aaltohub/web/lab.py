"""aaltohub's notices in JupyterLab: announcements and the quota warning.

A Jupyter server extension for the single-user server. It answers
JupyterLab 4's own news endpoint (``/lab/api/news``), which the built-in
``@jupyterlab/apputils-extension:announcements`` plugin fetches once when
JupyterLab opens and shows as notifications (a toast, then in the
notification centre under the bell, until the user hides it). Instead of
an Atom feed from the internet it returns:

* the quota warning the spawn passed (``AALTOHUB_QUOTA_NOTICE``, the notice
  file, or ``AALTOHUB_QUOTA_PERCENT``), as a warning;
* the hub's announcements for this user and this server's course, from
  ``GET $JUPYTERHUB_API_URL/aaltohub/announcements?server=NAME`` with the
  server's own ``JUPYTERHUB_API_TOKEN`` (no admin token): the hub decides
  which notices apply.

JupyterLab fetches news only when the ``fetchNews`` setting of
``@jupyterlab/apputils-extension:notification`` is "true"; the image sets
that default in ``overrides.d`` (a user may still turn it off).

This file has no aaltohub imports: the notebook image (built from the
repository root) installs this very file as the top-level module
``aaltohub_lab``, without the aaltohub package. Enable it with
``{"ServerApp": {"jpserver_extensions": {"aaltohub_lab": true}}}``. Its
handler is added before JupyterLab's (extensions load in name order, and
"aaltohub" sorts first), so tornado routes the news path to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from urllib.parse import quote

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import httpclient, web

NEWS_PATH = "/lab/api/news"
HUB_PATH = "/aaltohub/announcements"
#: Seconds to wait for the hub; JupyterLab shows no news until we answer.
HUB_TIMEOUT = 5.0
NOTICE_LIMIT = 4000
TERMINAL_HINT = "Open a terminal to see what uses space and how to free it."


def _jupyter_server_extension_points():
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp):
    base_url = serverapp.web_app.settings.get("base_url", "/")
    serverapp.web_app.add_handlers(
        ".*$", [(url_path_join(base_url, NEWS_PATH), NoticesHandler)]
    )
    serverapp.log.info("aaltohub_lab: notices at %s", NEWS_PATH)


def notification(key: str, message: str, kind: str = "info", when=None) -> dict:
    """One entry in JupyterLab's news format (handlers/announcements.py)."""
    stamp = (when or time.time()) * 1000.0
    digest = hashlib.sha256(f"{key}\n{message}".encode()).hexdigest()[:16]
    return {
        "createdAt": stamp,
        "modifiedAt": stamp,
        "message": message,
        "type": kind,
        "link": [],
        # "news" lets JupyterLab remember a hidden one; the id changes with
        # the text, so a new warning shows again.
        "options": {"data": {"id": f"aaltohub-{key}-{digest}", "tags": ["news"]}},
    }


def quota_notice(env) -> dict | None:
    """The spawn's quota warning (same source as the terminal message).

    JupyterLab shows a notification's first 140 characters, so the message
    is the warning sentences and a pointer to the terminal, which prints
    the notice file's whole text (the site's help) at login."""
    warning = ""
    path = env.get("AALTOHUB_QUOTA_NOTICE", "")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(NOTICE_LIMIT).strip()
        except OSError:
            text = ""
        # QuotaHook's file: the warning paragraphs, then the help paragraph.
        paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
        warning = " ".join(paragraphs[:-1] if len(paragraphs) > 1 else paragraphs)
    percent = env.get("AALTOHUB_QUOTA_PERCENT", "")
    if not warning and percent.isdigit():
        warning = f"Your home directory is {percent} % full."
    if not warning:
        return None
    message = f"{warning} {TERMINAL_HINT}"
    over = percent.isdigit() and int(percent) >= 100
    return notification("quota", message, "error" if over else "warning")


async def hub_notices(env, log) -> list[dict]:
    """This server's announcements, asked of the hub; [] if it cannot say."""
    api, token = env.get("JUPYTERHUB_API_URL", ""), env.get("JUPYTERHUB_API_TOKEN")
    if not api or not token:
        return []
    server = quote(env.get("JUPYTERHUB_SERVER_NAME", ""), safe="")
    url = f"{api.rstrip('/')}{HUB_PATH}?server={server}"
    try:
        response = await httpclient.AsyncHTTPClient().fetch(
            url,
            headers={"Authorization": f"token {token}"},
            request_timeout=HUB_TIMEOUT,
            connect_timeout=HUB_TIMEOUT,
        )
        items = json.loads(response.body)["announcements"]
    except Exception as e:  # no notices is better than a broken JupyterLab
        log.warning("aaltohub_lab: no announcements from the hub: %r", e)
        return []
    out = []
    for item in items:
        text = str(item.get("text", ""))
        course = str(item.get("course", ""))
        if text:
            message = f"{course}: {text}" if course else text
            out.append(notification(f"announcement-{item.get('id', '')}", message))
    return out


class NoticesHandler(APIHandler):
    """JupyterLab's news: the quota warning, then the hub's announcements."""

    @web.authenticated
    async def get(self):
        env = dict(os.environ)
        quota = await asyncio.to_thread(quota_notice, env)
        news = ([quota] if quota else []) + await hub_notices(env, self.log)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"news": news}))
