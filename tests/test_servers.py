"""ServerRecord: one versioned record of a running server, in its state."""

from __future__ import annotations

import pytest

from aaltohub.servers import FORMAT_VERSION, STATE_KEY, ServerRecord

RECORD = ServerRecord(
    course="intro",
    role="instructor",
    image="example/notebook:5.0",
    uid=1002001,
    started="2026-11-26T08:00:00+00:00",
    cull_inactive_timeout=1800,
    cull_max_age=14400,
    backend={"isolation": "namespace", "server_dir": "/srv/servers/x"},
)


def test_round_trip_through_the_state():
    state = {STATE_KEY: RECORD.to_state()}
    assert state[STATE_KEY]["version"] == FORMAT_VERSION
    assert ServerRecord.from_state(state) == RECORD


def test_format_1_state_of_a_running_server_still_loads():
    # What the Kubernetes and local spawners wrote before the record had a
    # version: a server started then must be found after the upgrade.
    kube_v1 = {"course": "ml", "role": "student", "cull_inactive_timeout": 1800}
    record = ServerRecord.from_state({STATE_KEY: kube_v1, "pod_name": "p"})
    assert (record.course, record.role, record.cull_inactive_timeout) == (
        "ml",
        "student",
        1800,
    )
    assert record.cull_max_age is None and record.backend == {}
    local_v1 = {
        "course": None,
        "role": "student",
        "isolation": "prefix",
        "server_dir": "/srv/s/alice",
    }
    record = ServerRecord.from_state({STATE_KEY: local_v1})
    assert record.course is None
    assert record.backend == {"isolation": "prefix", "server_dir": "/srv/s/alice"}


@pytest.mark.parametrize("state", [None, {}, {STATE_KEY: {}}, {STATE_KEY: "junk"}])
def test_no_record(state):
    assert ServerRecord.from_state(state) is None


def test_values_of_the_wrong_type_are_dropped_not_trusted():
    junk = {
        "version": 2,
        "course": 5,
        "role": ["x"],
        "uid": True,
        "cull_inactive_timeout": "600",
        "cull_max_age": -1,
        "backend": "x",
    }
    record = ServerRecord.from_state({STATE_KEY: junk})
    assert record == ServerRecord(course=None, role="student")


def test_adopted_aalto_record_keeps_its_origin_across_restarts():
    aalto = {"pod_name": "jupyter-a", "course_slug": "ml", "cull_inactive_time": 7200.0}
    record = ServerRecord.from_state(aalto)
    assert (record.course, record.cull_inactive_timeout, record.origin) == (
        "ml",
        7200,
        "aalto",
    )
    again = ServerRecord.from_state({"aaltohub": record.to_state()})
    assert again == record
    # aaltohub's own record wins over stale Aalto keys beside it
    mixed = {**aalto, "aaltohub": {"version": 2, "course": "intro", "role": "student"}}
    assert ServerRecord.from_state(mixed).course == "intro"
