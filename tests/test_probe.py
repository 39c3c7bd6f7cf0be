"""``aaltohub probe --every --metrics-port``: the probe on a schedule, its
last result served for Prometheus (the run against a live hub is
tests/e2e/test_probe.py)."""

from __future__ import annotations

import argparse
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aaltohub.commands import probe as command
from aaltohub.ops.probe import ProbeResult, SpawnProbe


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def args(**more):
    base = dict(
        url=f"http://127.0.0.1:{closed_port()}",
        user="probe",
        profile="",
        server="",
        timeout=1,
        prometheus=None,
        every=0.01,
        metrics_port=None,
    )
    return argparse.Namespace(**{**base, **more})


def scrape(server) -> dict:
    port = server.server_address[1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    return {
        (s.name, s.labels.get("step", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_each_run_replaces_the_served_result(capsys):
    a = args()
    server = command.serve_metrics(0, "127.0.0.1")
    try:
        assert scrape(server) == {}  # nothing before the first run
        probe = SpawnProbe(a.url, "token", a.user, timeout=1)
        assert command.repeat(a, probe, server, runs=2) == 0
        samples = scrape(server)
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(
                f"http://127.0.0.1:{server.server_address[1]}/other", timeout=5
            )
    finally:
        server.shutdown()
    assert samples[("aaltohub_probe_success", "")] == 0
    assert samples[("aaltohub_probe_last_run_timestamp_seconds", "")] > 1.7e9
    err = capsys.readouterr().err
    assert err.count("FAILED:") == 2 and "cannot reach the hub" in err


def test_a_passing_result_exports_its_steps():
    result = ProbeResult(ok=True, steps={"request": 0.1, "ready": 2.5}, finished=1e9)
    families = {
        f.name: f for f in text_string_to_metric_families(result.prometheus("p"))
    }
    assert set(families) == {
        "aaltohub_probe_success",
        "aaltohub_probe_step_seconds",
        "aaltohub_probe_last_run_timestamp_seconds",
    }
    steps = {
        s.labels["step"]: s.value
        for s in families["aaltohub_probe_step_seconds"].samples
    }
    assert steps == {"request": 0.1, "ready": 2.5}


@pytest.mark.parametrize(
    ("more", "message"),
    [
        ({"every": None, "metrics_port": 9101}, "--metrics-port needs --every"),
        ({"every": -1}, "--every needs a number of seconds above 0"),
    ],
)
def test_schedule_options_are_checked(monkeypatch, capsys, more, message):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "token")
    assert command.run(args(**more)) == 2
    assert message in capsys.readouterr().err
