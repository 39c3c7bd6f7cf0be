"""CourseSpawner is a drop-in KubeSpawner.

For a table of KubeSpawner configurations, CourseSpawner with no courses
configured must give the same options form, the same ``user_options`` from
a posted form and the same pod manifest as KubeSpawner itself. With courses
configured, the deployer's own profiles sit in the same list and still run
exactly as under KubeSpawner. Written for this project (not kubespawner's
own tests); manifests are built offline (dummy kubeconfig, ``_mock=True``).
"""

from __future__ import annotations

from types import SimpleNamespace

import kubespawner
import pytest
from jupyterhub.objects import Hub, Server
from jupyterhub.utils import maybe_future
from kubespawner import KubeSpawner
from tornado import web
from traitlets.config import Config

from aaltohub.kube import CourseSpawner
from kube_helpers import MockUser, base_config, make_spawner, spawn_manifest, to_dict

KUBESPAWNER_VERSION = tuple(int(p) for p in kubespawner.__version__.split(".")[:2])

PROFILES = [
    {
        "display_name": "Small",
        "slug": "small",
        "default": True,
        "kubespawner_override": {"cpu_limit": 1, "environment": {"SIZE": "s"}},
    },
    {
        "display_name": "Data science with options",
        "kubespawner_override": {"mem_limit": "2G"},
        "profile_options": {
            "image": {
                "display_name": "Image",
                "choices": {
                    "base": {
                        "display_name": "Base",
                        "kubespawner_override": {"image": "example/base:1"},
                    },
                    "scipy": {
                        "display_name": "SciPy",
                        "default": True,
                        "kubespawner_override": {"image": "example/scipy:1"},
                    },
                },
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Other image",
                    "validation_regex": "^example/.+",
                    "kubespawner_override": {"image": "{value}"},
                },
            }
        },
    },
]


def per_user_profiles(spawner):
    """A callable profile_list, as deployers write them."""
    return [{**PROFILES[0], "display_name": f"Small for {spawner.user.name}"}]


def set_profiles_in_hook(spawner):
    spawner.profile_list = [
        {"display_name": "From the hook", "slug": "hooked", "default": True},
        {
            "display_name": "Big",
            "slug": "big",
            "kubespawner_override": {"mem_limit": "8G", "cpu_limit": 4},
        },
    ]


def configure(name: str) -> Config:
    c = Config()
    c.KubeSpawner.image = "example/notebook:plain"
    c.KubeSpawner.cpu_limit = 2.0
    if name == "profile_list":
        c.KubeSpawner.profile_list = PROFILES
    elif name == "profile_dict":
        c.KubeSpawner.profile_list = {"b": PROFILES[1], "a": PROFILES[0]}
    elif name == "callable":
        c.KubeSpawner.profile_list = per_user_profiles
    elif name == "hook":
        c.KubeSpawner.pre_spawn_hook = set_profiles_in_hook
    elif name == "storage_and_extra":
        c.KubeSpawner.storage_pvc_ensure = True
        c.KubeSpawner.pvc_name_template = "claim-{username}"
        c.KubeSpawner.volumes = {
            "home": {
                "name": "home",
                "persistentVolumeClaim": {"claimName": "claim-{username}"},
            }
        }
        c.KubeSpawner.volume_mounts = {
            "home": {"name": "home", "mountPath": "/home/jovyan"}
        }
        c.KubeSpawner.environment = {"GREETING": "hello {username}"}
        c.KubeSpawner.extra_pod_config = {"priorityClassName": "user"}
        c.KubeSpawner.extra_labels = {"team": "x"}
        c.KubeSpawner.node_selector = {"pool": "users"}
        c.KubeSpawner.uid = 1000
    return c


def spawner(cls, config, username="alice"):
    user = MockUser(username)
    user.server = Server(ip="127.0.0.1", port=8888)  # fixed: comparable
    return cls(
        config=config,
        user=user,
        hub=Hub(ip="127.0.0.1", port=8081),
        orm_spawner=SimpleNamespace(name="", server=None, user_options=None),
        _mock=True,
    )


async def form_options_and_pod(cls, config, formdata, user_options=None):
    s = spawner(cls, config)
    s.user_options = {}
    s.clear_state()
    await maybe_future(s.run_pre_spawn_hook())  # as JupyterHub calls it
    form = await s.get_options_form()
    options = s.options_from_form(formdata) if formdata is not None else {}
    pod = to_dict(
        await spawn_manifest(s, None)
        if not options and user_options is None
        else await _spawn_with(s, user_options if user_options is not None else options)
    )
    return form, options, pod


async def _spawn_with(s, options):
    s.user_options = options
    s.clear_state()
    await maybe_future(s.run_pre_spawn_hook())
    await s.load_user_options()
    return await s.get_pod_manifest()


CASES = [
    ("plain", None, None),
    ("profile_list", {"profile": ["small"]}, None),
    (
        "profile_list",
        {
            "profile": ["data-science-with-options"],
            "profile-option-data-science-with-options--image": ["base"],
        },
        None,
    ),
    (
        "profile_list",
        None,
        {
            "profile": "data-science-with-options",
            "image--unlisted-choice": "example/custom:2",
        },
    ),
    ("profile_dict", {"profile": ["small"]}, None),
    ("callable", None, {}),
    ("hook", {"profile": ["big"]}, None),
    ("storage_and_extra", None, None),
]


@pytest.mark.parametrize("name,formdata,user_options", CASES)
async def test_without_courses_it_is_kubespawner(name, formdata, user_options):
    if name == "profile_dict" and KUBESPAWNER_VERSION < (7, 1):
        pytest.skip("kubespawner < 7.1 accepts profile_list only as a list")
    kube = await form_options_and_pod(
        KubeSpawner, configure(name), formdata, user_options
    )
    course = await form_options_and_pod(
        CourseSpawner, configure(name), formdata, user_options
    )
    assert course[0] == kube[0], "options form differs"
    assert course[1] == kube[1], "user_options from the form differ"
    assert course[2] == kube[2], "pod manifest differs"


async def test_a_callable_profile_list_set_after_construction_is_used():
    # e.g. from an auth_state_hook: config read when used, never snapshotted.
    s = spawner(CourseSpawner, configure("plain"))
    s.profile_list = per_user_profiles
    form = await s.get_options_form()
    assert "Small for alice" in form
    pod = to_dict(await _spawn_with(s, {"profile": "small"}))
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["SIZE"] == "s"


async def test_bad_unlisted_choice_is_refused_like_kubespawner():
    for cls in (KubeSpawner, CourseSpawner):
        s = spawner(cls, configure("profile_list"))
        with pytest.raises(ValueError, match="failed validation regex"):
            await _spawn_with(
                s,
                {
                    "profile": "data-science-with-options",
                    "image--unlisted-choice": "evil/image",
                },
            )


# --- with courses: one list, course checks for course choices only ------------------
@pytest.fixture
def mixed(catalog_dir, users_file):
    c = base_config(catalog_dir, users_file)
    c.KubeSpawner.profile_list = PROFILES
    return c


async def test_deployer_profiles_and_courses_share_one_list(mixed):
    s = make_spawner(mixed, "student1")
    slugs = [p["slug"] for p in await s.course_profiles()]
    assert slugs[:3] == ["general-python", "small", "data-science-with-options"]
    assert {"intro", "ml-private"} <= set(slugs)
    form = await s.get_options_form()
    assert "Data science with options" in form and "Machine Learning" in form


async def test_a_deployer_choice_runs_as_under_kubespawner(mixed):
    course = spawner(CourseSpawner, mixed, "student1")
    course_pod = to_dict(await _spawn_with(course, {"profile": "small"}))
    plain = Config(mixed)
    plain.KubeSpawner.image = "example/notebook:base"  # CourseSpawner's in mixed
    plain.KubeSpawner.cpu_limit, plain.KubeSpawner.mem_limit = 1.0, "1G"
    kube = spawner(KubeSpawner, plain, "student1")
    kube_pod = to_dict(await _spawn_with(kube, {"profile": "small"}))
    assert course_pod == kube_pod


async def test_a_deployer_choice_needs_no_directory(mixed):
    # No identity at all for this user: a course would be refused, the
    # deployer's own profile starts as under KubeSpawner.
    s = make_spawner(mixed, "not-in-the-directory")
    await spawn_manifest(s, "small")
    assert s.server_record is None
    with pytest.raises(web.HTTPError) as info:
        await spawn_manifest(make_spawner(mixed, "not-in-the-directory"), "intro")
    assert info.value.status_code == 403


async def test_a_course_cannot_take_over_a_deployer_slug(mixed, catalog_dir):
    (catalog_dir / "small.yaml").write_text("name: Hijack\nimage: evil/image:1\n")
    pod = to_dict(await spawn_manifest(make_spawner(mixed, "student1"), "small"))
    assert pod["spec"]["containers"][0]["image"] == "example/notebook:base"


async def test_course_choices_are_still_authorized(mixed):
    with pytest.raises(web.HTTPError) as info:
        await spawn_manifest(make_spawner(mixed, "student2"), "ml-private")
    assert info.value.status_code == 403


async def test_with_courses_only_declared_options_are_accepted(mixed):
    s = make_spawner(mixed, "student1")
    ok = {
        "profile": "data-science-with-options",
        "image--unlisted-choice": "example/custom:3",
    }
    pod = to_dict(await _spawn_with(s, ok))
    assert pod["spec"]["containers"][0]["image"] == "example/custom:3"
    for bad in (
        {"profile": "intro", "image": "x"},  # intro declares no options
        {"profile": "small", "pad": "x" * 5000},
    ):
        with pytest.raises(web.HTTPError) as info:
            await _spawn_with(make_spawner(mixed, "student1"), bad)
        assert info.value.status_code == 400
        assert "The server options could not be used" in info.value.jupyterhub_message


async def test_a_profile_list_set_after_construction_is_not_rendered_early():
    # Starting from user_options alone must not render the options form:
    # a profile with only an unlisted choice has no 'choices' for KubeSpawner's
    # template (kubespawner's own test_unlisted_choice_non_string_override).
    for cls in (KubeSpawner, CourseSpawner):
        s = spawner(cls, configure("plain"))
        s.profile_list = [
            {
                "display_name": "CPU only",
                "slug": "cpu",
                "profile_options": {
                    "image": {
                        "display_name": "Image",
                        "unlisted_choice": {
                            "enabled": True,
                            "kubespawner_override": {"image": "{value}"},
                        },
                    }
                },
            }
        ]
        s.user_options = {"profile": "cpu", "image--unlisted-choice": "x/y:1"}
        await s.load_user_options()
        assert s.image == "x/y:1"
