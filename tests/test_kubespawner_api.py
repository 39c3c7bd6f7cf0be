"""The KubeSpawner internals CourseSpawner uses are still there.

If a kubespawner upgrade renames or reshapes one of them, this fails and
names it; everything else in aaltohub uses KubeSpawner's public traits.
"""

from __future__ import annotations

import copy

import kubespawner
import pytest
from traitlets.config import Config

from aaltohub.kube import kubespawner_api
from kube_helpers import make_spawner, use_dummy_kubeconfig


def test_installed_kubespawner_is_the_tested_major_version():
    major = int(kubespawner.__version__.split(".")[0])
    assert major == kubespawner_api.TESTED_MAJOR, (
        f"kubespawner {kubespawner.__version__} is installed; aaltohub is tested"
        f" with {kubespawner_api.TESTED_MAJOR}.x (see kube/kubespawner_api.py)"
    )


def test_every_private_method_used_is_there_with_its_parameters():
    assert kubespawner_api.incompatibilities() == []


def test_a_changed_method_is_reported_by_name():
    class Changed(kubespawner.KubeSpawner):
        def _load_profile(self, profile_list, slug):  # parameters swapped
            pass

    (problem,) = kubespawner_api.incompatibilities(Changed)
    assert "KubeSpawner._load_profile takes ['profile_list', 'slug']" in problem


def test_a_changed_start_sequence_is_reported_by_name():
    class Reordered(kubespawner.KubeSpawner):
        async def _make_create_pod_request(self, pod, request_timeout):
            # a release that no longer deletes a leftover pod on 409
            return True

    (problem,) = kubespawner_api.incompatibilities(Reordered)
    assert problem == (
        "KubeSpawner._make_create_pod_request no longer does 'e.status != 409' in order"
    )


# --- render_options_form: KubeSpawner's HTML, without its per-page cost ---------------

COURSE = {
    "slug": "intro",
    "display_name": "Intro &amp; more",
    "description": "intro",
    "kubespawner_override": {"image": "example/intro:1"},
}
WITH_OPTIONS = {
    "display_name": "Data science",  # no slug: KubeSpawner makes one
    "profile_options": {
        "image": {
            "display_name": "Image",
            "choices": {
                "base": {"display_name": "Base", "kubespawner_override": {}},
                "ml": {"display_name": "ML", "kubespawner_override": {}},
            },
            "unlisted_choice": {"enabled": True, "display_name": "Other"},
        }
    },
}
FORM_CASES = {
    "courses, none default": [COURSE, {**COURSE, "slug": "intro-instructor"}],
    "a later default": [COURSE, {**COURSE, "slug": "b", "default": True}],
    "deployer options first": [WITH_OPTIONS, COURSE],
    "deployer options later, explicit non-default": [
        {**COURSE, "default": False},
        {**WITH_OPTIONS, "default": False},
    ],
    "one": [COURSE],
}


@pytest.fixture
async def offline_spawner():
    use_dummy_kubeconfig()
    return make_spawner(Config(), "alice")


@pytest.mark.parametrize("case", sorted(FORM_CASES))
@pytest.mark.parametrize(
    "user_options", [{}, {"profile": "b"}, {"profile": "missing"}], ids=str
)
async def test_the_form_is_kubespawners_own_html(offline_spawner, case, user_options):
    profiles = copy.deepcopy(FORM_CASES[case])
    before = copy.deepcopy(profiles)
    offline_spawner.user_options = user_options
    ours = kubespawner_api.render_options_form(offline_spawner, profiles)
    theirs = offline_spawner._render_options_form(profiles)
    assert ours == theirs
    assert profiles == before, "the caller's profiles were changed"


async def test_a_custom_form_template_is_used(offline_spawner):
    offline_spawner.profile_form_template = (
        "{% for p in profile_list %}[{{ p.slug }}]{% endfor %}"
    )
    assert kubespawner_api.render_options_form(offline_spawner, [COURSE]) == "[intro]"
    assert offline_spawner._render_options_form([COURSE]) == "[intro]"
