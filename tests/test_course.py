"""course.py: validation of one course file, above all its kubespawner_override.

A course file is written by a course editor, who is trusted less than the
deployer: nothing in it may weaken a server's isolation.
"""

from __future__ import annotations

import datetime

import pytest

from aaltohub.course import CourseError, build_course
from aaltohub.course_overrides import ALLOWED_OVERRIDE_KEYS, REFUSED_OVERRIDE_KEYS


def override(value, **kwargs):
    return build_course("c", {"kubespawner_override": value}, **kwargs)


def refused(value, **kwargs) -> str:
    with pytest.raises(CourseError) as e:
        override(value, **kwargs)
    message = str(e.value)
    assert message.startswith("course file c.yaml: "), message
    return message


# --- 1. the allow-list --------------------------------------------------------------
def test_allowed_keys_load_with_their_values():
    value = {
        "image": "quay.io/jupyter/scipy-notebook:2025-01-06",
        "cpu_limit": 2,
        "cpu_guarantee": 0.5,
        "mem_limit": "4G",
        "mem_guarantee": 2**30,
        "extra_resource_limits": {"nvidia.com/gpu": "1"},
        "extra_resource_guarantees": {"nvidia.com/gpu": 1},
        "node_selector": {"cs-aalto/gpu": "true", "kubernetes.io/hostname": "n3"},
        "tolerations": [
            {"key": "cs-aalto/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "cs-aalto/app", "operator": "Equal", "value": "jupyter"},
            {"key": "hub.jupyter.org/dedicated", "value": "user"},  # z2jh's
        ],
        "extra_labels": {"course-term": "2026-spring", "team": "{username}"},
        "extra_annotations": {"example.org/owner": "Course {username}"},
        "environment": {"OMP_NUM_THREADS": "2", "COURSE_API": "https://x/{username}"},
        "default_url": "/lab/tree/notebooks",
    }
    assert set(value) <= ALLOWED_OVERRIDE_KEYS
    assert override(value).kubespawner_override == value


@pytest.mark.parametrize(
    "key,value",
    [
        ("uid", 0),
        ("gid", 0),
        ("fs_gid", 0),
        ("supplemental_gids", [0]),
        ("privileged", True),
        ("allow_privilege_escalation", True),
        ("container_security_context", {"runAsUser": 0}),
        ("pod_security_context", {"runAsUser": 0}),
        ("extra_pod_config", {"hostPID": True}),
        ("extra_container_config", {"securityContext": {"privileged": True}}),
        ("extra_containers", [{"name": "x", "image": "busybox"}]),
        ("volumes", [{"name": "root", "hostPath": {"path": "/"}}]),
        ("volume_mounts", [{"name": "root", "mountPath": "/host"}]),
        ("service_account", "hub"),
        ("automount_service_account_token", True),
        ("init_containers", [{"name": "x", "image": "busybox"}]),
        ("lifecycle_hooks", {"postStart": {"exec": {"command": ["sh"]}}}),
        ("cmd", ["bash", "-c", "id"]),
        ("hub_connect_url", "http://evil.example.org"),
        ("env_keep", ["JUPYTERHUB_CRYPT_KEY"]),
        ("server_token_scopes", ["admin:users"]),
        ("pvc_name_template", "claim-otheruser"),
        ("namespace", "kube-system"),
    ],
)
def test_keys_that_weaken_isolation_are_always_refused(key, value):
    assert key in REFUSED_OVERRIDE_KEYS
    message = refused({key: value})
    assert f"kubespawner_override key '{key}' is not allowed" in message
    assert "cannot change uid, gid, security context, privileges" in message
    # ... and the deployer cannot allow them either
    message = refused({key: value}, extra_override_keys={key})
    assert f"kubespawner_override key '{key}' is not allowed" in message


def test_other_keys_are_refused_unless_the_deployer_allows_them():
    message = refused({"priority_class_name": "high"})
    assert "kubespawner_override key 'priority_class_name' is not allowed" in message
    assert "c.CourseCatalog.extra_override_keys" in message
    course = override(
        {"priority_class_name": "high"}, extra_override_keys={"priority_class_name"}
    )
    assert course.kubespawner_override == {"priority_class_name": "high"}


def test_reference_deployment_keys_become_course_settings():
    # Aalto wrote cull limits and the JupyterLab switch in the override
    course = override(
        {
            "cull_inactive_time": 7200,
            "cull_max_age": 36000,
            "x_jupyter_enable_lab": False,
        }
    )
    assert course.kubespawner_override == {}
    assert (course.cull.inactive_timeout, course.cull.max_age) == (7200, 36000)
    assert course.jupyterlab is False
    assert "'cull_max_age' must be a non-negative number" in refused(
        {"cull_max_age": "8h"}
    )
    # what the hub itself decides stays refused
    assert "the hub sets it" in refused({"course_slug": "other"})
    assert "the hub sets it" in refused({"as_instructor": True})


def test_cull_in_two_places_is_a_conflict():
    with pytest.raises(CourseError, match="keep one of them"):
        build_course(
            "c",
            {"cull": {"max_age": 60}, "kubespawner_override": {"cull_max_age": 90}},
        )


@pytest.mark.parametrize(
    "limits,defaults,only_lengthens,expected",
    [
        ((None, None), (3600, 28800), False, (3600, 28800)),
        ((600, 3600), (3600, 28800), False, (600, 3600)),  # aaltohub: may shorten
        ((600, 3600), (3600, 28800), True, (3600, 28800)),  # Aalto: only lengthen
        ((7200, 86400), (3600, 28800), True, (7200, 86400)),
    ],
)
def test_effective_cull_limits(limits, defaults, only_lengthens, expected):
    from aaltohub.course import Cull

    cull = Cull(*limits, only_lengthens=only_lengthens)
    assert cull.effective(*defaults) == expected


def test_every_problem_in_a_file_is_reported():
    data = {
        "gid": "x",
        "uid": -1,
        "colour": "red",
        "kubespawner_override": {"privileged": True, "mem_limit": "lots"},
        "image": 5,
    }
    with pytest.raises(CourseError) as e:
        build_course("c", data)
    assert len(e.value.problems) == 6, e.value.problems
    message = str(e.value)
    assert message.startswith("course file c.yaml: 6 problems: (1) key 'gid'")
    for part in (
        "'uid'",
        "'colour' is unknown",
        "'privileged'",
        "mem_limit",
        "'image'",
    ):
        assert part in message


def test_aalto_uid_and_archived_are_read():
    course = build_course("c", {"gid": 70001, "uid": 1234, "archived": True})
    assert (course.uid, course.archived, course.archive) == (1234, True, False)


@pytest.mark.parametrize(
    "value,expected",
    [
        ({"cpu_limit": "lots"}, "'cpu_limit' must be a non-negative number"),
        ({"cpu_limit": float("inf")}, "'cpu_limit' must be a non-negative number"),
        ({"mem_limit": "4 gigs"}, "'mem_limit' must be bytes or a size"),
        # what JupyterHub itself would refuse at every spawn of the course
        ({"mem_guarantee": "512Mi"}, "write 512M: JupyterHub's sizes are already"),
        ({"mem_limit": "512"}, "'mem_limit' must be bytes or a size"),
        ({"image": ""}, "'image' must be an image name"),
        ({"image": "a b"}, "'image' must be an image name"),
        ({"node_selector": {"gpu": True}}, "quote it"),
        ({"node_selector": {"gpu": None}}, "kubespawner_override.node_selector"),
        ({"node_selector": ["gpu"]}, "must be a mapping"),
        (
            {"node_selector": {"hub.jupyter.org/node-purpose": "core"}},
            "is reserved for the hub",
        ),
        ({"extra_resource_limits": {"nvidia.com/gpu": "many"}}, "quantity"),
        ({"tolerations": {"key": "x"}}, "must be a list of tolerations"),
        ({"tolerations": [{"operator": "Exists"}]}, "needs a 'key'"),
        ({"tolerations": [{"key": "x", "effect": "Sometimes"}]}, "'effect'"),
        ({"tolerations": [{"key": "x", "hostPath": "/"}]}, "hostPath' is unknown"),
        (
            {"tolerations": [{"key": "node-role.kubernetes.io/control-plane"}]},
            "is reserved for the hub",
        ),
        ({"extra_labels": {"component": "singleuser-server"}}, "reserved"),
        ({"extra_labels": {"hub.jupyter.org/network-access-hub": "true"}}, "reserved"),
        ({"extra_labels": {"bad key!": "x"}}, "not a valid Kubernetes key"),
        (
            {
                "extra_annotations": {
                    "container.apparmor.security.beta.kubernetes.io/notebook": "x"
                }
            },
            "reserved",
        ),
        ({"extra_annotations": {"aaltohub/file.x": "x"}}, "reserved"),
        ({"environment": {"FOO": {"valueFrom": {"secretKeyRef": {}}}}}, "text"),
        ({"environment": {"FOO": True}}, "quote it"),
        ({"environment": {"FOO BAR": "x"}}, "not a valid variable name"),
        ({"environment": {"X": "{username.__class__}"}}, "'{username.__class__}'"),
        ({"environment": {"X": "{"}}, "write '{{' or '}}'"),
        ({"default_url": "https://evil.example.org/"}, "a path"),
        ({"default_url": "//evil.example.org/"}, "a path"),
    ],
)
def test_override_values_are_type_checked(value, expected):
    message = refused(value)
    [key] = value
    assert f"kubespawner_override.{key}" in message or f"'{key}'" in message
    assert expected in message


@pytest.mark.parametrize(
    "name",
    [
        "NB_UID",
        "NB_GID",
        "NB_USER",
        "NB_GROUP",
        "NB_UMASK",
        "NB_SUPPLEMENTARY_GROUPS",
        "GRANT_SUDO",
        "CHOWN_HOME",
        "JUPYTERHUB_API_URL",
        "JUPYTERHUB_API_TOKEN",
        "JPY_API_TOKEN",
        "JUPYTER_CONFIG_PATH",
        "GIT_CONFIG_SYSTEM",
        "GIT_AUTHOR_EMAIL",
        "LD_PRELOAD",
        "PATH",
        "PYTHONPATH",
        "BASH_ENV",
        "HOME",
        "AALTO_NB_ENABLE_FORMGRADER",
        "AALTOHUB_QUOTA_NOTICE",
    ],
)
def test_environment_cannot_change_identity_or_what_runs(name):
    message = refused({"environment": {name: "x"}})
    assert f"'kubespawner_override.environment': variable '{name}'" in message
    assert "is set by the hub" in message


def test_override_must_be_a_mapping_of_names():
    assert "must be a mapping of KubeSpawner options" in refused(["image"])
    assert "must be a mapping of KubeSpawner options" in refused({1: "x"})


# --- numbers, dates: values that crashed the catalog --------------------------------
@pytest.mark.parametrize(
    "data",
    [
        {"cull": {"inactive_timeout": float("inf")}},
        {"cull": {"max_age": float("nan")}},
        {"resources": {"student": {"cpu_limit": float("nan")}}},
    ],
)
def test_non_finite_numbers_are_refused(data):
    with pytest.raises(CourseError, match="must be a non-negative number"):
        build_course("c", data)


def test_dated_image_needs_a_date_not_a_time():
    with pytest.raises(CourseError, match=r"\[series, YYYY-MM-DD\]"):
        build_course("c", {"image": ["standard", datetime.datetime(2024, 1, 1, 10)]})


def test_long_values_are_shortened_in_messages():
    with pytest.raises(CourseError) as e:
        build_course("c", {"gid": [list(range(1000))] * 1000})
    assert len(str(e.value)) < 400


@pytest.mark.parametrize("slug", ["intro\n", "intro\n-x"])
def test_names_are_full_matches(slug):
    with pytest.raises(CourseError, match="file name must be"):
        build_course(slug, {})
    with pytest.raises(CourseError, match="not a valid variable name"):
        override({"environment": {"COURSE_X\n": "1"}})


@pytest.mark.parametrize(
    "alias",
    ["singleuser_privileged", "singleuser_extra_pod_config", "user_storage_class"],
)
def test_kubespawners_deprecated_aliases_are_refused_even_if_allowed(alias):
    # KubeSpawner 7 maps these onto privileged, extra_pod_config ... through
    # a property: allowing one would reopen the refused trait.
    with pytest.raises(CourseError, match="not allowed"):
        override({alias: True}, extra_override_keys={alias})


@pytest.mark.parametrize("size", ["2G", "512M", "1.5G", "100K", "1T", 2**30])
def test_memory_sizes_are_read_as_jupyterhub_reads_them(size):
    from jupyterhub.traitlets import ByteSpecification

    from aaltohub.course_values import memory, memory_bytes

    assert memory(size, "c", "mem_limit") == size
    assert memory_bytes(size) == ByteSpecification().validate(None, size)
