"""Helpers to build CourseSpawner objects and their pod manifests offline."""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import Mock

from jupyterhub.objects import Hub, Server
from jupyterhub.utils import maybe_future
from traitlets.config import Config


def use_dummy_kubeconfig() -> None:
    """Point KUBECONFIG at a dummy cluster, before kubespawner is imported."""
    current = os.environ.get("KUBECONFIG")
    if current and current == os.environ.get("AALTOHUB_DUMMY_KUBECONFIG"):
        return  # already done in this process
    path = Path(tempfile.mkdtemp(prefix="aaltohub-kube-")) / "config"
    path.write_text(
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: Config
            clusters:
            - name: dummy
              cluster: {server: "https://127.0.0.1:9"}
            contexts:
            - name: dummy
              context: {cluster: dummy, user: dummy, namespace: jupyter}
            current-context: dummy
            users:
            - name: dummy
              user: {token: dummy}
            """
        )
    )
    os.environ["KUBECONFIG"] = os.environ["AALTOHUB_DUMMY_KUBECONFIG"] = str(path)


use_dummy_kubeconfig()


class MockUser(Mock):
    """The parts of a JupyterHub User that KubeSpawner reads."""

    def __init__(self, name: str, admin: bool = False, groups=()):
        super().__init__()
        self.name = name
        self.admin = admin
        self.groups = [SimpleNamespace(name=g) for g in groups]
        self.id = abs(hash(name)) % 10_000
        self.server = Server()

    @property
    def escaped_name(self):
        return self.name

    @property
    def url(self):
        return self.server.url


def base_config(catalog_dir, users_file) -> Config:
    c = Config()
    c.CourseCatalog.path = str(catalog_dir)
    c.CourseCatalog.reload_interval = 0
    c.CourseSpawner.identity_class = "aaltohub.identity.StaticIdentity"
    c.StaticIdentity.path = str(users_file)
    c.CourseSpawner.image = "example/notebook:base"
    c.CourseSpawner.cpu_limit = 1.0
    c.CourseSpawner.mem_limit = "1G"
    c.CourseSpawner.general_profiles = [
        {
            "slug": "general-python",
            "display_name": "Python: general use",
            "default": True,
            "kubespawner_override": {"image": "example/notebook:general"},
        }
    ]
    return c


def make_spawner(config: Config, username: str, admin: bool = False, name: str = ""):
    from aaltohub.kube import CourseSpawner

    orm_spawner = SimpleNamespace(name=name, server=None, user_options=None)
    return CourseSpawner(
        config=config,
        user=MockUser(username, admin),
        hub=Hub(),
        orm_spawner=orm_spawner,
        _mock=True,
    )


async def spawn_manifest(spawner, profile: str | None):
    """Run the spawn sequence up to the pod manifest, as JupyterHub 6's
    User.spawn does: clear_state, group overrides, the pre-spawn hook
    (authorization), then start()'s load_user_options and get_pod_manifest."""
    spawner.user_options = {"profile": profile} if profile else {}
    spawner.clear_state()
    await spawner.apply_group_overrides()
    await maybe_future(spawner.run_pre_spawn_hook())
    await spawner.load_user_options()
    return await spawner.get_pod_manifest()


def to_dict(pod) -> dict:
    from kubernetes_asyncio.client import ApiClient

    return ApiClient().sanitize_for_serialization(pod)
