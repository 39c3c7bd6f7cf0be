"""The spawn probe: start a server through the hub, check it, stop it.

Operators run it from cron or a monitoring system against the live hub
(``aaltohub probe``). It uses only the public REST API and the proxy, so a
pass means a user could have started a server right then. Blocking HTTP is
fine here: it is a command, not code inside the hub.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import quote


class ProbeFailed(Exception):
    """A step failed; str() names the step and what the hub answered."""


@dataclass
class ProbeResult:
    ok: bool
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds
    error: str = ""
    finished: float = 0.0  # time.time() when the run ended

    @property
    def total(self) -> float:
        return sum(self.steps.values())

    def prometheus(self, user: str) -> str:
        """Text for node_exporter's textfile collector."""
        lines = [
            "# HELP aaltohub_probe_success 1 if the last spawn probe passed.",
            "# TYPE aaltohub_probe_success gauge",
            f'aaltohub_probe_success{{user="{user}"}} {int(self.ok)}',
            "# HELP aaltohub_probe_step_seconds Duration of each probe step.",
            "# TYPE aaltohub_probe_step_seconds gauge",
        ]
        lines += [
            f'aaltohub_probe_step_seconds{{user="{user}",step="{s}"}} {t:.3f}'
            for s, t in self.steps.items()
        ]
        # A scraper tells an old result from a fresh one (a probe that
        # stopped running would otherwise look like its last success).
        lines += [
            "# HELP aaltohub_probe_last_run_timestamp_seconds When the last"
            " spawn probe ended (Unix time).",
            "# TYPE aaltohub_probe_last_run_timestamp_seconds gauge",
            f'aaltohub_probe_last_run_timestamp_seconds{{user="{user}"}}'
            f" {self.finished:.0f}",
        ]
        return "\n".join(lines) + "\n"


class SpawnProbe:
    def __init__(self, url, token, user, profile="", server="", timeout=120.0):
        if not url.startswith(("http://", "https://")):
            raise ValueError(
                f"the hub URL must start with http:// or https://: {url!r}"
            )
        self.url = url.rstrip("/")
        self.token = token
        self.user = user
        self.profile = profile
        self.server = server
        self.timeout = timeout
        user_path = quote(user, safe="")
        self._server_api = (
            f"/hub/api/users/{user_path}/servers/{quote(server, safe='')}"
        )
        if not server:
            self._server_api = f"/hub/api/users/{user_path}/server"

    def _request(self, method, path, body=None, expect=(200,)):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"token {self.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode(errors="replace")
        except OSError as e:
            raise ProbeFailed(f"{method} {path}: cannot reach the hub ({e})") from e
        if status not in expect:
            raise ProbeFailed(f"{method} {path}: HTTP {status}: {text[:300]}")
        return json.loads(text) if text.strip().startswith("{") else {}

    def _server_model(self) -> dict:
        model = self._request("GET", f"/hub/api/users/{quote(self.user, safe='')}")
        return (model.get("servers") or {}).get(self.server) or {}

    def _wait(self, done, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            model = self._server_model()
            if done(model):
                return
            time.sleep(0.5)
        raise ProbeFailed(f"{what}: not done after {self.timeout:g} s")

    def run(self) -> ProbeResult:
        result = ProbeResult(ok=False)

        def step(name, func):
            started = time.monotonic()
            func()
            result.steps[name] = time.monotonic() - started

        try:
            if self._server_model():
                raise ProbeFailed(
                    f"{self.user} already has a server '{self.server}'; the probe"
                    " needs a user of its own (e.g. a dedicated probe account)"
                )
            options = {"profile": self.profile} if self.profile else {}
            step(
                "request",
                lambda: self._request("POST", self._server_api, options, (201, 202)),
            )
            step("ready", lambda: self._wait(lambda m: m.get("ready"), "server start"))
            step("reach", self._reach)
            step("stop", self._stop)
            result.ok = True
        except ProbeFailed as e:
            result.error = str(e)
            self._cleanup()
        result.finished = time.time()
        return result

    def _reach(self) -> None:
        url = self._server_model().get("url") or ""
        self._request("GET", url.rstrip("/") + "/api/status")

    def _stop(self) -> None:
        self._request("DELETE", self._server_api, expect=(202, 204))
        self._wait(lambda m: not m, "server stop")

    def _cleanup(self) -> None:
        try:
            if self._server_model():
                self._request("DELETE", self._server_api, expect=(202, 204))
        except ProbeFailed:
            pass  # the original failure is what the operator needs
