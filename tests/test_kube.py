"""CourseSpawner pod manifests, checked against real Kubernetes schemas.

KubeSpawner runs with a dummy kubeconfig and ``_mock=True``: a Kubernetes
API server cannot run on this machine, and building a manifest needs none.
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import kubernetes_validate
import pytest
from tornado import web
from traitlets import TraitError

from kube_helpers import base_config, make_spawner, spawn_manifest, to_dict

K8S_VERSION = kubernetes_validate.utils.latest_version()


@pytest.fixture
def config(catalog_dir, users_file):
    return base_config(catalog_dir, users_file)


async def manifest(config, user, profile, admin=False, name=""):
    spawner = make_spawner(config, user, admin=admin, name=name)
    pod = to_dict(await spawn_manifest(spawner, profile))
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    return pod


def container(pod):
    return pod["spec"]["containers"][0]


def mounts(pod) -> dict[str, tuple[str, bool]]:
    """mountPath -> (subPath, readOnly); asserts each names a defined volume."""
    volumes = {v["name"] for v in pod["spec"]["volumes"]}
    out = {}
    for m in container(pod)["volumeMounts"]:
        assert m["name"] in volumes, f"mount {m['mountPath']} names no volume"
        out[m["mountPath"]] = (m.get("subPath", ""), m.get("readOnly", False))
    return out


def env(pod) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(pod)["env"]}


def security(pod) -> dict:
    return {
        **pod["spec"].get("securityContext", {}),
        **container(pod)["securityContext"],
    }


async def test_student_on_public_datadir_course(config):
    pod = await manifest(config, "student1", "intro")
    m = mounts(pod)
    assert m["/notebooks"] == ("u/34/student1", False)
    assert m["/coursedata"] == ("course/intro/data", True)
    assert m["/srv/nbgrader/exchange"] == ("exchange/intro", False)
    assert "/course" not in m
    sec = security(pod)
    assert (sec["runAsUser"], sec["runAsGroup"]) == (1001234, 70000)
    assert sec["runAsNonRoot"] is True and sec["allowPrivilegeEscalation"] is False
    assert "supplementalGroups" not in sec
    e = env(pod)
    assert e["NB_USER"] == "student1" and e["NB_UID"] == "1001234"
    assert e["NB_COURSE"] == "intro" and e["COURSEDATA"] == "/coursedata/"
    assert "NB_UMASK" not in e
    assert container(pod)["image"] == "example/notebook:5.0"  # DEFAULT alias
    assert pod["metadata"]["name"] == "jupyter-student1-intro"
    assert pod["metadata"]["labels"]["aaltohub/course"] == "intro"
    assert container(pod)["workingDir"] == "/notebooks"  # kubectl exec lands home


async def test_instructor_direct_mode_gets_writable_course(config):
    pod = await manifest(config, "instructor1", "intro-instructor")
    m = mounts(pod)
    assert m["/course"] == ("course/intro/files", False)
    assert m["/coursedata"] == ("course/intro/data", False)
    sec = security(pod)
    assert sec["runAsUser"] == 1002001 and sec["supplementalGroups"] == [70001]
    assert env(pod)["NB_UMASK"] == "0007"
    assert env(pod)["AALTO_NB_ENABLE_FORMGRADER"] == "1"
    # instructor defaults: mem_guarantee raised to 1G
    assert container(pod)["resources"]["requests"]["memory"] == 1024**3


async def test_instructor_root_then_switch_mode(config):
    config.UIDHook.mode = "root-then-switch"
    pod = await manifest(config, "instructor1", "intro-instructor")
    sec = security(pod)
    assert sec["runAsUser"] == 0
    assert "runAsNonRoot" not in sec
    e = env(pod)
    assert (e["NB_UID"], e["NB_GID"], e["NB_USER"]) == (
        "1002001",
        "70001",
        "instructor1",
    )
    assert e["NB_SUPPLEMENTARY_GROUPS"] == "70001"
    assert e["NB_GROUP"] == e["NB_CREATE_GROUPS"].split(":")[0] == "jupyter-intro"


async def test_course_group_name_follows_the_catalog_template(config):
    config.UIDHook.mode = "root-then-switch"
    config.CourseCatalog.instructor_group_template = "course-{slug}"
    e = env(await manifest(config, "instructor1", "intro-instructor"))
    assert (e["NB_GROUP"], e["NB_CREATE_GROUPS"]) == (
        "course-intro",
        "course-intro:70001",
    )


async def test_unsafe_storage_template_is_refused_before_any_spawn(config):
    config.StoragePaths.home_sub_path = "../{username}"
    with pytest.raises(TraitError, match=r"c.StoragePaths.home_sub_path = '\.\./"):
        make_spawner(config, "student1")


async def test_group_enrolled_student_can_submit_under_restrict_submit(config):
    # exam.yaml: restrict_submit; "exam-takers" enrols through a directory
    # group, not the roster. Enrolment is one rule (access.enrolment).
    pod = await manifest(config, "examtaker", "exam")
    assert mounts(pod)["/srv/nbgrader/exchange"] == ("exchange/exam2026", False)
    visitor = await manifest(config, "student2", "exam")
    assert mounts(visitor)["/srv/nbgrader/exchange"] == ("exchange/exam2026", True)


async def test_admin_gets_instructor_variant_of_private_course(config):
    pod = await manifest(config, "admin1", "ml-private-instructor", admin=True)
    res = container(pod)["resources"]
    assert res["limits"] == {"cpu": 4, "memory": 8 * 1024**3}
    assert res["requests"]["memory"] == 2 * 1024**3
    e = env(pod)
    assert e["OMP_NUM_THREADS"] == "4"
    assert (e["JUPYTERHUB_CULL_TIMEOUT"], e["JUPYTERHUB_CULL_MAX_AGE"]) == (
        "1800",
        "14400",
    )
    assert "/course" in mounts(pod)


async def test_enrolled_student_private_course_resources_and_dated_image(config):
    pod = await manifest(config, "student1", "ml-private")
    assert container(pod)["resources"]["limits"] == {"cpu": 2, "memory": 2 * 1024**3}
    assert env(pod)["OMP_NUM_THREADS"] == "2"
    # [standard, 2024-03-01]: newest image of the series not newer than the date
    assert container(pod)["image"] == "example/notebook:7.0"


async def test_restrict_submit_exchange_readonly_for_non_enrolled(config):
    outsider = mounts(await manifest(config, "student2", "exam"))
    assert outsider["/srv/nbgrader/exchange"] == ("exchange/exam2026", True)
    enrolled_pod = await manifest(config, "student1", "exam")
    assert mounts(enrolled_pod)["/srv/nbgrader/exchange"] == (
        "exchange/exam2026",
        False,
    )
    assert env(enrolled_pod)["NB_UMASK"] == "0077"
    assert security(enrolled_pod)["supplementalGroups"] == [71003]


async def test_course_without_gid_has_no_course_storage(config):
    pod = await manifest(config, "student2", "nogid")
    assert set(mounts(pod)) == {"/notebooks", "/etc/aaltohub"}
    assert container(pod)["image"] == "plain/image:1"


async def test_general_profile_is_not_a_course(config):
    pod = await manifest(config, "student1", "general-python")
    assert set(mounts(pod)) == {"/notebooks", "/etc/aaltohub"}
    assert container(pod)["image"] == "example/notebook:general"
    assert pod["metadata"]["name"] == "jupyter-student1"
    assert pod["metadata"]["labels"]["aaltohub/course"] == "generic"
    assert container(pod)["workingDir"] == "/notebooks"


async def test_named_server_pod_name(config):
    pod = await manifest(config, "student1", "intro", name="second")
    assert pod["metadata"]["name"] == "jupyter-student1-intro-second"


async def test_z2jh_dict_form_volumes_and_labels_kept(config):
    config.CourseSpawner.volumes = {
        "01-scratch": {"name": "scratch", "emptyDir": {}},
    }
    config.CourseSpawner.volume_mounts = {
        "01-scratch": {"name": "scratch", "mountPath": "/scratch"},
    }
    config.CourseSpawner.common_labels = {"app": "jupyterhub", "release": "hub"}
    pod = await manifest(config, "student1", "intro")
    assert "/scratch" in mounts(pod) and "/coursedata" in mounts(pod)
    labels = pod["metadata"]["labels"]
    assert labels["component"] == "singleuser-server"
    assert (labels["app"], labels["release"]) == ("jupyterhub", "hub")


# --- authorization ------------------------------------------------------------
@pytest.mark.parametrize(
    "user,profile",
    [
        ("student2", "ml-private"),  # private, not enrolled
        ("student1", "intro-instructor"),  # not an instructor
        ("student1", "old"),  # archived
        ("student1", "no-such-course"),
        ("student1", "nogid-instructor"),  # no instructor mode at all
    ],
)
async def test_crafted_profile_refused_with_403(config, user, profile):
    spawner = make_spawner(config, user)
    spawner.user_options = {"profile": profile}
    with pytest.raises(web.HTTPError) as info:
        await spawner.run_pre_spawn_hook()
    assert info.value.status_code == 403
    assert user in info.value.jupyterhub_message
    # the form path refuses the same choice before anything starts
    with pytest.raises(web.HTTPError) as info:
        await spawner.run_options_from_form({"profile": [profile]})
    assert info.value.status_code == 403


async def test_refused_even_if_checks_before_start_were_skipped(config):
    spawner = make_spawner(config, "student2")
    spawner.user_options = {"profile": "ml-private"}
    with pytest.raises(web.HTTPError):
        await spawner.load_user_options()  # start() path: still refused


async def test_unknown_user_and_system_uid_refused(config):
    for user in ("nobody-here", "sysuser"):
        spawner = make_spawner(config, user)
        spawner.user_options = {"profile": "intro"}
        with pytest.raises(web.HTTPError) as info:
            await spawner.run_pre_spawn_hook()
        assert info.value.status_code == 403


# --- profile list ---------------------------------------------------------------
async def slugs(config, user, admin=False):
    spawner = make_spawner(config, user, admin=admin)
    return [p["slug"] for p in await spawner.course_profiles()]


async def test_profile_list_per_user(config):
    assert await slugs(config, "student1") == [
        "general-python",
        "nogid",
        "exam",
        "intro",
        "ml-private",
    ]
    assert "ml-private" not in await slugs(config, "student2")
    instructor = await slugs(config, "instructor1")
    assert {"intro-instructor", "ml-private-instructor"} <= set(instructor)
    assert "old" not in instructor and "old-instructor" not in instructor
    assert "exam-instructor" in await slugs(config, "groupie")  # jupyter-exam group
    admin = await slugs(config, "admin1", admin=True)
    assert {"exam-instructor", "intro-instructor", "ml-private-instructor"} <= set(
        admin
    )
    assert "nogid-instructor" not in admin


async def test_single_course_is_default(config, catalog_dir):
    for f in catalog_dir.iterdir():
        if f.name not in ("intro.yaml", "IMAGES.yaml"):
            f.unlink()
    config.CourseSpawner.general_profiles = []
    spawner = make_spawner(config, "student2")
    profiles = await spawner.course_profiles()
    assert [(p["slug"], p.get("default")) for p in profiles] == [("intro", True)]
    # and with no profile chosen, the default course is what starts
    pod = to_dict(await spawn_manifest(spawner, None))
    assert pod["metadata"]["name"] == "jupyter-student2-intro"


# --- reuse of the spawner object ------------------------------------------------
async def test_no_setting_leaks_between_spawns(config, catalog_dir):
    (catalog_dir / "nogid.yaml").write_text(
        "name: Leaky\nkubespawner_override:\n  environment: {LEAK: 'yes'}\n"
        "  node_selector: {gpu: 'true'}\n  mem_limit: 3G\n"
    )
    spawner = make_spawner(config, "instructor1")
    first = to_dict(await spawn_manifest(spawner, "nogid"))
    assert env(first)["LEAK"] == "yes"
    await spawn_manifest(spawner, "intro-instructor")
    pod = to_dict(await spawn_manifest(spawner, "general-python"))
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    assert set(mounts(pod)) == {"/notebooks", "/etc/aaltohub"}
    assert "LEAK" not in env(pod) and "NB_UMASK" not in env(pod)
    assert not pod["spec"].get("nodeSelector")
    assert container(pod)["resources"]["limits"]["memory"] == 1024**3
    assert "supplementalGroups" not in security(pod)
    assert pod["metadata"]["name"] == "jupyter-instructor1"
    assert pod["metadata"]["labels"]["aaltohub/course"] == "generic"
    # and the class-wide config was never mutated in place
    assert "LEAK" not in config.CourseSpawner.get("environment", {})


async def test_group_overrides_do_not_outlive_the_group(config):
    # JupyterHub applies group overrides after clear_state and merges them
    # into trait dicts in place; a user who leaves the group gets none.
    config.CourseSpawner.group_overrides = {
        "gpu": {
            "groups": ["gpu"],
            "spawner_override": {"node_selector": {"gpu": "yes"}},
        }
    }
    spawner = make_spawner(config, "student1")
    spawner.user.groups = [SimpleNamespace(name="gpu")]
    first = to_dict(await spawn_manifest(spawner, "intro"))
    assert first["spec"]["nodeSelector"] == {"gpu": "yes"}
    spawner.user.groups = []  # left the group
    later = to_dict(await spawn_manifest(spawner, "intro"))
    assert not later["spec"].get("nodeSelector")
    assert "node_selector" not in config.CourseSpawner  # config never mutated


async def test_start_notices_belong_to_one_spawn(config):
    spawner = make_spawner(config, "student1")
    spawner.start_notices.append("a leftover pod was replaced")
    await spawn_manifest(spawner, "intro")
    assert spawner.start_notices == []


async def test_general_profiles_need_a_slug(config):
    # Resolved before courses by slug: without one, a course file of the
    # same name could take the profile over.
    config.CourseSpawner.general_profiles = [{"display_name": "Python Basic"}]
    with pytest.raises(TraitError, match="needs a 'slug'"):
        make_spawner(config, "student1")


async def test_course_state_survives_hub_restart(config):
    spawner = make_spawner(config, "student1")
    await spawn_manifest(spawner, "ml-private")
    state = spawner.get_state()
    restarted = make_spawner(config, "student1")
    restarted.load_state(state)
    assert (restarted.course_slug, restarted.course_role) == ("ml-private", "student")
    assert restarted.get_state()["aaltohub"]["cull_inactive_timeout"] == 1800
    assert restarted.pod_name == "jupyter-student1-ml-private"
    record = restarted.server_record
    assert (record.image, record.uid) == ("example/notebook:7.0", 1001234)
    assert record.started  # when the plan was applied


async def test_state_written_before_the_record_was_versioned_still_loads(config):
    # A pod started by the previous release keeps running across the upgrade.
    old = {
        "pod_name": "jupyter-student1-ml-private",
        "aaltohub": {"course": "ml-private", "role": "student", "cull_max_age": 60},
    }
    restarted = make_spawner(config, "student1")
    restarted.load_state(old)
    assert (restarted.course_slug, restarted.pod_name) == (
        "ml-private",
        "jupyter-student1-ml-private",
    )
    assert restarted.get_state()["aaltohub"]["version"] == 2
    assert restarted.get_state()["aaltohub"]["cull_max_age"] == 60


# --- files reach the server byte for byte ---------------------------------------
async def test_generated_files_are_loaded_by_nbgrader_and_git(config, tmp_path):
    course_root = tmp_path / "course"  # stands in for /course: nbgrader opens its log
    course_root.mkdir()
    config.NbgraderHook.course_root = str(course_root)
    pod = await manifest(config, "instructor1", "intro-instructor")
    files_volume = next(v for v in pod["spec"]["volumes"] if "downwardAPI" in v)
    annotations = pod["metadata"]["annotations"]
    root = tmp_path / "etc-aaltohub"
    for item in files_volume["downwardAPI"]["items"]:
        key = item["fieldRef"]["fieldPath"].split("['")[1].rstrip("']")
        target = root / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(annotations[key])  # what the kubelet would write
    assert mounts(pod)["/etc/aaltohub"] == ("", True)

    run_env = {**os.environ, "JUPYTER_CONFIG_PATH": str(root / "jupyter")}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from nbgrader.apps import NbGraderApp; a = NbGraderApp();"
            " a.initialize([]); c = a.config;"
            " print(c.CourseDirectory.course_id, c.Exchange.root,"
            " c.NbGrader.logfile, c.Exchange.max_file_size)",
        ],
        env=run_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == [
        "intro",
        "/srv/nbgrader/exchange",
        f"{course_root}/.nbgrader.log",
        "2000",
    ]

    home = tmp_path / "home"
    home.mkdir()
    git_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_CONFIG_SYSTEM": str(root / "gitconfig"),
    }

    def git_name():
        return subprocess.run(
            ["git", "config", "user.name"], env=git_env, capture_output=True, text=True
        ).stdout.strip()

    assert git_name() == "Ina {Structor}"
    (home / ".gitconfig").write_text("[user]\n\tname = My Own Name\n")
    assert git_name() == "My Own Name"  # the user's ~/.gitconfig wins


async def test_authenticator_and_spawner_share_one_identity_cache(config):
    from jupyterhub.auth import Authenticator

    from aaltohub.auth import IdentityAuthenticatorMixin

    class SiteAuthenticator(IdentityAuthenticatorMixin, Authenticator):
        pass

    config.SiteAuthenticator.identity_class = "aaltohub.identity.StaticIdentity"
    authenticator = SiteAuthenticator(config=config)
    spawner = make_spawner(config, "student1")
    assert authenticator.identity_provider is spawner.identity_provider
    await authenticator.identity_provider.lookup("student1")
    assert spawner.identity_provider.cached("student1").uid == 1001234


async def test_plan_notices_appear_in_spawn_progress(config, monkeypatch):
    from kubespawner import KubeSpawner

    async def pod_events(self):  # stands in for events from the k8s API
        yield {"progress": 10, "message": "Pod scheduled"}
        yield {"progress": 50, "message": "Pulling image"}

    monkeypatch.setattr(KubeSpawner, "progress", pod_events)
    spawner = make_spawner(config, "student1")
    await spawn_manifest(spawner, "intro")
    spawner._plan.notices.append("Your home is 95 % full.")
    messages = [e["message"] async for e in spawner.progress()]
    assert messages == ["Your home is 95 % full.", "Pod scheduled", "Pulling image"]
