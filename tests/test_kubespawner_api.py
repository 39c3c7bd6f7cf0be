"""The KubeSpawner internals CourseSpawner uses are still there.

If a kubespawner upgrade renames or reshapes one of them, this fails and
names it; everything else in aaltohub uses KubeSpawner's public traits.
"""

from __future__ import annotations

import kubespawner

from aaltohub.kube import kubespawner_api


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
