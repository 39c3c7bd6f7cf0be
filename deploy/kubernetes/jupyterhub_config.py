"""JupyterHub config for a course hub on Kubernetes (z2jh 4.x, or plain).

Everything course-related comes from aaltohub classes; this file only
chooses them and points them at this site's directory, storage and images.
Site-specific values come from the environment, so the file is the same in
every deployment.

How it is loaded, and why it is written this way:

- **z2jh** (the supported way): mounted with ``hub.extraFiles`` into
  ``/usr/local/etc/jupyterhub/jupyterhub_config.d/``. The chart's own
  ``jupyterhub_config.py`` ``exec``s it in *its* namespace, after it has
  applied the Helm values: there ``get_config`` is ``z2jh.get_config(key,
  default)`` and ``__file__`` is the chart's file. So this file never calls
  ``get_config()`` and builds no path from ``__file__``; it uses ``c``,
  which both loaders provide. Lists the chart filled (services, roles) are
  extended, not replaced, and settings the Helm values own
  (``singleuser.*``) are only defaulted.
- **Standalone**: ``jupyterhub -f jupyterhub_config.py``; traitlets also
  puts ``c`` in the namespace.

``tests/test_deploy.py`` loads it both ways. All names it defines start
with ``_aaltohub`` and are deleted at the end, so ``hub.extraConfig``
snippets that run after it see the chart's namespace unchanged.
"""

import os

from aaltohub.web import quota as _aaltohub_quota_web

# Where hub.extraFiles.aaltohub_culler mounts culler_config.py (values.yaml). A fixed
# path: under z2jh, __file__ names the chart's config, not this file.
_AALTOHUB_CULLER_CONFIG = os.environ.get(
    "AALTOHUB_CULLER_CONFIG", "/usr/local/etc/jupyterhub/aaltohub/culler_config.py"
)
_AALTOHUB_GENERAL_IMAGE = "quay.io/jupyter/scipy-notebook:2025-01-06"


def _aaltohub_env(name, default=""):
    return os.environ.get(name, default)


def _aaltohub_default(section, name, value):
    """Set ``name`` unless the Helm values (or an earlier file) did."""
    if name not in section:
        section[name] = value


def _aaltohub_add_named(section, name, entry):
    """Append ``entry`` to the list option ``name``, unless an entry of that
    name is already there: the deployer's own (e.g. from ``hub.services``)
    wins, and z2jh's entries are kept."""
    current = section.get(name)
    if isinstance(current, list):
        if all(item.get("name") != entry["name"] for item in current):
            current.append(entry)
    else:  # unset: a LazyConfigValue that extends JupyterHub's default
        section[name].append(entry)


def _aaltohub_auth_state(c):
    """Identity is kept in auth_state, so it is always on. Its key comes
    from the chart (``hub.config.CryptKeeper.keys``, generated on the first
    install and kept in the hub Secret) or, standalone, from
    ``JUPYTERHUB_CRYPT_KEY``. Without one the hub refuses to start, and
    ``aaltohub check-config`` names the fix (aaltohub.config_check, the one
    home of that rule, as of the default image check)."""
    c.Authenticator.enable_auth_state = True


def _aaltohub_identity(c):
    # LDAP login; for Azure AD / OIDC instead, use a class like
    #   class AzureADWithIdentity(IdentityAuthenticatorMixin, AzureAdOAuthenticator)
    # so the same identity lookup is attached to the OAuth login.
    env = _aaltohub_env
    c.JupyterHub.authenticator_class = "aaltohub-ldap"
    c.Authenticator.allow_all = True  # course access is decided per course
    c.Authenticator.admin_users = set(filter(None, env("HUB_ADMINS").split(",")))
    _aaltohub_auth_state(c)
    c.LDAPIdentity.server_urls = env("LDAP_URLS", "ldaps://ldap.example.org").split(",")
    c.LDAPIdentity.user_search_base = env(
        "LDAP_USER_BASE", "ou=people,dc=example,dc=org"
    )
    c.LDAPIdentity.group_search_base = env(
        "LDAP_GROUP_BASE", "ou=groups,dc=example,dc=org"
    )
    c.LDAPIdentity.bind_dn = env("LDAP_BIND_DN")
    # from a Kubernetes Secret (hub.extraEnv ... valueFrom.secretKeyRef)
    c.LDAPIdentity.bind_password = env("LDAP_BIND_PASSWORD")
    c.LDAPIdentity.group_membership = env("LDAP_GROUP_MEMBERSHIP", "posixGroup")
    if env("AALTOHUB_DB_URL"):  # e.g. postgresql://…, from a Secret
        c.JupyterHub.db_url = env("AALTOHUB_DB_URL")


def _aaltohub_spawner(c):
    env = _aaltohub_env
    general = env("GENERAL_IMAGE", _AALTOHUB_GENERAL_IMAGE)
    c.JupyterHub.spawner_class = "course"  # aaltohub.CourseSpawner
    c.CourseSpawner.identity_class = "aaltohub.LDAPIdentity"
    c.CourseCatalog.path = env("COURSE_DIR", "/courses/meta")
    # a full image reference (never the bare alias DEFAULT unless IMAGES.yaml
    # defines it): checked at hub start and by check-config
    c.CourseCatalog.default_image = env("DEFAULT_IMAGE", general)
    c.CourseSpawner.storage_claim = env("NFS_CLAIM", "jupyter-nfs")
    c.CourseSpawner.general_profiles = [
        {
            "slug": "general-python",
            "display_name": "Python: general use",
            "default": True,
            "kubespawner_override": {"image": general},
        },
    ]
    c.CourseSpawner.hooks = [
        "aaltohub.hooks.UIDHook",
        "aaltohub.hooks.HomeHook",
        "aaltohub.hooks.provision.ProvisionHomeHook",
        "aaltohub.hooks.CourseMountsHook",
        "aaltohub.hooks.NbgraderHook",
        "aaltohub.hooks.GitIdentityHook",
        "aaltohub.hooks.ResourcesHook",
        "aaltohub.hooks.ThreadsHook",
        "aaltohub.hooks.EnvironmentHook",
        "aaltohub.hooks.quota.QuotaHook",
    ]
    # Under z2jh these come from singleuser.cpu / memory / startTimeout and
    # are left alone; standalone they get these values. KubeSpawner, not
    # CourseSpawner: the more specific section would outrank the chart's.
    for name, value in {
        "cpu_limit": 4,
        "mem_limit": "5G",
        "cpu_guarantee": 0.1,
        "mem_guarantee": "512M",
        "start_timeout": 300,
    }.items():
        _aaltohub_default(c.KubeSpawner, name, value)
    c.CourseSpawner.notebook_dir = "/"
    c.StoragePaths.extra_mounts = [
        {"target": "/m/shareddata", "sub_path": "shareddata", "read_only": True},
    ]
    c.EnvironmentHook.timezone = env("TZ", "Europe/Helsinki")


def _aaltohub_storage(c):
    """Homes made before the first start; quota warnings."""
    env = _aaltohub_env
    if env("HOME_PROVISIONER", "remote") == "local":
        # the hub has the share mounted with rights to chown
        c.ProvisionHomeHook.provisioner_class = "aaltohub.storage.LocalHomeProvisioner"
        c.LocalHomeProvisioner.storage_root = env("STORAGE_ROOT", "/mnt/jupyter")
    else:
        # root_squash NFS: a forced command on the storage host makes homes
        # (needs an ssh client in the hub image, and the key from a Secret)
        c.ProvisionHomeHook.provisioner_class = (
            "aaltohub.storage.RemoteCommandHomeProvisioner"
        )
        c.RemoteCommandHomeProvisioner.host = env("STORAGE_HOST", "storage.example.org")
        c.RemoteCommandHomeProvisioner.identity_file = env(
            "STORAGE_SSH_KEY", "/srv/jupyterhub/ssh/id_ed25519"
        )
    if env("QUOTA_REPORT"):
        c.QuotaPolicy.source_class = "aaltohub.storage.ReportFileQuota"
        c.ReportFileQuota.user_report = env("QUOTA_REPORT")
        _aaltohub_quota_web.configure(c)  # the warning on the home and spawn pages


def _aaltohub_culler(c):
    """jupyterhub-idle-culler (2.x: --config and the arbiter hook) as a hub
    service; the arbiter in culler_config.py applies each course's cull:
    limits from the spawner state. It replaces z2jh's culler (cull.enabled:
    false in values.yaml). The API URL is the hub's own port on localhost,
    as z2jh's culler uses: the hub's network policy does not let the hub
    pod reach itself through its Service."""
    base_url = c.JupyterHub.base_url if "base_url" in c.JupyterHub else "/"
    api_url = "http://localhost:8081" + base_url.rstrip("/") + "/hub/api"
    command = ["python3", "-m", "jupyterhub_idle_culler", f"--url={api_url}"]
    command += [
        f"--config={_AALTOHUB_CULLER_CONFIG}",
        f"--timeout={int(_aaltohub_env('CULL_TIMEOUT', '3600'))}",
        f"--max-age={int(_aaltohub_env('CULL_MAX_AGE', '28800'))}",
    ]
    _aaltohub_add_named(
        c.JupyterHub, "services", {"name": "course-culler", "command": command}
    )
    role = {
        "name": "course-culler",
        "scopes": [
            "list:users",
            "read:users:activity",
            "read:servers",
            "delete:servers",
            "admin:server_state",  # the course limits live in the state
        ],
        "services": ["course-culler"],
    }
    _aaltohub_add_named(c.JupyterHub, "load_roles", role)


_aaltohub_identity(c)  # noqa: F821 (c: put here by z2jh's loader or traitlets)
_aaltohub_spawner(c)  # noqa: F821
_aaltohub_storage(c)  # noqa: F821
_aaltohub_culler(c)  # noqa: F821

for _aaltohub_name in [n for n in globals() if n.lower().startswith("_aaltohub")]:
    del globals()[_aaltohub_name]
globals().pop("_aaltohub_name", None)
