"""Quota sources and the report parsers, on samples in the tools' exact formats.

The samples in tests/data/quota/ follow the printf formats of quota-tools'
repquota (plain and -s, with the block and inode grace columns, statistics
trailers and ``#uid`` rows) and xfsprogs' ``xfs_quota -x -c 'report ...'``
(-b and -h, -n numeric ids, project quotas).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from aaltohub.cli import main
from aaltohub.course import build_course
from aaltohub.identity.base import Identity
from aaltohub.storage import quota
from aaltohub.storage.quota import (
    NoQuota,
    ReportFileQuota,
    ReportFormatError,
    StatvfsQuota,
    Usage,
    parse_report,
    parse_repquota,
    parse_xfs_quota,
    warning_message,
)

DATA = Path(__file__).parent / "data" / "quota"
KIB, MIB, GIB = 1024, 1024**2, 1024**3


def rows(name, **kw):
    return {
        (r.kind, r.name): r.usage for r in parse_report((DATA / name).read_text(), **kw)
    }


def ident(username, uid=1001234):
    return Identity(username=username, uid=uid, gid=70000)


# --- repquota ---
def test_repquota_plain_blocks_and_grace_columns():
    r = rows("repquota-ug.txt")
    darstr1 = r["user", "darstr1"]
    assert darstr1.used == int(9.5 * GIB)
    assert (darstr1.limit, darstr1.hard_limit) == (10 * GIB, 11 * GIB)
    assert darstr1.percent == pytest.approx(95.0)
    assert darstr1.grace == "" and darstr1.source == "repquota /dev/mapper/vg0-export"
    assert r["user", "alice"].grace == "6days"  # over soft, grace running
    assert r["user", "carol"].grace == "none"  # grace expired
    assert r["user", "carol"].over_limit
    # only the inode grace runs: it must not be read as a block grace
    assert r["user", "dave"].grace == "" and r["user", "dave"].used == GIB
    assert r["user", "#1234"].used == 9 * GIB  # id without a name
    assert r["user", "first.last"].used == 5 * GIB  # name longer than the column
    assert r["user", "nolimit"].limit == 0 and r["user", "nolimit"].percent is None
    assert r["group", "jupyter-intro"].percent == pytest.approx(92.0)
    assert r["group", "#70002"].used == 12 * GIB
    assert len([k for k in r if k[0] == "user"]) == 9


def test_repquota_human_units_match_the_plain_report():
    plain, human = rows("repquota-ug.txt"), rows("repquota-ug-s.txt")
    assert plain.keys() == human.keys()
    for key, usage in plain.items():
        # -s rounds up to whole units (K below 100 MiB, M below 100 GiB, ...)
        assert human[key].used == pytest.approx(usage.used, rel=0.001, abs=MIB)
        assert human[key].limit == usage.limit
        assert human[key].grace == usage.grace
    assert human["user", "darstr1"].used == 9728 * MIB
    assert human["group", "domain-users"].used == 900 * GIB


def test_repquota_several_file_systems_with_statistics():
    parsed = parse_repquota((DATA / "repquota-av.txt").read_text())
    assert [(r.name, r.filesystem) for r in parsed] == [
        ("root", "/dev/sda2"),
        ("darstr1", "/dev/sda2"),
        ("#1234", "/dev/sda2"),
        ("darstr1", "/dev/mapper/vg0-export"),
    ]


# --- xfs_quota ---
def test_xfs_quota_report_blocks():
    r = rows("xfs_quota-report-u-b.txt")
    assert r["user", "darstr1"].used == int(9.5 * GIB)
    assert r["user", "darstr1"].limit == 10 * GIB
    assert r["user", "darstr1"].source == "xfs_quota /export /dev/sdb1"
    assert r["user", "alice"].grace == "6 days"
    assert r["user", "carol"].grace == "none" and r["user", "carol"].over_limit
    assert r["user", "erin"].grace == "00:59:59"
    assert r["user", "bob"].grace == ""
    assert r["user", "#1234"].used == 9 * GIB
    assert r["user", "nolimit"].percent is None


def test_xfs_quota_human_units_match_the_block_report():
    blocks, human = rows("xfs_quota-report-u-b.txt"), rows("xfs_quota-report-u-h.txt")
    assert blocks.keys() == human.keys()
    for key, usage in blocks.items():
        # -h prints one decimal: 10.25G shows as 10.2G
        assert human[key].used == pytest.approx(usage.used, rel=0.01)
        assert human[key].limit == usage.limit
        assert human[key].grace == usage.grace, key
    assert human["user", "darstr1"].used == int(9.5 * GIB)
    assert human["user", "root"].used == 20 * KIB
    assert human["user", "nolimit"].used == 1000 * KIB


def test_xfs_quota_numeric_ids_and_projects():
    r = rows("xfs_quota-report-u-b-n.txt")
    assert set(r) == {("user", "#0"), ("user", "#1234"), ("user", "#5678")}
    assert r["user", "#1234"].used == 9 * GIB
    p = parse_xfs_quota((DATA / "xfs_quota-report-p-b.txt").read_text())
    assert {(x.kind, x.name) for x in p} == {
        ("project", "#0"),
        ("project", "intro"),
        ("project", "ml-private"),
    }


def test_unknown_text_is_an_error_that_names_the_fix():
    with pytest.raises(ReportFormatError, match="repquota -ug MOUNT"):
        parse_report("hello\nworld\n")
    assert parse_report("") == []


# --- Usage ---
def test_threshold_is_inclusive():
    assert Usage(900, 1000).over_threshold(0.9)
    assert not Usage(899, 1000).over_threshold(0.9)
    assert not Usage(10**12, 0).over_threshold(0.9)  # no limit: never
    assert "is 95 % full (9.5 GiB of 10.0 GiB)" in warning_message(
        Usage(int(9.5 * GIB), 10 * GIB)
    )
    assert "over its quota" in warning_message(Usage(11 * GIB, 10 * GIB))


# --- ReportFileQuota ---
@pytest.fixture
def report(tmp_path):
    path = tmp_path / "report.txt"
    path.write_text((DATA / "repquota-ug.txt").read_text())
    return path


async def test_report_file_source_by_name_and_by_uid(report):
    src = ReportFileQuota(user_report=str(report))
    assert (await src.usage(ident("darstr1"))).percent == pytest.approx(95.0)
    # a user whose name the storage host cannot resolve: matched by '#uid'
    assert (await src.usage(ident("someone", uid=1234))).used == 9 * GIB
    assert await src.usage(ident("unknown", uid=4321)) is None
    assert (await src.usage_for_name("alice")).grace == "6days"


async def test_course_usage_by_group_name_gid_or_project(report, tmp_path):
    src = ReportFileQuota(user_report=str(report))
    intro = build_course("intro", {"gid": 70001, "instructors": ["t"]})
    ml = build_course("ml", {"gid": 70002, "instructors": ["t"]})
    assert (await src.course_usage(intro)).percent == pytest.approx(92.0)
    assert (await src.course_usage(ml)).used == 12 * GIB  # via '#70002'
    projects = tmp_path / "projects.txt"
    projects.write_text((DATA / "xfs_quota-report-p-b.txt").read_text())
    psrc = ReportFileQuota(
        course_report=str(projects),
        course_kind="project",
        course_name_template="{coursedir_slug}",
    )
    assert (await psrc.course_usage(intro)).used == 46 * GIB


async def test_report_is_reparsed_only_when_it_changes(report, monkeypatch):
    src = ReportFileQuota(user_report=str(report), check_interval=0)
    calls = []
    real = quota.parse_report
    monkeypatch.setattr(quota, "parse_report", lambda *a: calls.append(1) or real(*a))
    await src.usage(ident("darstr1"))
    await src.usage(ident("darstr1"))
    assert len(calls) == 1
    report.write_text(
        report.read_text().replace("darstr1   -- 9961472", "darstr1   --  100000")
    )
    os.utime(report, (time.time() + 5, time.time() + 5))
    assert (await src.usage(ident("darstr1"))).used == 100000 * KIB
    assert len(calls) == 2


async def test_stale_unreadable_and_broken_reports(report, tmp_path, caplog):
    old = time.time() - 3 * 86400
    os.utime(report, (old, old))
    stale = ReportFileQuota(user_report=str(report))
    assert await stale.usage(ident("darstr1")) is None
    assert "outcome=stale" in caplog.text
    stale.max_age = 0
    stale.check_interval = 0
    assert await stale.usage(ident("darstr1")) is not None

    missing = ReportFileQuota(user_report=str(tmp_path / "nope.txt"))
    assert await missing.usage(ident("darstr1")) is None

    # after a good read, a broken file keeps the last good numbers
    good = ReportFileQuota(user_report=str(report), check_interval=0, max_age=0)
    assert await good.usage(ident("darstr1")) is not None
    report.write_text("garbage\n")
    assert (await good.usage(ident("darstr1"))).percent == pytest.approx(95.0)
    assert "outcome=unreadable" in caplog.text


async def test_filesystem_filter(tmp_path):
    path = tmp_path / "av.txt"
    path.write_text((DATA / "repquota-av.txt").read_text())
    both = ReportFileQuota(user_report=str(path))
    assert (await both.usage(ident("darstr1"))).used == int(9.5 * GIB)  # fullest
    one = ReportFileQuota(user_report=str(path), filesystem="/dev/sda2")
    assert (await one.usage(ident("darstr1"))).used == 100 * KIB


async def test_all_usage_lists_every_user(report):
    every = await ReportFileQuota(user_report=str(report)).all_usage("user")
    assert set(every) >= {"darstr1", "alice", "#1234", "nolimit"}


async def test_no_quota_knows_nothing():
    assert await NoQuota().usage(ident("darstr1")) is None
    assert await NoQuota().all_usage() == {}


# --- StatvfsQuota ---
async def test_statvfs_of_a_volume(tmp_path, monkeypatch):
    home = tmp_path / "homes" / "alice"
    home.mkdir(parents=True)
    src = StatvfsQuota(path_template=str(tmp_path / "homes" / "{username}"))
    real = await src.usage(ident("alice"))  # the real call, on this host
    assert 0 < real.used <= real.limit
    assert await src.usage(ident("bob")) is None  # no volume: nothing to say
    assert set(await src.all_usage("user")) == {"alice"}
    assert await StatvfsQuota().usage(ident("alice")) is None
    # The arithmetic, on fixed numbers (the host's free space keeps moving):
    # 1000 blocks of 4 KiB, 400 free, 300 of them available to users.
    fixed = os.statvfs_result((4096, 4096, 1000, 400, 300, 0, 0, 0, 0, 255))
    monkeypatch.setattr(quota.os, "statvfs", lambda path: fixed)
    usage = await src.usage(ident("alice"))
    assert (usage.used, usage.limit) == (600 * 4096, 900 * 4096)
    assert usage.source == f"statvfs {home}"


async def test_statvfs_timeout_does_not_block_the_loop(tmp_path, monkeypatch):
    monkeypatch.setattr(StatvfsQuota, "_statvfs", staticmethod(lambda p: time.sleep(1)))
    src = StatvfsQuota(path_template=str(tmp_path), timeout=0.05)
    started = time.monotonic()
    ticker = asyncio.create_task(asyncio.sleep(0.02))
    assert await src.usage(ident("alice")) is None
    assert ticker.done()
    assert time.monotonic() - started < 0.5


# --- aaltohub quota report ---
def test_quota_report_lists_users_over_the_threshold(capsys):
    code = main(["quota", "report", "--report", str(DATA / "repquota-ug.txt")])
    out, err = capsys.readouterr()
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()[1:]]
    # fullest first; '#1234' is at exactly 90 %
    assert names == ["carol", "alice", "darstr1", "#1234"]
    assert "4 user(s) at or above 90 %" in err


def test_quota_report_json_groups_and_xfs(capsys):
    code = main(
        [
            "quota",
            "report",
            "--report",
            str(DATA / "xfs_quota-report-u-h.txt"),
            "--threshold",
            "0.99",
            "--json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == ["carol", "alice", "erin"]
    assert data[0]["grace"] == "none" and data[0]["limit_bytes"] == 10 * GIB
    main(
        [
            "quota",
            "report",
            "--report",
            str(DATA / "repquota-ug.txt"),
            "--kind",
            "group",
            "--json",
        ]
    )
    groups = json.loads(capsys.readouterr().out)
    assert [g["name"] for g in groups] == ["jupyter-intro"]


def test_quota_report_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("not a report\n")
    assert main(["quota", "report", "--report", str(bad)]) == 2
    assert f"error: {bad}: not a repquota" in capsys.readouterr().err
    assert main(["quota", "report", "--report", str(tmp_path / "nope")]) == 2


async def test_the_hub_counts_users_over_its_threshold_in_each_new_report(report):
    from aaltohub import metrics

    src = ReportFileQuota(user_report=str(report), check_interval=0, max_age=0)
    src.warn_threshold = 0.9  # set by the hub's QuotaWarnings from QuotaPolicy
    old = time.time() - 600
    os.utime(report, (old, old))
    await src.usage(ident("bob"))
    # darstr1 95 %, alice and carol over, #1234 exactly 90 %: every user row
    assert metrics.QUOTA_USERS_OVER_THRESHOLD._value.get() == 4
    assert 600 <= metrics.QUOTA_REPORT_AGE._value.get() < 700
    report.write_text(
        report.read_text().replace("carol     +- 11600000", "carol     -- 1")
    )
    await src.usage(ident("bob"))
    assert metrics.QUOTA_USERS_OVER_THRESHOLD._value.get() == 3
    assert metrics.QUOTA_REPORT_AGE._value.get() < 60


def test_the_hubs_quota_warnings_give_the_report_source_its_threshold(report):
    from traitlets.config import Config

    from aaltohub.web.quota import QuotaWarnings

    c = Config()
    c.QuotaPolicy.source_class = "aaltohub.storage.ReportFileQuota"
    c.QuotaPolicy.threshold = 0.8
    c.ReportFileQuota.user_report = str(report)
    assert QuotaWarnings(config=c).source.warn_threshold == 0.8
