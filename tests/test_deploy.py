"""The Kubernetes deployment config, composed for real: LDAP login against a
real slapd, identity through auth_state, home provisioning on a real
directory, a quota report, and a pod manifest valid for Kubernetes.

It is loaded twice over: standalone (traitlets' ``PyFileConfigLoader``, as
``jupyterhub -f``) and the way z2jh 4.x loads it. The chart's
``jupyterhub_config.py`` is not vendored; this module re-implements
its loading steps (``z2jh_load``); the tests at the end check the values
and those steps against the hub image's chart (its files are in
tests/data/z2jh-chart-4.4.0; ``Z2JH_CHART_DIR`` points at another)."""

from __future__ import annotations

import os
import re
import stat
import textwrap
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from traitlets.config import PyFileConfigLoader

from kube_helpers import make_spawner, spawn_manifest, to_dict
from ldap_server import SERVICE_DN, SERVICE_PW

pytest_plugins = ["ldap_server"]

# --- z2jh 4.x's loader, re-implemented ------------------------------------------
# The chart's files/hub/jupyterhub_config.py (4.4.0) is exec'd by traitlets
# with ``c`` in its namespace; it imports z2jh.get_config(key, default)
# over that name, applies the Helm values (the steps below, in its order,
# limited to what touches this config), then execs every
# jupyterhub_config.d/*.py, sorted by name, in the same namespace, then
# hub.extraConfig. Not vendored: CHART_STEPS are the lines of the chart this
# emulation stands for, checked against the chart when Z2JH_CHART_DIR is set.
CHART_FILE = "/usr/local/etc/jupyterhub/jupyterhub_config.py"
CONFIG_D = "/usr/local/etc/jupyterhub/jupyterhub_config.d"
CHART_STEPS = (
    "from z2jh import (\n    get_config,",
    'set_config_if_not_none(c.KubeSpawner, trait, "singleuser." + cfg_key)',
    "c.KubeSpawner.volumes = volumes",
    "c.JupyterHub.services = []\nc.JupyterHub.load_roles = []",
    'for key, service in get_config("hub.services", {}).items():',
    "c.KubeSpawner.init_containers.append(ip_block_container)",
    'c.CryptKeeper.keys = get_secret_value("hub.config.CryptKeeper.keys").split(";")',
    "c[section].update(cfg)",
    f'config_dir = "{CONFIG_D}"',
    'for file_path in sorted(glob.glob(f"{config_dir}/*.py")):',
    'exec(compile(source=file_content, filename=file_name, mode="exec"))',
)
SECRETS = {
    "hub.config.CryptKeeper.keys": "ab" * 32,
    "hub.config.JupyterHub.cookie_secret": "cd" * 32,
}


def chart_defaults() -> dict:
    """The chart's values.yaml, or the part of it this emulation reads."""
    chart = os.environ.get("Z2JH_CHART_DIR", "")
    if chart and Path(chart, "values.yaml").is_file():
        return yaml.safe_load(Path(chart, "values.yaml").read_text())
    return {
        "hub": {
            "baseUrl": "/",
            "services": {},
            "loadRoles": {},
            "extraFiles": {},
            "config": {
                "JupyterHub": {"admin_access": True, "authenticator_class": "dummy"}
            },
        },
        "singleuser": {
            "uid": 1000,
            "fsGid": 100,
            "startTimeout": 300,
            "allowPrivilegeEscalation": False,
            "cmd": "jupyterhub-singleuser",
            "cpu": {"limit": None, "guarantee": None},
            "memory": {"limit": None, "guarantee": "1G"},
            "storage": {"type": "dynamic"},
            "cloudMetadata": {"blockWithIptables": True, "ip": "169.254.169.254"},
            "networkTools": {
                "image": {
                    "name": "quay.io/jupyterhub/k8s-network-tools",
                    "tag": "4.4.0",
                },
                "resources": {},
            },
        },
        "cull": {"enabled": True, "timeout": 3600, "every": 600},
    }


def coalesce(base: dict, over: dict) -> dict:
    """Helm's merge of user values onto chart values: maps merge, anything
    else replaces, and null deletes the chart's key."""
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = coalesce(out[key], value)
        else:
            out[key] = value
    return out


def z2jh_get_config(values: dict):
    def get_config(key, default=None):  # z2jh.get_config, same semantics
        value = values
        for level in key.split("."):
            if not isinstance(value, dict) or level not in value:
                return default
            value = value[level]
        return value

    return get_config


def apply_chart_values(c, get_config) -> None:
    from kubernetes_asyncio import client

    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    if get_config("hub.baseUrl") is not None:
        c.JupyterHub.base_url = get_config("hub.baseUrl")
    c.KubeSpawner.common_labels = {"app": "jupyterhub", "release": "jhub"}
    for trait, key in [
        ("start_timeout", "startTimeout"),
        ("uid", "uid"),
        ("fs_gid", "fsGid"),
        ("mem_limit", "memory.limit"),
        ("mem_guarantee", "memory.guarantee"),
        ("cpu_limit", "cpu.limit"),
        ("cpu_guarantee", "cpu.guarantee"),
        ("environment", "extraEnv"),
    ]:
        if get_config("singleuser." + key) is not None:
            c.KubeSpawner[trait] = get_config("singleuser." + key)
    c.KubeSpawner.allow_privilege_escalation = get_config(
        "singleuser.allowPrivilegeEscalation"
    )
    c.KubeSpawner.volumes, c.KubeSpawner.volume_mounts = {}, {}  # storage: none
    c.JupyterHub.services, c.JupyterHub.load_roles = [], []
    assert not get_config("cull.enabled"), "the chart's culler must be off"
    for key, service in get_config("hub.services", {}).items():
        service.setdefault("name", key)
        service.pop("apiToken", None)
        service["api_token"] = "t" * 32
        c.JupyterHub.services.append(service)
    for key, role in get_config("hub.loadRoles", {}).items():
        role.setdefault("name", key)
        c.JupyterHub.load_roles.append(role)
    c.Spawner.cmd = get_config("singleuser.cmd")
    metadata = get_config("singleuser.cloudMetadata")
    if metadata.get("blockWithIptables") is True:
        image = get_config("singleuser.networkTools.image")
        c.KubeSpawner.init_containers.append(
            client.V1Container(
                name="block-cloud-metadata",
                image=f"{image['name']}:{image['tag']}",
                command=[
                    "iptables",
                    "--append",
                    "OUTPUT",
                    "--protocol",
                    "tcp",
                    "--destination",
                    metadata["ip"],
                    "--destination-port",
                    "80",
                    "--jump",
                    "DROP",
                ],
                security_context=client.V1SecurityContext(
                    privileged=True,
                    run_as_user=0,
                    capabilities=client.V1Capabilities(add=["NET_ADMIN"]),
                ),
            )
        )
    c.JupyterHub.cookie_secret = SECRETS["hub.config.JupyterHub.cookie_secret"]
    c.CryptKeeper.keys = SECRETS["hub.config.CryptKeeper.keys"].split(";")
    for section, cfg in get_config("hub.config", {}).items():
        cfg = {
            k: v
            for k, v in cfg.items()
            if (section, k)
            not in {
                ("JupyterHub", "services"),
                ("JupyterHub", "cookie_secret"),
                ("CryptKeeper", "keys"),
            }
        }
        c[section].update(cfg)


def z2jh_load(values: dict, files: dict[str, Path], mounts: dict | None = None):
    """Load as the chart does: ``files`` maps hub.extraFiles keys to what
    --set-file puts in their stringData; those mounted in
    jupyterhub_config.d are exec'd in the chart's namespace, in the order
    of their file names. Returns the config and the namespace."""
    from traitlets.config import Config

    mounts = mounts or {
        k: f["mountPath"] for k, f in values["hub"]["extraFiles"].items()
    }
    get_config = z2jh_get_config(values)
    c = Config()
    namespace = {
        "c": c,
        "get_config": get_config,
        "__file__": CHART_FILE,
        "load_subconfig": None,
    }
    apply_chart_values(c, get_config)
    config_d = sorted(
        (os.path.basename(path), key)
        for key, path in mounts.items()
        if os.path.dirname(path) == CONFIG_D and path.endswith(".py")
    )
    for file_name, key in config_d:
        exec(compile(files[key].read_text(), file_name, "exec"), namespace)
    return c, namespace


ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
CRYPT_KEY = "0" * 64


@pytest.fixture
def site(slapd, tmp_path, monkeypatch):
    """A course directory, storage and quota report, and the hub's
    environment pointing at them and at the test slapd."""
    courses = tmp_path / "courses"
    courses.mkdir()
    (courses / "cs101.yaml").write_text(
        textwrap.dedent(
            """\
            name: Programming 1
            gid: 70101
            datadir: true
            instructor_groups: [teachers]
            students: [bob]
            """
        )
    )
    storage = tmp_path / "storage"
    storage.mkdir()
    report = tmp_path / "report.txt"
    report.write_text(
        (Path(__file__).parent / "data" / "quota" / "repquota-ug.txt").read_text()
    )
    for name, value in {
        "LDAP_URLS": slapd.url,
        "LDAP_USER_BASE": "ou=people,dc=example,dc=org",
        "LDAP_GROUP_BASE": "ou=groups,dc=example,dc=org",
        "LDAP_BIND_DN": SERVICE_DN,
        "LDAP_BIND_PASSWORD": SERVICE_PW,
        "LDAP_GROUP_MEMBERSHIP": "posixGroup",
        "COURSE_DIR": str(courses),
        "HOME_PROVISIONER": "local",
        "STORAGE_ROOT": str(storage),
        "QUOTA_REPORT": str(report),
        "HUB_ADMINS": "carol",
        "DEFAULT_IMAGE": "example/notebook:base",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("JUPYTERHUB_CRYPT_KEY", raising=False)
    return storage


@pytest.fixture
def deploy_config(site, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", CRYPT_KEY)
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(DEPLOY)).load_config()
    config.CourseSpawner.image = "example/notebook:base"
    # the course culler is a hub service allowed to read spawner state
    [culler] = config.JupyterHub.services.get_value([])
    assert "jupyterhub_idle_culler" in culler["command"]
    [role] = config.JupyterHub.load_roles.get_value([])
    assert "admin:server_state" in role["scopes"]
    return config, site


async def login_and_spawn(config, storage):
    """alice logs in through LDAP and starts the instructor variant."""
    from aaltohub.auth import LDAPIdentityAuthenticator

    authenticator = LDAPIdentityAuthenticator(config=config)
    user = await authenticator.get_authenticated_user(
        None, {"username": "Alice", "password": "alice-pw"}
    )
    assert user["name"] == "alice"
    identity = user["auth_state"]["identity"]
    assert identity["uid"] == 10001 and "teachers" in identity["groups"]

    spawner = make_spawner(config, "alice")
    await spawner.run_auth_state_hook(user["auth_state"])
    profiles = [p["slug"] for p in await spawner.course_profiles()]
    assert profiles == ["general-python", "cs101", "cs101-instructor"]

    pod = to_dict(await spawn_manifest(spawner, "cs101-instructor"))
    kubernetes_validate.validate(pod, kubernetes_validate.utils.latest_version(), True)
    home = storage / "u" / "01" / "alice"  # made before the first start
    info = home.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700
    if os.geteuid() == 0:
        assert info.st_uid == 10001
    return pod


async def test_deploy_config_login_to_valid_pod(deploy_config):
    config, storage = deploy_config
    assert config.Authenticator.enable_auth_state is True
    pod = await login_and_spawn(config, storage)
    container = pod["spec"]["containers"][0]
    mounts = {m["mountPath"]: m.get("readOnly") for m in container["volumeMounts"]}
    assert mounts["/course"] is False and mounts["/m/shareddata"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NB_UID"] == "10001" and env["TZ"]
    # alice is over her soft limit in the storage's repquota report
    assert env["AALTOHUB_QUOTA_PERCENT"] == "102"
    assert env["AALTOHUB_QUOTA_NOTICE"].startswith("/etc/aaltohub/")


async def test_deploy_config_student_is_refused_instructor_variant(deploy_config):
    from tornado import web

    config, _ = deploy_config
    spawner = make_spawner(config, "bob")
    spawner.user_options = {"profile": "cs101-instructor"}
    with pytest.raises(web.HTTPError) as info:
        await spawner.run_pre_spawn_hook()
    assert info.value.status_code == 403


def test_standalone_settings_come_from_the_environment(site):
    # auth_state is on even without a key here: JupyterHub then refuses to
    # start, and check-config names the missing JUPYTERHUB_CRYPT_KEY
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(DEPLOY)).load_config()
    assert config.Authenticator.enable_auth_state is True
    assert config.CourseCatalog.default_image == "example/notebook:base"
    assert config.LDAPIdentity.bind_password == SERVICE_PW
    assert config.KubeSpawner.cpu_limit == 4  # defaulted: nothing else set it


# --- under z2jh ---------------------------------------------------------------------
DEPLOYER_SERVICE = {"grafana": {"url": "http://grafana", "apiToken": "x" * 32}}
DEPLOYER_ROLE = {"monitoring": {"scopes": ["read:metrics"], "services": ["grafana"]}}


def z2jh_values(*overlays: str) -> dict:
    """Our values (and overlays) on the chart defaults that matter here,
    plus a deployer's own service and role, which must survive."""
    values = chart_defaults()
    for name in ("values.yaml", *overlays):
        values = coalesce(values, yaml.safe_load((DEPLOY / name).read_text()))
    values["hub"]["services"] = DEPLOYER_SERVICE
    values["hub"]["loadRoles"] = DEPLOYER_ROLE
    return values


def test_old_style_config_fails_under_z2jh(tmp_path):
    """The loader emulation is faithful enough to catch finding 0."""
    values = z2jh_values()
    old = tmp_path / "old.py"
    old.write_text("c = get_config()\n")
    with pytest.raises(TypeError, match="get_config"):
        z2jh_load(values, {"old": old}, {"old": f"{CONFIG_D}/old.py"})


async def test_z2jh_loads_the_config_and_builds_a_valid_pod(site, monkeypatch):
    values = z2jh_values()
    files = {
        "aaltohub_config": DEPLOY / "jupyterhub_config.py",
        "aaltohub_culler": DEPLOY / "culler_config.py",
    }
    config, namespace = z2jh_load(values, files)
    assert namespace["get_config"].__qualname__.startswith("z2jh_get_config")
    assert not [n for n in namespace if n.lower().startswith("_aaltohub")]
    # auth_state is on, with the chart's key (no JUPYTERHUB_CRYPT_KEY)
    assert config.Authenticator.enable_auth_state is True
    # z2jh's singleuser.* settings are not outranked by the deploy config
    assert "cpu_limit" not in config.CourseSpawner
    assert config.KubeSpawner.cpu_limit == 4
    # services and roles: the deployer's kept, ours added
    names = [s["name"] for s in config.JupyterHub.services]
    assert names == ["grafana", "course-culler"]
    roles = [r["name"] for r in config.JupyterHub.load_roles]
    assert roles == ["monitoring", "course-culler"]
    [culler] = [s for s in config.JupyterHub.services if s["name"] == "course-culler"]
    mount = values["hub"]["extraFiles"]["aaltohub_culler"]["mountPath"]
    assert f"--config={mount}" in culler["command"]
    assert "--url=http://localhost:8081/hub/api" in culler["command"]

    config.CourseSpawner.image = "example/notebook:base"
    pod = await login_and_spawn(config, site)
    init = [c["name"] for c in pod["spec"].get("initContainers", [])]
    assert init == ["block-cloud-metadata"]  # the chart's block is kept
    labels = pod["metadata"]["labels"]
    assert labels["component"] == "singleuser-server"  # network policy


def test_z2jh_config_files_load_in_the_charts_order():
    values = z2jh_values()
    mounts = {
        key: f["mountPath"]
        for key, f in values["hub"]["extraFiles"].items()
        if "/jupyterhub_config.d/" in f["mountPath"]
    }
    assert list(mounts) == ["aaltohub_config"]  # the culler's file is not hub config
    assert mounts["aaltohub_config"].endswith(".py")


# --- against the chart itself (Z2JH_CHART_DIR) -----------------------------------
# The hub image's chart, in part (tests/data/z2jh-chart-4.4.0/README.md);
# Z2JH_CHART_DIR points at another unpacked chart.
CHART = os.environ.get("Z2JH_CHART_DIR") or str(
    Path(__file__).parent / "data" / "z2jh-chart-4.4.0"
)
needs_chart = pytest.mark.skipif(
    not Path(CHART, "values.schema.yaml").is_file(),
    reason=f"no chart at {CHART} (helm pull jupyterhub/jupyterhub"
    " --repo https://hub.jupyter.org/helm-chart/ --version <hub image's> --untar)",
)


def hub_image_chart_version() -> str:
    text = (ROOT / "images" / "hub" / "Dockerfile").read_text()
    return re.search(r"^FROM quay\.io/jupyterhub/k8s-hub:(\S+)", text, re.M).group(1)


@needs_chart
def test_chart_is_the_one_the_hub_image_uses():
    chart = yaml.safe_load(Path(CHART, "Chart.yaml").read_text())
    assert chart["version"] == hub_image_chart_version(), (
        f"Z2JH_CHART_DIR holds chart {chart['version']}, but images/hub/Dockerfile"
        f" builds on {hub_image_chart_version()}: validate against that one"
    )


@needs_chart
@pytest.mark.parametrize("overlays", [(), ("values-staging.yaml",)])
def test_values_validate_against_the_chart_schema(overlays):
    """What helm does with the documented command: chart defaults, our
    values, the --set-file contents, then the chart's values.schema.yaml."""
    values = yaml.safe_load(Path(CHART, "values.yaml").read_text())
    for name in ("values.yaml", *overlays):
        values = coalesce(values, yaml.safe_load((DEPLOY / name).read_text()))
    extra = values["hub"]["extraFiles"]
    extra["aaltohub_config"]["stringData"] = (
        DEPLOY / "jupyterhub_config.py"
    ).read_text()
    extra["aaltohub_culler"]["stringData"] = (DEPLOY / "culler_config.py").read_text()
    schema = yaml.safe_load(Path(CHART, "values.schema.yaml").read_text())
    errors = [
        f"{'.'.join(map(str, e.path))}: {e.message[:200]}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(values)
    ]
    assert errors == []


@needs_chart
def test_the_chart_loads_config_files_as_emulated():
    """The steps z2jh_load re-implements are still the chart's."""
    text = Path(CHART, "files", "hub", "jupyterhub_config.py").read_text()
    for step in CHART_STEPS:
        assert step in text, f"the chart's jupyterhub_config.py no longer has {step!r}"


def test_storage_examples_are_valid_kubernetes():
    docs = list(yaml.safe_load_all((DEPLOY / "storage.yaml").read_text()))
    version = kubernetes_validate.utils.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, True)
    claims = {
        d["metadata"]["namespace"] for d in docs if d["kind"] == "PersistentVolumeClaim"
    }
    assert claims == {"jhub", "jhub-staging"}
    assert all(
        d["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        for d in docs
        if d["kind"] == "PersistentVolume"
    )
