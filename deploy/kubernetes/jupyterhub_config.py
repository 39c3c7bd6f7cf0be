"""Thin JupyterHub config for a course hub on Kubernetes (z2jh or plain).

Everything course-related comes from aaltohub classes; this file only
chooses them and points them at this site's directory, storage and images.
Site-specific values come from the environment so the file itself is the
same in every deployment. Mount it as /etc/jupyterhub/jupyterhub_config.py
or paste the body into z2jh's ``hub.extraConfig``.
"""

import os
import sys

from aaltohub.web import quota as quota_web

c = get_config()  # noqa: F821 (provided by JupyterHub)

env = os.environ.get

# --- who users are -----------------------------------------------------------
# LDAP login; for Azure AD / OIDC instead, use a class like
#   class AzureADWithIdentity(IdentityAuthenticatorMixin, AzureAdOAuthenticator)
# so the same identity lookup is attached to the OAuth login.
c.JupyterHub.authenticator_class = "aaltohub-ldap"
c.Authenticator.allow_all = True  # course access is decided per course
c.Authenticator.admin_users = set(filter(None, env("HUB_ADMINS", "").split(",")))
c.Authenticator.enable_auth_state = bool(env("JUPYTERHUB_CRYPT_KEY"))
c.LDAPIdentity.server_urls = env("LDAP_URLS", "ldaps://ldap.example.org").split(",")
c.LDAPIdentity.user_search_base = env("LDAP_USER_BASE", "ou=people,dc=example,dc=org")
c.LDAPIdentity.group_search_base = env("LDAP_GROUP_BASE", "ou=groups,dc=example,dc=org")
c.LDAPIdentity.bind_dn = env("LDAP_BIND_DN", "")
c.LDAPIdentity.bind_password = env("LDAP_BIND_PASSWORD", "")
c.LDAPIdentity.group_membership = env("LDAP_GROUP_MEMBERSHIP", "posixGroup")

# --- what they get -------------------------------------------------------------
c.JupyterHub.spawner_class = "course"  # aaltohub.CourseSpawner
c.CourseSpawner.identity_class = "aaltohub.LDAPIdentity"
c.CourseCatalog.path = env("COURSE_DIR", "/courses/meta")
c.CourseCatalog.default_image = "DEFAULT"  # an alias from IMAGES.yaml
c.CourseSpawner.storage_claim = env("NFS_CLAIM", "jupyter-nfs")
c.CourseSpawner.general_profiles = [
    {
        "slug": "general-python",
        "display_name": "Python: general use",
        "default": True,
        "kubespawner_override": {
            "image": env("GENERAL_IMAGE", "quay.io/jupyter/scipy-notebook:2025-01-06")
        },
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

# --- storage: homes made before the first start, quota warnings -----------
if env("HOME_PROVISIONER", "remote") == "local":
    # the hub has the share mounted with rights to chown
    c.ProvisionHomeHook.provisioner_class = "aaltohub.storage.LocalHomeProvisioner"
    c.LocalHomeProvisioner.storage_root = env("STORAGE_ROOT", "/mnt/jupyter")
else:
    # root_squash NFS: a forced command on the storage host makes homes
    c.ProvisionHomeHook.provisioner_class = (
        "aaltohub.storage.RemoteCommandHomeProvisioner"
    )
    c.RemoteCommandHomeProvisioner.host = env("STORAGE_HOST", "storage.example.org")
    c.RemoteCommandHomeProvisioner.identity_file = "/srv/jupyterhub/ssh/id_ed25519"
if env("QUOTA_REPORT"):
    c.QuotaPolicy.source_class = "aaltohub.storage.ReportFileQuota"
    c.ReportFileQuota.user_report = env("QUOTA_REPORT")
    quota_web.configure(c)  # the warning on the home and spawn pages

c.CourseSpawner.cpu_limit = 4
c.CourseSpawner.mem_limit = "5G"
c.CourseSpawner.cpu_guarantee = 0.1
c.CourseSpawner.mem_guarantee = "512M"
c.CourseSpawner.notebook_dir = "/"
c.CourseSpawner.start_timeout = 300
c.StoragePaths.extra_mounts = [
    {"target": "/m/shareddata", "sub_path": "shareddata", "read_only": True},
]
c.EnvironmentHook.timezone = env("TZ", "Europe/Helsinki")

# --- culling with per-course limits ------------------------------------------
# jupyterhub-idle-culler as a hub service; the arbiter in culler_config.py
# applies each course's cull: limits from the spawner state.
c.JupyterHub.services = [
    {
        "name": "course-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--config={os.path.join(os.path.dirname(__file__), 'culler_config.py')}",
            "--timeout=3600",
            "--max-age=28800",
        ],
    }
]
c.JupyterHub.load_roles = [
    {
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
]
