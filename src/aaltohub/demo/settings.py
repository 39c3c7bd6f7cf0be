"""The demo hub's configuration, composed from the library's classes.

``aaltohub demo`` sets ``AALTOHUB_DEMO_*`` environment variables and starts
``jupyterhub -f .../jupyterhub_config.py``, whose only line of substance is
``configure(c)``. Nothing is executed from the state directory; every path
below is derived from it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

ENV_PREFIX = "AALTOHUB_DEMO_"
DEFAULT_STATE = "demo-state"
ADMIN_USERS = {"admin1"}


class DemoConfigError(RuntimeError):
    """The demo cannot be configured; str() names the fix."""


@dataclass(frozen=True)
class StatePaths:
    """Where everything the demo writes lives: inside one directory."""

    root: Path

    @property
    def catalog(self) -> Path:
        return self.root / "courses"

    @property
    def users(self) -> Path:
        return self.root / "users.yaml"

    @property
    def storage(self) -> Path:
        """Stands in for the campus NFS volume (u/, course/, exchange/)."""
        return self.root / "storage"

    @property
    def servers(self) -> Path:
        return self.root / "servers"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def password_hash(self) -> Path:
        return self.secrets / "password.hash"

    @property
    def crypt_key(self) -> Path:
        return self.secrets / "crypt_key"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def hub_log(self) -> Path:
        return self.logs / "jupyterhub.log"

    @property
    def audit_log(self) -> Path:
        """The audit log (``aaltohub audit --file`` it)."""
        return self.logs / "audit.log"

    @property
    def announcements(self) -> Path:
        """``aaltohub announce --file`` this to show a notice in the demo."""
        return self.root / "announcements.json"

    @property
    def quota_report(self) -> Path:
        """A repquota report standing in for the storage's (state.py)."""
        return self.root / "quota" / "repquota.txt"


def find_proxy() -> str | None:
    """configurable-http-proxy: the repository's node_modules, then PATH."""
    here = Path(__file__).resolve()
    candidates = [Path.cwd() / "node_modules/.bin/configurable-http-proxy"]
    # src/aaltohub/demo/settings.py -> the repository root in a checkout
    candidates.append(here.parents[3] / "node_modules/.bin/configurable-http-proxy")
    for path in candidates:
        if os.access(path, os.X_OK):
            return str(path)
    return shutil.which("configurable-http-proxy")


PROXY_MISSING = (
    "configurable-http-proxy was not found. Install it with 'npm install' in"
    " the aaltohub repository (it reads package.json), or run"
    " 'bash scripts/demo.sh', which does everything; or install it globally"
    " with 'npm install -g configurable-http-proxy'."
)


def _int(environ, name: str, fallback: int) -> int:
    value = environ.get(ENV_PREFIX + name)
    if value is None:
        return fallback
    try:
        return int(value)
    except ValueError:
        raise DemoConfigError(f"{ENV_PREFIX}{name}={value!r} is not a number") from None


def configure(c, environ=os.environ) -> StatePaths:
    """Fill JupyterHub config ``c`` for the demo in ``AALTOHUB_DEMO_STATE``."""
    paths = StatePaths(Path(environ.get(ENV_PREFIX + "STATE", DEFAULT_STATE)).resolve())
    if not paths.password_hash.exists():
        raise DemoConfigError(
            f"{paths.root} is not a prepared demo state directory; start the"
            " demo with 'aaltohub demo --state-dir DIR' (it prepares DIR and"
            " sets AALTOHUB_DEMO_* for this configuration file)."
        )
    proxy = environ.get(ENV_PREFIX + "PROXY") or find_proxy()
    if not proxy:
        raise DemoConfigError(PROXY_MISSING)
    port = _int(environ, "PORT", 8000)
    state = str(paths.root)

    c.JupyterHub.ip = "127.0.0.1"
    c.JupyterHub.port = port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = _int(environ, "HUB_PORT", 8081)
    c.JupyterHub.db_url = f"sqlite:///{state}/jupyterhub.sqlite"
    c.JupyterHub.cookie_secret_file = f"{state}/secrets/jupyterhub_cookie_secret"
    c.JupyterHub.pid_file = f"{state}/jupyterhub.pid"
    c.ConfigurableHTTPProxy.command = [proxy]
    c.ConfigurableHTTPProxy.api_url = (
        f"http://127.0.0.1:{_int(environ, 'PROXY_API_PORT', 8001)}"
    )
    c.ConfigurableHTTPProxy.pid_file = f"{state}/proxy.pid"
    c.ConfigurableHTTPProxy.debug = False

    # Login: one shared password for the users of the identity file.
    c.JupyterHub.authenticator_class = "aaltohub.demo.auth.DemoAuthenticator"
    c.DemoAuthenticator.password_file = str(paths.password_hash)
    c.DemoAuthenticator.identity_class = "aaltohub.identity.StaticIdentity"
    c.Authenticator.admin_users = set(ADMIN_USERS)
    c.Authenticator.enable_auth_state = bool(environ.get("JUPYTERHUB_CRYPT_KEY"))
    c.StaticIdentity.path = str(paths.users)

    # Servers: the course catalog and hooks, applied to local processes.
    c.JupyterHub.spawner_class = "aaltohub.local.LocalCourseSpawner"
    c.LocalCourseSpawner.identity_class = "aaltohub.identity.StaticIdentity"
    c.LocalCourseSpawner.storage_root = str(paths.storage)
    c.LocalCourseSpawner.servers_dir = str(paths.servers)
    c.LocalCourseSpawner.isolation = environ.get(ENV_PREFIX + "ISOLATION", "auto")
    c.LocalCourseSpawner.start_timeout = 60
    c.LocalCourseSpawner.http_timeout = 60
    run = environ.get(ENV_PREFIX + "RUN")
    if run:
        # Marks every process of this demo run, so the runner can make sure
        # none is left behind when it stops.
        c.LocalCourseSpawner.environment = {ENV_PREFIX + "RUN": run}
    c.CourseCatalog.path = str(paths.catalog)
    c.CourseCatalog.reload_interval = 2.0  # edit courses/ and see it at once
    _notices(c, paths)
    _audit(c, paths)
    return paths


def _audit(c, paths: StatePaths) -> None:
    """The audit log as a file in the state directory, with the request
    hooks (request ids, logouts, admin API actions, culls)."""
    from ..web import hub_events

    c.AuditLog.destination = "file"
    c.AuditLog.path = str(paths.audit_log)
    hub_events.configure(c)


def _notices(c, paths: StatePaths) -> None:
    """Announcements and quota warnings on the hub's pages, in JupyterLab
    (aaltohub.web.lab as the server's news) and in terminals, as with the
    notebook image (docs/demo.md). student2 is near their quota."""
    from .. import web
    from ..hooks import DEFAULT_HOOKS
    from ..hooks.quota import QuotaHook
    from ..web import announcements, quota

    # aaltohub.web.lab imports jupyter_server: named, not imported, here.
    # What the notebook image installs, from the package (web/singleuser/):
    # fetchNews on by default, and terminals that print the quota warning.
    singleuser = Path(web.__file__).parent / "singleuser"
    c.Announcements.path = str(paths.announcements)
    c.QuotaPolicy.source_class = "aaltohub.storage.ReportFileQuota"
    c.ReportFileQuota.user_report = str(paths.quota_report)
    c.ReportFileQuota.max_age = 0.0  # the demo's report is written once
    c.LocalCourseSpawner.hooks = [*DEFAULT_HOOKS, QuotaHook]
    shell = ["/bin/bash", "--rcfile", str(singleuser / "bashrc"), "-i"]
    c.LocalCourseSpawner.args = [
        "--ServerApp.jpserver_extensions=aaltohub.web.lab=True",
        f"--LabApp.app_settings_dir={singleuser / 'lab-settings'}",
        f"--ServerApp.terminado_settings=shell_command={json.dumps(shell)}",
    ]
    quota.configure(c)
    announcements.configure(c)
