"""QuotaHook, ProvisionHomeHook and the hub-page warnings (web.quota)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from traitlets.config import Config

import page_render
from aaltohub.access import Viewer
from aaltohub.course import build_course
from aaltohub.hooks import DEFAULT_HOOKS, run_hooks
from aaltohub.hooks.provision import ProvisionHomeHook
from aaltohub.hooks.quota import QuotaHook
from aaltohub.identity.base import Identity
from aaltohub.plan import SpawnContext, SpawnPlan
from aaltohub.storage.paths import StoragePaths
from aaltohub.storage.quota import QuotaSource, ReportFileQuota
from aaltohub.storage.quota_policy import QuotaPolicy
from aaltohub.storage.user_dirs import LocalHomeProvisioner, ProvisionError
from aaltohub.web.pages import PAGES_DIR

DATA = Path(__file__).parent / "data" / "quota"
ROOT = os.geteuid() == 0
UID, GID = (1001234, 70000) if ROOT else (os.geteuid(), os.getegid())


def ident(username, uid=UID):
    return Identity(username=username, uid=uid, gid=GID)


def ctx(identity, course=None, role="student", config=None, **kw):
    paths = StoragePaths(config=config or Config())
    return SpawnContext(Viewer(identity.username), identity, paths, course, role, **kw)


@pytest.fixture
def config(tmp_path):
    report = tmp_path / "report.txt"
    report.write_text((DATA / "repquota-ug.txt").read_text())
    c = Config()
    c.QuotaPolicy.source_class = ReportFileQuota
    c.ReportFileQuota.user_report = str(report)
    return c


# --- QuotaHook ----------------------------------------------------------------
async def test_near_quota_user_is_warned_three_ways(config):
    plan = SpawnPlan()
    await QuotaHook(config=config).apply(ctx(ident("darstr1")), plan)
    assert plan.env["AALTOHUB_QUOTA_USED"] == str(int(9.5 * 1024**3))
    assert plan.env["AALTOHUB_QUOTA_LIMIT"] == str(10 * 1024**3)
    assert plan.env["AALTOHUB_QUOTA_PERCENT"] == "95"
    assert plan.env["AALTOHUB_QUOTA_NOTICE"] == "/etc/aaltohub/quota-warning.txt"
    notice = plan.files["quota-warning.txt"]
    assert notice.startswith("Your home directory is 95 % full (9.5 GiB of 10.0 GiB).")
    assert "du -h --max-depth=1 ~" in notice
    assert plan.notices[0] == "Your home directory is 95 % full (9.5 GiB of 10.0 GiB)."


async def test_the_hook_alone_sets_the_users_over_threshold_metric(config):
    from aaltohub import metrics

    gauge = metrics.QUOTA_USERS_OVER_THRESHOLD
    gauge.set(-1)
    # No web banner configured: the hook is the only reader of the report.
    await QuotaHook(config=config).apply(ctx(ident("bob")), SpawnPlan())
    over = gauge._value.get()
    assert over >= 1  # darstr1 at 95 % at least
    lower = config.copy()  # another hub config, another policy
    lower.QuotaPolicy.threshold = 0.2
    await QuotaHook(config=lower).apply(ctx(ident("bob")), SpawnPlan())
    assert gauge._value.get() > over  # bob (20 %) and others now count


async def test_under_threshold_nothing_is_added(config):
    plan = SpawnPlan()
    await QuotaHook(config=config).apply(ctx(ident("bob")), plan)
    assert plan == SpawnPlan()
    lower = config.copy()  # another hub config: the policy is one per config
    lower.QuotaPolicy.threshold = 0.2  # bob is at 20 %
    await QuotaHook(config=lower).apply(ctx(ident("bob")), plan)
    assert plan.env["AALTOHUB_QUOTA_PERCENT"] == "20"


async def test_over_quota_user_can_still_start_and_is_told_how(config):
    plan = SpawnPlan()
    await run_hooks(
        [h(config=config) for h in (*DEFAULT_HOOKS, QuotaHook)],
        ctx(ident("carol")),
        plan,
    )
    assert plan.mount("home") is not None  # the rest of the plan is intact
    assert "is over its quota" in plan.notices[0]
    assert (
        "saving files will fail until you free space" in plan.files["quota-warning.txt"]
    )


async def test_instructors_hear_about_the_course_directory(config):
    intro = build_course("intro", {"gid": 70001, "instructors": ["bob"]})
    plan = SpawnPlan()
    await QuotaHook(config=config).apply(ctx(ident("bob"), intro, "instructor"), plan)
    assert plan.notices[0].startswith("The course directory of intro is 92 % full")
    assert "AALTOHUB_QUOTA_PERCENT" not in plan.env  # bob's own home is fine
    student = SpawnPlan()
    await QuotaHook(config=config).apply(ctx(ident("bob"), intro, "student"), student)
    assert student.notices == []


class Broken(QuotaSource):
    async def usage(self, identity):
        raise OSError("stale NFS file handle")


class Slow(QuotaSource):
    async def usage(self, identity):
        await asyncio.sleep(10)


@pytest.mark.parametrize("source", [Broken, Slow])
async def test_a_failing_source_never_blocks_the_spawn(source, caplog):
    c = Config()
    c.QuotaPolicy.source_class = source
    c.QuotaHook.timeout = 0.05
    plan = SpawnPlan()
    await asyncio.wait_for(QuotaHook(config=c).apply(ctx(ident("x")), plan), 2)
    assert plan == SpawnPlan()
    assert "action=quota-home outcome=unavailable" in caplog.text


async def test_an_injected_provider_wins(config):
    class Full(QuotaSource):
        async def usage(self, identity):
            from aaltohub.storage.quota import Usage

            return Usage(100, 100)

    plan = SpawnPlan()
    hook = QuotaHook(config=config)
    await hook.apply(ctx(ident("bob"), providers={"quota": Full()}), plan)
    assert plan.env["AALTOHUB_QUOTA_PERCENT"] == "100"


# --- ProvisionHomeHook ----------------------------------------------------------
def provision_config(root):
    c = Config()
    c.ProvisionHomeHook.provisioner_class = LocalHomeProvisioner
    c.LocalHomeProvisioner.storage_root = str(root)
    c.LocalHomeProvisioner.min_uid = min(UID, 1000)
    return c


async def test_home_is_made_where_home_hook_mounts_it(tmp_path):
    c = provision_config(tmp_path)
    plan = SpawnPlan()
    await run_hooks(
        [h(config=c) for h in (*DEFAULT_HOOKS, ProvisionHomeHook)],
        ctx(ident("alice")),
        plan,
    )
    home = tmp_path / plan.mount("home").sub_path
    assert home.is_dir()
    assert (home.stat().st_uid, home.stat().st_mode & 0o7777) == (UID, 0o700)


async def test_home_template_is_the_mounted_one(tmp_path):
    c = provision_config(tmp_path)
    c.StoragePaths.home_sub_path = "homes/{username}"
    plan = SpawnPlan()
    alice = ctx(ident("alice"), config=c)
    await run_hooks(
        [ProvisionHomeHook(config=c), *(h() for h in DEFAULT_HOOKS)], alice, plan
    )
    assert (tmp_path / "homes/alice").is_dir()
    assert plan.mount("home").sub_path == "homes/alice"


async def test_old_option_names_still_work_with_a_warning(tmp_path):
    c = Config()
    c.HomeHook.sub_path = "homes/{username}"
    c.QuotaHook.threshold = 0.5
    with pytest.warns(DeprecationWarning, match="c.StoragePaths.home_sub_path"):
        assert StoragePaths(config=c).home("alice", 1234) == "homes/alice"
    with pytest.warns(DeprecationWarning, match="c.QuotaPolicy.threshold"):
        assert QuotaPolicy(config=c).threshold == 0.5


async def test_provisioning_failure_stops_the_spawn_clearly(tmp_path, caplog):
    blocker = tmp_path / "u"
    blocker.write_text("a file where the u/ directory should be")
    c = provision_config(tmp_path)
    with pytest.raises(ProvisionError) as info:
        await ProvisionHomeHook(config=c).apply(ctx(ident("alice")), SpawnPlan())
    assert info.value.jupyterhub_message == "Your home directory could not be created."
    assert "action=provision-home" in caplog.text and "outcome=failed" in caplog.text
    assert sorted(os.listdir(tmp_path)) == ["u"]


async def test_bad_identity_never_reaches_storage(tmp_path):
    c = provision_config(tmp_path)
    for name in ("..", "../etc", "a/b"):
        with pytest.raises(ProvisionError):
            await ProvisionHomeHook(config=c).apply(ctx(ident(name)), SpawnPlan())
    assert os.listdir(tmp_path) == []


# --- the whole spawner --------------------------------------------------------------
async def test_course_spawner_pod_carries_the_warning_and_the_home_exists(
    catalog_dir, users_file, tmp_path
):
    from kube_helpers import base_config, make_spawner, spawn_manifest, to_dict

    report = tmp_path / "report.txt"
    report.write_text(
        (DATA / "repquota-ug.txt").read_text().replace("darstr1  ", "student1 ")
    )
    c = base_config(catalog_dir, users_file)
    c.CourseSpawner.hooks = [*DEFAULT_HOOKS, ProvisionHomeHook, QuotaHook]
    c.QuotaPolicy.source_class = ReportFileQuota
    c.ReportFileQuota.user_report = str(report)
    c.LocalHomeProvisioner.storage_root = str(tmp_path / "storage")
    (tmp_path / "storage").mkdir()
    if not ROOT:  # the test user's home is made with the fixture's uid
        pytest.skip("making a home for uid 1001234 needs root")
    pod = to_dict(await spawn_manifest(make_spawner(c, "student1"), "intro"))
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["AALTOHUB_QUOTA_PERCENT"] == "95"
    annotations = pod["metadata"]["annotations"]
    assert any("95 % full" in v for v in annotations.values())
    assert (tmp_path / "storage/u/34/student1").stat().st_uid == 1001234


# --- web.quota ------------------------------------------------------------------------
class FakeUser(SimpleNamespace):
    async def get_auth_state(self):
        return self.auth_state


def web_config(config):
    from aaltohub.web import quota as quota_web

    c = config
    quota_web.configure(c)
    return c, quota_web


async def test_configure_wires_templates_vars_and_login_hook(config):
    seen = []

    def existing(authenticator, handler, model):
        seen.append(model["name"])
        return model

    config.JupyterHub.template_vars = {"announcement": "hello"}
    config.JupyterHub.template_paths = ["/srv/custom"]
    config.Authenticator.post_auth_hook = existing
    c, quota_web = web_config(config)
    assert c.JupyterHub.template_paths == [
        PAGES_DIR,
        quota_web.TEMPLATE_DIR,
        "/srv/custom",
    ]
    assert c.JupyterHub.template_vars["announcement"] == "hello"
    warn = c.JupyterHub.template_vars["aaltohub_quota"]

    model = {
        "name": "darstr1",
        "auth_state": {"identity": ident("darstr1").to_dict()},
    }
    hook = c.Authenticator.post_auth_hook
    assert await hook(None, None, model) is model
    assert seen == ["darstr1"]  # the deployer's hook still runs, first
    # warmed at login: the first page after login has the warning
    shown = warn(FakeUser(name="darstr1", auth_state=None))
    assert shown["percent"] == 95 and shown["over"] is False
    assert "du -h" in shown["help"]
    assert warn(None) is None  # the login page has no user


async def test_page_variable_never_waits_and_refreshes_in_background(config):
    _, quota_web = web_config(config)
    warnings = quota_web.QuotaWarnings(config=config)
    user = FakeUser(name="carol", auth_state={"identity": ident("carol").to_dict()})
    assert warnings.warning_for(user) is None  # nothing cached: no wait
    await asyncio.gather(*warnings._inflight.values())
    assert warnings.warning_for(user)["over"] is True
    bob = FakeUser(name="bob", auth_state=None)  # no identity: by name
    warnings.warning_for(bob)
    await asyncio.gather(*warnings._inflight.values())
    assert warnings.warning_for(bob) is None  # 20 %: under the threshold


def render(page, **ns):
    """A page with the quota banner's templates alone (page_render)."""
    from aaltohub.web import quota as quota_web

    return page_render.render(
        page,
        [PAGES_DIR, quota_web.TEMPLATE_DIR],
        user_name="darstr1",
        **{"spawner_options_form": "<select name=profile></select>", **ns},
    )


@pytest.mark.parametrize(
    "page,marker",
    [("home.html", 'id="start"'), ("spawn.html", "<select name=profile></select>")],
)
def test_banner_on_home_and_spawn_pages(page, marker):
    warning = {
        "percent": 101,
        "used": "10.1 GiB",
        "limit": "10.0 GiB",
        "over": True,
        "message": "Your home directory is over its quota <b>",
        "help": "Delete things.",
    }
    html = render(page, aaltohub_quota=warning)
    assert "aaltohub-quota" in html and "alert-danger" in html
    assert "You can still start your server to clean up." in html
    assert "over its quota &lt;b&gt;" in html  # escaped
    assert "Delete things." in html
    assert "aaltohub-quota" not in render(page, aaltohub_quota=None)
    assert marker in html  # JupyterHub's own page is intact around the banner
