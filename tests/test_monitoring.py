"""deploy/monitoring: the alert rules pass promtool (syntax and their unit
tests), every alert is tested both ways and names its runbook section, and
every metric the rules and the dashboard use is one the hub (or the probe)
exports, so a renamed metric cannot leave an alert silently dead.

promtool comes from the Debian package ``prometheus`` (scripts/test.sh
installs it). Outside CI a missing promtool skips those tests; in CI
(``CI=true``) it fails them.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "rules.yaml"
RULES_TEST = MONITORING / "rules-test.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"


# --- promtool ----------------------------------------------------------------------
def promtool() -> str:
    path = shutil.which("promtool")
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("promtool is missing in CI: scripts/test.sh installs `prometheus`")
    pytest.skip("promtool not installed (apt-get install prometheus)")


def run_promtool(*args, cwd=MONITORING) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_rules_pass_promtool_check():
    result = run_promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_unit_tests():
    result = run_promtool("test", "rules", RULES_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_catch_a_wrong_threshold(tmp_path):
    """The rule tests can fail: the same tests against a spawn-failure
    threshold of 90 % instead of 20 % must not pass."""
    text = RULES.read_text()
    assert "aaltohub:spawn_failure_ratio:rate15m > 0.2" in text
    (tmp_path / "rules.yaml").write_text(
        text.replace(
            "spawn_failure_ratio:rate15m > 0.2", "spawn_failure_ratio:rate15m > 0.9"
        )
    )
    shutil.copy(RULES_TEST, tmp_path / "rules-test.yaml")
    result = run_promtool("test", "rules", "rules-test.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "AaltohubSpawnsFailing" in result.stdout + result.stderr


# --- every alert tested, every alert with a runbook --------------------------------
def rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alerts() -> list[dict]:
    return [rule for rule in rules() if "alert" in rule]


def test_every_alert_has_a_firing_and_a_quiet_case():
    cases = [
        case
        for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for alert in alerts():
        mine = [c for c in cases if c["alertname"] == alert["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{alert['alert']} never fires"
        assert any(not c["exp_alerts"] for c in mine), (
            f"{alert['alert']}: no quiet case"
        )


def headings(markdown: str) -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^#{2,3} (.+)$", markdown, re.M)}


def test_every_alert_names_a_runbook_section_that_exists():
    sections = headings(OPERATIONS.read_text())
    for alert in alerts():
        notes = alert.get("annotations", {})
        assert notes.get("summary") and notes.get("description"), alert["alert"]
        named = re.findall(r'docs/operations\.md,\s+"([^"]+)"', notes["description"])
        assert named, f"{alert['alert']}: the description names no runbook section"
        for section in named:
            assert section in sections, f"{alert['alert']}: no section {section!r}"
        assert alert["labels"]["severity"] in ("critical", "warning")


def test_rules_and_scrape_config_use_the_same_jobs():
    scrape = yaml.safe_load((MONITORING / "scrape.yaml").read_text())
    jobs = {job["job_name"] for job in scrape["scrape_configs"]}
    used = set(re.findall(r'job="([^"]+)"', RULES.read_text() + DASHBOARD.read_text()))
    assert used and used <= jobs


# --- metric names --------------------------------------------------------------------
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
    "unless", "bool", "offset", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric (and recorded series) names a PromQL expression reads."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if not call and word.lower() not in _KEYWORDS:
            names.add(word)
    return names


def _sample_names(family) -> set[str]:
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }.get(family.type, ("",))
    return {family.name + s for s in suffixes}


def exported() -> set[str]:
    """Every series name the hub's /hub/metrics, the probe and Prometheus
    itself provide: aaltohub's and JupyterHub's metrics (from their
    registrations), the probe's exposition, and ``up``."""
    import jupyterhub.metrics  # noqa: F401 (registers JupyterHub's metrics)
    from prometheus_client import REGISTRY
    from prometheus_client.parser import text_string_to_metric_families

    import aaltohub.metrics  # noqa: F401
    from aaltohub.ops.probe import ProbeResult

    names = {"up"}
    for family in REGISTRY.collect():
        if family.name.startswith(("aaltohub_", "jupyterhub_")):
            names |= _sample_names(family)
    probe = ProbeResult(ok=True, steps={"request": 1.0}, finished=1.0)
    for family in text_string_to_metric_families(probe.prometheus("probe")):
        names |= _sample_names(family)
    return names


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def expressions() -> list[tuple[str, str]]:
    out = [(rule.get("alert") or rule["record"], rule["expr"]) for rule in rules()]
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            out.append((f"dashboard: {panel['title']}", target["expr"]))
    return out


def unknown_names(exprs, known=None) -> dict[str, set[str]]:
    known = (exported() | recorded()) if known is None else known
    found = {}
    for where, expr in exprs:
        missing = metric_names(expr) - known
        if missing:
            found[where] = missing
    return found


def test_every_metric_in_the_rules_and_dashboard_is_exported():
    exprs = expressions()
    assert len(exprs) > 30
    assert unknown_names(exprs) == {}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (course) (rate(aaltohub_spawn_failures_total{cause!="x"}[5m]))',
            {"aaltohub_spawn_failures_total"},
        ),
        (
            "histogram_quantile(0.95, sum by (le)"
            " (rate(aaltohub_ldap_call_seconds_bucket[$__rate_interval])))",
            {"aaltohub_ldap_call_seconds_bucket"},
        ),
        (
            "a / on(resource) b > 0.85 and on() sum(c) >= 5 or vector(0)",
            {"a", "b", "c"},
        ),
        ('time() - x{job="y"} > 2 * 86400', {"x"}),
        (
            "aaltohub:capacity_requested:ratio > 1e3",
            {"aaltohub:capacity_requested:ratio"},
        ),
    ],
)
def test_metric_names_are_read_from_promql(expr, names):
    assert metric_names(expr) == names


@pytest.mark.parametrize(
    "expr",
    [
        "rate(aaltohub_spawn_failure_total[5m]) > 0",  # a typo
        "aaltohub_running_servers_total",  # a gauge has no _total
        "aaltohub_spawn_duration_seconds_total",  # a histogram has no _total
        "aaltohub_capacity_free > 0",  # a name that was never defined
        'up{job="aaltohub-hub"} == 0 and on() aaltohub_catalog_error > 0',
    ],
)
def test_an_unknown_metric_fails_the_check(expr, tmp_path):
    """What the rules test would say about a rule file with this alert."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "g", "rules": [{"alert": "Bad", "expr": expr}]}]}
        )
    )
    rule = yaml.safe_load(path.read_text())["groups"][0]["rules"][0]
    assert list(unknown_names([("Bad", rule["expr"])])) == ["Bad"]


def test_the_dashboard_is_a_grafana_dashboard():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["title"]
    assert {"datasource"} <= {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"


def test_the_stale_quota_alert_matches_the_hubs_own_limit():
    from aaltohub.storage.quota import STALE_REPORT_AFTER

    [alert] = [a for a in alerts() if a["alert"] == "AaltohubQuotaReportStale"]
    threshold = alert["expr"].split(">")[1].strip()
    assert re.fullmatch(r"[0-9 *]+", threshold)
    assert math.prod(int(n) for n in threshold.split("*")) == STALE_REPORT_AFTER


# --- the probe's schedule and the scrape wiring in values.yaml ---------------------
DEPLOY = ROOT / "deploy" / "kubernetes"


def coalesce(base: dict, over: dict) -> dict:
    """Helm's merge of values files: maps merge, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = coalesce(out[key], value)
        out[key] = value
    return out


def deploy_values(*overlays) -> dict:
    values = {}
    for name in ("values.yaml", *overlays):
        values = coalesce(values, yaml.safe_load((DEPLOY / name).read_text()))
    return values


@pytest.mark.parametrize("overlays", [(), ("values-staging.yaml",)])
def test_the_probe_service_runs_the_probe_against_its_own_hub(overlays, monkeypatch):
    from jupyterhub.scopes import scope_definitions

    from aaltohub.cli import build_parser

    hub = deploy_values(*overlays)["hub"]
    service = hub["services"]["spawn-probe"]
    url = service["environment"]["AALTOHUB_PROBE_URL"]
    host = deploy_values(*overlays)["proxy"]["https"]["hosts"][0]
    assert url == f"https://{host}"  # staging probes staging
    assert service["command"][:3] == ["python3", "-m", "aaltohub.cli"]
    monkeypatch.setenv("AALTOHUB_PROBE_URL", url)
    args = build_parser().parse_args(service["command"][3:])
    assert args.url == url and args.every >= 60
    port = args.metrics_port
    assert {"name": "probe-metrics", "port": port, "targetPort": port} in hub[
        "service"
    ]["extraPorts"]
    [rule] = hub["networkPolicy"]["ingress"]
    assert {"port": port} in rule["ports"] and {"port": 8081} in rule["ports"]
    # the token may touch the probe account's server only
    role = hub["loadRoles"]["spawn-probe"]
    assert role["services"] == ["spawn-probe"]
    for scope in role["scopes"]:
        name, _, only = scope.partition("!")
        assert name in scope_definitions and only == f"user={args.user}"
    assert args.user in hub["config"]["Authenticator"]["allowed_users"]
    metrics_role = hub["loadRoles"]["prometheus-metrics"]
    assert metrics_role == {"scopes": ["read:metrics"], "services": ["prometheus"]}


def test_scrape_jobs_match_the_hub_service_ports():
    scrape = yaml.safe_load((MONITORING / "scrape.yaml").read_text())
    keep = {
        job["job_name"]: job["relabel_configs"][0]["regex"]
        for job in scrape["scrape_configs"]
    }
    ports = [p["name"] for p in deploy_values()["hub"]["service"]["extraPorts"]]
    assert keep == {"aaltohub-hub": "hub;hub", "aaltohub-probe": f"hub;{ports[0]}"}


def test_the_capacity_rbac_is_valid_kubernetes_and_read_only():
    import kubernetes_validate

    docs = list(yaml.safe_load_all((MONITORING / "capacity-rbac.yaml").read_text()))
    version = kubernetes_validate.utils.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, True)
    [role] = [d for d in docs if d["kind"] == "ClusterRole"]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}
    ]


def test_ldap_alerts_name_only_operations_the_code_writes():
    """The rules select LDAP calls by their ``operation`` label, which
    identity.calls takes from the function's name: a renamed function must
    fail here, not silently change what an alert measures."""
    from aaltohub import metrics
    from aaltohub.auth import check_password_sync
    from aaltohub.identity import LDAPIdentity

    known = set(metrics.LDAP_USER_OPERATIONS) | set(metrics.LDAP_BACKGROUND_OPERATIONS)
    functions = {
        check_password_sync.__name__,
        LDAPIdentity.lookup_sync.__name__,
        LDAPIdentity.open_spare_sync.__name__,
        LDAPIdentity.check_kept_sync.__name__,
    }
    assert {f.removesuffix("_sync") for f in functions} == known
    rules = (MONITORING / "rules.yaml").read_text()
    named = set()
    for selector in re.findall(r'operation[!=]~?"([^"]+)"', rules):
        named |= set(selector.split("|"))
    assert named and named <= known, named - known
    assert f'operation=~"{"|".join(metrics.LDAP_USER_OPERATIONS)}"' in rules
