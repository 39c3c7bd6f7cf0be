"""A small client for the running demo hub: logins, tokens, servers, kernels.

Everything goes through the hub's public URL (the real proxy): the login
form, the REST API, and the user's own jupyter-server (contents API and
kernels over websocket), so commands run in the user's real environment.
"""

from __future__ import annotations

import json
import time
import uuid

import requests
import websocket


class Hub:
    def __init__(self, url: str, password: str):
        self.url = url.rstrip("/")
        self.password = password
        self._admin_token: str | None = None

    # --- browser-like sessions --------------------------------------------------
    def login(self, username: str, password: str | None = None):
        """(session, response) after posting the login form like a browser."""
        s = requests.Session()
        s.get(f"{self.url}/hub/login", timeout=10)
        r = s.post(
            f"{self.url}/hub/login",
            data={
                "username": username,
                "password": self.password if password is None else password,
                "_xsrf": s.cookies.get("_xsrf"),
            },
            timeout=30,
        )
        return s, r

    def post_form(self, session, path: str, data: dict, **kw):
        data = {**data, "_xsrf": session.cookies.get("_xsrf", path="/hub/")}
        return session.post(f"{self.url}{path}", data=data, timeout=60, **kw)

    # --- the REST API as admin1 ----------------------------------------------------
    @property
    def admin_token(self) -> str:
        if self._admin_token is None:
            s, r = self.login("admin1")
            r.raise_for_status()
            r = s.post(
                f"{self.url}/hub/api/users/admin1/tokens",
                json={"note": "e2e tests", "expires_in": 3600},
                headers={"X-XSRFToken": s.cookies.get("_xsrf", path="/hub/")},
                timeout=10,
            )
            r.raise_for_status()
            self._admin_token = r.json()["token"]
        return self._admin_token

    def api(self, method: str, path: str, token: str | None = None, **kw):
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return requests.request(
            method, f"{self.url}/hub/api{path}", headers=headers, timeout=60, **kw
        )

    def server(self, user: str) -> dict:
        r = self.api("GET", f"/users/{user}")
        if r.status_code == 404:  # never logged in: make the hub user
            self.api("POST", f"/users/{user}").raise_for_status()
            r = self.api("GET", f"/users/{user}")
        r.raise_for_status()
        return r.json().get("servers", {}).get("", {})

    def wait_ready(self, user: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            srv = self.server(user)
            if srv.get("ready"):
                return srv
            if not srv.get("pending") and not srv:
                raise AssertionError(f"{user}'s server is not starting")
            time.sleep(0.3)
        raise AssertionError(f"{user}'s server not ready after {timeout} s")

    def ensure_server(self, user: str, profile: str) -> dict:
        """A running server of ``user`` with ``profile`` (restart if another)."""
        srv = self.server(user)
        if srv.get("ready") and srv.get("user_options", {}).get("profile") == profile:
            return srv
        if srv:
            self.stop_server(user)
        r = self.api("POST", f"/users/{user}/server", json={"profile": profile})
        assert r.status_code in (201, 202), (r.status_code, r.text)
        return self.wait_ready(user)

    def stop_server(self, user: str, timeout: float = 30) -> None:
        r = self.api("DELETE", f"/users/{user}/server")
        assert r.status_code in (202, 204), (r.status_code, r.text)
        deadline = time.monotonic() + timeout
        while self.server(user) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not self.server(user), f"{user}'s server did not stop"

    # --- the user's own server ----------------------------------------------------
    def user_api(self, user: str, method: str, path: str, **kw):
        headers = {"Authorization": f"token {self.admin_token}"}
        return requests.request(
            method,
            f"{self.url}/user/{user}/api{path}",
            headers=headers,
            timeout=60,
            **kw,
        )

    def run(self, user: str, code: str, timeout: float = 180) -> str:
        """Run Python ``code`` in a new kernel of ``user``'s server; returns
        its output. Raises AssertionError (with the output) if it fails."""
        r = self.user_api(user, "POST", "/kernels", json={"name": "python3"})
        r.raise_for_status()
        kernel = r.json()["id"]
        try:
            return self._execute(user, kernel, code, timeout)
        finally:
            self.user_api(user, "DELETE", f"/kernels/{kernel}")

    def _execute(self, user: str, kernel: str, code: str, timeout: float) -> str:
        ws_url = self.url.replace("http", "ws", 1)
        ws = websocket.create_connection(
            f"{ws_url}/user/{user}/api/kernels/{kernel}/channels",
            header=[f"Authorization: token {self.admin_token}"],
            timeout=5,
        )
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": user,
                        "session": uuid.uuid4().hex,
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False, "stop_on_error": True},
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        out, error, status, idle = [], None, None, False
        deadline = time.monotonic() + timeout
        try:
            while status is None or not idle:
                if time.monotonic() > deadline:
                    self.user_api(user, "POST", f"/kernels/{kernel}/interrupt")
                    raise AssertionError(
                        f"kernel code did not finish in {timeout} s; output so"
                        f" far:\n{''.join(out)}"
                    )
                try:
                    # Short reads: the server's websocket pings would
                    # otherwise keep a long read waiting forever.
                    msg = json.loads(ws.recv())
                except websocket.WebSocketTimeoutException:
                    continue
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    out.append(content["text"])
                elif kind == "error":
                    error = f"{content['ename']}: {content['evalue']}"
                elif kind == "execute_reply":
                    status = content["status"]
                elif kind == "status":
                    idle = content["execution_state"] == "idle"
        finally:
            ws.close()
        text = "".join(out)
        assert status == "ok", f"kernel code failed: {error}\n{text}"
        return text
