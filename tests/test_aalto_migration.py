"""Moving Aalto's hub to aaltohub: its course files, IMAGES.py, hook files
and running servers, from fixtures in Aalto's exact syntax
(tests/data/aalto: meta/ is its /courses/meta, srv/ its /srv/jupyterhub)."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aaltohub.access import Viewer
from aaltohub.catalog import CourseCatalog
from aaltohub.catalog.images_import import import_images
from aaltohub.cli import main
from aaltohub.course import build_course
from aaltohub.hooks import AaltoHookFilesHook, InstructorCoursesHook
from aaltohub.hooks.aalto_hook_files import HookFileError
from aaltohub.identity import Identity
from aaltohub.ops.culling import course_cull_arbiter, make_course_cull_arbiter
from aaltohub.plan import SpawnContext, SpawnPlan
from aaltohub.servers import ServerRecord
from aaltohub.storage.paths import StoragePaths
from kube_helpers import base_config, make_spawner

AALTO = Path(__file__).parent / "data" / "aalto"
META = AALTO / "meta"
SLUGS = {"gpu", "intro", "ml", "oldcourse", "public", "stats2022", "testcourse"}


@pytest.fixture
def meta(tmp_path, capsys) -> Path:
    """A copy of Aalto's meta directory with IMAGES.yaml from the import."""
    path = tmp_path / "meta"
    shutil.copytree(META, path)
    assert main(["images", "import", str(path / "IMAGES.py")]) == 0
    (path / "IMAGES.yaml").write_text(capsys.readouterr().out)
    return path


# --- course files and images, unchanged ----------------------------------------------
def test_validate_passes_every_aalto_course_unchanged(meta, capsys):
    assert main(["validate", "--json", str(meta)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["courses"]) == SLUGS and out["problems"] == []
    warnings = "\n".join(out["warnings"])
    for expected in ("restrict_submit", "testcourse:", "older than the series"):
        assert expected in warnings
    catalog = CourseCatalog(path=str(meta)).load()
    ml = catalog.get("ml")
    assert (ml.cull.inactive_timeout, ml.cull.max_age) == (7200, 43200)
    assert ml.kubespawner_override == {"mem_limit": "4G"}
    assert catalog.get("gpu").jupyterlab is False
    assert catalog.get("intro").uid == 1000010
    assert catalog.get("stats2022").archived and not catalog.get("stats2022").archive
    assert ml.students == {"student1", "student3"}  # roster and file combined


def test_every_image_reference_resolves(meta):
    catalog = CourseCatalog(path=str(meta)).load()
    image = {s: catalog.image_for(c, "student") for s, c in catalog.courses.items()}
    assert image["intro"] == "aaltoscienceit/notebook-server:5.0.4"  # DEFAULT
    assert image["stats2022"].startswith("aaltoscienceit/notebook-server-r-ubuntu:5")
    assert image["gpu"] == "aaltoscienceit/notebook-server-cuda:1.8.8"  # short name
    # [standard, 2023-09-01]: the entry of 2023-01-09, not the appended 2024 one
    assert image["ml"] == "aaltoscienceit/notebook-server:5.0.4"
    assert catalog.image_for(catalog.get("ml"), "instructor").startswith("registry.")
    assert [o.display_name for o in catalog.images.old] == [
        "Old version (JupyterLab)",
        "Python 2023 (JupyterLab)",
    ]


def test_without_the_import_aliases_are_refused_with_the_fix(tmp_path, capsys):
    shutil.copytree(META, tmp_path / "meta")
    assert main(["validate", str(tmp_path / "meta")]) == 1
    out = capsys.readouterr().out
    assert "aaltohub images import" in out and "used an unknown alias literally" in out


def test_images_py_is_parsed_never_run(tmp_path):
    marker = tmp_path / "ran"
    text = (
        "import os\n"
        f"os.system('touch {marker}')\n"
        "IMAGE_A = 'x/a:1'\n"
        "IMAGE_B = IMAGE_A.replace('1', '2')\n"
        "IMAGE_C = f'{IMAGE_A!r}'\n"
        "IMAGES_OLD = [(None, 'x/old:1'), ('bad',)]\n"
    )
    result = import_images(text)
    assert not marker.exists()
    assert result.aliases == {"A": "x/a:1"}
    assert [line.split(":")[0] for line in result.skipped] == [
        "line 1",  # import os
        "line 2",  # a call: never run
        "line 4",  # a method call
        "line 5",  # an f-string conversion
        "IMAGES_OLD",  # ('bad',)
    ]
    assert result.old == [{"name": None, "image": "x/old:1"}]
    assert "# NOT CONVERTED: line 2" in result.to_yaml()


def test_unknown_image_reported_by_the_import(tmp_path, capsys):
    shutil.copytree(META, tmp_path / "meta")
    (tmp_path / "meta" / "extra.yaml").write_text("image: NOPE\n")
    assert main(["images", "import", str(tmp_path / "meta" / "IMAGES.py")]) == 1
    assert "image alias 'NOPE' is not defined" in capsys.readouterr().err


# --- the migrate report ---------------------------------------------------------
def test_migrate_reports_every_course_and_flags_lost_access(tmp_path, capsys):
    meta = tmp_path / "meta"
    shutil.copytree(META, meta)
    (meta / "intro-users.yaml").write_text("students: [student1]\nemail: x\n")
    before = {p.name: p.read_bytes() for p in meta.iterdir()}
    code = main(
        ["migrate", "aalto", str(meta), "--hub-dir", str(AALTO / "srv"), "--json"]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["at_risk"]
    courses = {c["slug"]: c for c in report["courses"]}
    assert set(courses) == SLUGS
    # a broken roster: Aalto kept the course, aaltohub withholds it
    assert not courses["intro"]["offered"] and courses["intro"]["loses_access"]
    assert courses["testcourse"]["loses_access"]
    assert not courses["ml"]["at_risk"]
    assert any("restrict_submit" in d for d in courses["ml"]["differences"])
    assert any("hooks-course/gpu.py" in u for u in courses["gpu"]["unsupported"])
    assert (
        "mount course files: course/deeplearning/files (unchanged)"
        in courses["gpu"]["changes"]
    )
    assert any("1000011" in c for c in courses["stats2022"]["changes"])
    assert {p.name: p.read_bytes() for p in meta.iterdir()} == before  # read-only


def test_migrate_flags_data_that_would_not_be_mounted(meta):
    from aaltohub.migration.aalto import build_report

    paths = StoragePaths(files_sub_path="courses/{coursedir_slug}/files")
    report = build_report(str(meta), paths=paths)
    intro = next(c for c in report.courses if c.slug == "intro")
    assert intro.loses_data and "course/intro/files" in intro.loses_data[0]


# --- running servers survive the switch ------------------------------------------
AALTO_STATE = {  # what Aalto's get_state() stored (KubeSpawner's keys + three)
    "kubespawner_version": "4.3.0",
    "pod_name": "jupyter-instructor1",
    "namespace": "jupyter",
    "dns_name": "jupyter-instructor1.jupyter.svc.cluster.local",
    "course_slug": "ml-private",
    "cull_max_age": 43200,
    "cull_inactive_time": 7200,
}


def test_record_adopts_aalto_state():
    record = ServerRecord.from_state(AALTO_STATE)
    assert (record.course, record.role, record.origin) == (
        "ml-private",
        "student",
        "aalto",
    )
    assert (record.cull_inactive_timeout, record.cull_max_age) == (7200, 43200)
    teacher = ServerRecord.from_state(AALTO_STATE, {"profile": "ml-private-instructor"})
    assert teacher.role == "instructor"
    # the profile of another course grants nothing
    assert ServerRecord.from_state(AALTO_STATE, {"profile": "x-instructor"}).role == (
        "student"
    )
    general = ServerRecord.from_state({"pod_name": "p", "course_slug": ""})
    assert general.course is None and general.cull_max_age is None
    assert ServerRecord.from_state({"pod_name": "p"}) is None  # not Aalto's
    junk = ServerRecord.from_state({"course_slug": 5, "cull_max_age": "8h"})
    assert junk.course is None and junk.cull_max_age is None


async def test_course_spawner_adopts_a_server_started_by_aalto(catalog_dir, users_file):
    spawner = make_spawner(base_config(catalog_dir, users_file), "instructor1")
    spawner.load_state(dict(AALTO_STATE))
    assert spawner.course_slug == "ml-private"
    assert spawner.pod_name == "jupyter-instructor1"  # so the hub can stop it
    state = spawner.get_state()
    assert state["aaltohub"]["origin"] == "aalto"
    assert state["aaltohub"]["cull_inactive_timeout"] == 7200
    again = make_spawner(base_config(catalog_dir, users_file), "instructor1")
    again.load_state(state)  # the next restart reads aaltohub's own record
    assert (again.course_slug, again.server_record.origin) == ("ml-private", "aalto")


async def test_course_spawner_adopts_the_instructor_role(catalog_dir, users_file):
    spawner = make_spawner(base_config(catalog_dir, users_file), "instructor1")
    spawner.user_options = {"profile": "ml-private-instructor"}
    spawner.load_state(dict(AALTO_STATE))
    assert spawner.course_role == "instructor"


NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def server(state, started_ago=timedelta(hours=1)):
    started = (NOW - started_ago).isoformat().replace("+00:00", "Z")
    return {"name": "", "started": started, "state": state}


def test_the_culler_keeps_aaltos_rule_for_adopted_servers():
    short = dict(AALTO_STATE, cull_inactive_time=600)
    # Aalto's culler: the larger of its --timeout and the course's value
    assert not course_cull_arbiter(timedelta(minutes=30), 3600, server(short), now=NOW)
    assert course_cull_arbiter(timedelta(minutes=61), 3600, server(short), now=NOW)
    assert not course_cull_arbiter(
        timedelta(hours=1.5), 3600, server(AALTO_STATE), now=NOW
    )
    old = server(AALTO_STATE, started_ago=timedelta(hours=13))
    assert course_cull_arbiter(timedelta(0), 3600, old, now=NOW)


def test_only_lengthen_rule_for_every_server():
    own = {"aaltohub": {"version": 2, "course": "c", "cull_inactive_timeout": 600}}
    assert course_cull_arbiter(timedelta(minutes=11), 3600, server(own), now=NOW)
    aalto_rule = make_course_cull_arbiter(only_lengthens=True, default_max_age=8 * 3600)
    assert not aalto_rule(timedelta(minutes=11), 3600, server(own), now=NOW)
    nine_hours = server(own, started_ago=timedelta(hours=9))
    assert aalto_rule(timedelta(0), 3600, nine_hours, now=NOW)  # hub default age


def test_catalog_setting_marks_courses_only_lengthen(meta):
    catalog = CourseCatalog(path=str(meta), aalto_cull_only_lengthens=True).load()
    gpu = catalog.get("gpu").cull
    assert gpu.effective(3600, 28800) == (3600, 28800)  # 1800 may not shorten
    assert "cull limits" not in " ".join(catalog.notes.get("gpu", []))


# --- opt-in hooks --------------------------------------------------------------------
TEACHER = Identity("teacher1", 1000123, 70000, name="T", email="t@x")


def context(catalog, slug=None, role="student", identity=TEACHER):
    course = catalog.get(slug) if slug else None
    return SpawnContext(
        Viewer(identity.username), identity, StoragePaths(), course, role,
        providers={"catalog": catalog},
    )  # fmt: skip


def test_instructor_courses_are_mounted_read_only_when_archived(meta):
    catalog = CourseCatalog(path=str(meta)).load()
    plan = SpawnPlan()
    InstructorCoursesHook().apply(context(catalog, "ml", "instructor"), plan)
    mounts = {m.target: (m.sub_path, m.read_only) for m in plan.mounts}
    # teacher1 teaches intro, ml and stats2022 (archived); ml is the current one
    assert mounts == {
        "/m/jhnas/jupyter/course/intro": ("course/intro", False),
        "/m/jhnas/jupyter/course/stats2022": ("course/stats2022", True),
    }
    assert ("jupyter-stats2022", 70003) in plan.create_groups
    student_mode = SpawnPlan()
    InstructorCoursesHook().apply(context(catalog, "ml", "student"), student_mode)
    assert student_mode.mounts == []  # Aalto: not when testing as a student


def hook_dir(tmp_path) -> Path:
    path = tmp_path / "srv"
    shutil.copytree(AALTO / "srv", path)
    for f in path.rglob("*.py"):
        f.chmod(0o644)
    return path


async def test_aalto_hook_files_run_in_order_into_the_plan(meta, tmp_path, caplog):
    catalog = CourseCatalog(path=str(meta)).load()
    hook = AaltoHookFilesHook(directory=str(hook_dir(tmp_path)))
    plan = SpawnPlan()
    await hook.apply(context(catalog, "gpu"), plan)
    assert plan.env["AALTO_HOOK_ALL"] == "1" and plan.env["TEACHER1_HOOK"] == "teacher1"
    assert plan.resources.mem_limit == "8G"
    assert "node_selector" in caplog.text  # named, not silently dropped
    assert await AaltoHookFilesHook().apply(context(catalog), SpawnPlan()) is None


async def test_aalto_hook_files_are_refused_if_others_can_write(meta, tmp_path):
    catalog = CourseCatalog(path=str(meta)).load()
    srv = hook_dir(tmp_path)
    (srv / "hooks-all.py").chmod(0o666)
    with pytest.raises(HookFileError, match="chmod go-w"):
        await AaltoHookFilesHook(directory=str(srv)).apply(
            context(catalog), SpawnPlan()
        )
    inside = meta / "hooks-all.py"
    inside.write_text("x = 1\n")
    os.chmod(inside, 0o644)
    hook = AaltoHookFilesHook(directory=str(meta), catalog_path=str(meta))
    with pytest.raises(HookFileError, match="under the course catalog"):
        await hook.apply(context(catalog), SpawnPlan())


async def test_a_slow_hook_file_fails_the_spawn_without_blocking(meta, tmp_path):
    catalog = CourseCatalog(path=str(meta)).load()
    srv = tmp_path / "slow"
    srv.mkdir()
    (srv / "hooks-all.py").write_text("import time\ntime.sleep(0.5)\n")
    hook = AaltoHookFilesHook(directory=str(srv), timeout=0.1)
    with pytest.raises(HookFileError, match="ran longer than"):
        await hook.apply(context(catalog), SpawnPlan())


def test_build_course_reads_aalto_keys_of_a_single_file():
    course = build_course("c", {"gid": 1, "uid": 2, "archived": False})
    assert (course.uid, course.archived) == (2, False)
