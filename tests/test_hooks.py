"""Each spawn hook on its own: plain data in, plain data out."""

from __future__ import annotations

import sys
from pathlib import Path

from aaltohub import nbgrader_exchange
from aaltohub.access import Viewer
from aaltohub.course import build_course
from aaltohub.hooks import (
    CourseMountsHook,
    GitIdentityHook,
    HomeHook,
    NbgraderHook,
    ResourcesHook,
    SpawnHook,
    ThreadsHook,
    UIDHook,
    run_hooks,
)
from aaltohub.identity import Identity
from aaltohub.plan import SpawnContext, SpawnPlan
from aaltohub.storage.paths import StoragePaths

ALICE = Identity("alice", 1234567, 70000, name="Alice 'Al' \"Q\" Smith\nX", email="a@x")


def ctx(course=None, role="student", identity=ALICE, paths=None, **kw):
    return SpawnContext(
        Viewer(identity.username),
        identity,
        paths or StoragePaths(),
        course,
        role,
        **kw,
    )


def test_home_path():
    plan = SpawnPlan()
    HomeHook().apply(ctx(), plan)
    assert plan.mount("home").sub_path == "u/67/alice"
    assert plan.mount("home").target == plan.env["NB_NOTEBOOK_PATH"] == "/notebooks"


def test_uid_hook_direct_and_groups():
    course = build_course("c", {"gid": 700, "extra_instructor_groups": [["ta", 701]]})
    plan = SpawnPlan()
    UIDHook().apply(ctx(course, "instructor"), plan)
    assert (plan.uid, plan.gid, plan.supplemental_gids) == (1234567, 70000, [700, 701])
    assert not plan.start_as_root
    student = SpawnPlan()
    UIDHook().apply(ctx(course, "student"), student)
    assert student.supplemental_gids == []  # course group is for instructors


def test_course_mounts_datadir_readwrite_and_umask():
    course = build_course(
        "c",
        {"gid": 7, "datadir": True, "datadir_readwrite": True, "student_umask": "077"},
    )
    plan = SpawnPlan()
    CourseMountsHook().apply(ctx(course), plan)
    assert plan.mount("course-data").read_only is False
    assert plan.env["NB_UMASK"] == "0077"
    assert plan.mount("course-files") is None


def test_extra_mounts_from_config():
    paths = StoragePaths(
        extra_mounts=[{"target": "/m/software", "sub_path": "software/{username}"}]
    )
    plan = SpawnPlan()
    CourseMountsHook().apply(ctx(paths=paths), plan)
    assert plan.mounts[0].sub_path == "software/alice"
    assert plan.mounts[0].target == "/m/software" and plan.mounts[0].read_only


def test_nbgrader_config_is_python_literals_only():
    course = build_course("c", {"gid": 7, "nbgrader_config": "c.X.y = 1\n"})
    text = NbgraderHook(timezone="Europe/Helsinki'; import os #").render(ctx(course))
    namespace = {"get_config": lambda: Recorder()}
    exec(compile(text, "nbgrader_config.py", "exec"), namespace)
    assert namespace["c"].values["Exchange.timezone"] == "Europe/Helsinki'; import os #"
    assert namespace["c"].values["X.y"] == 1


class Recorder:
    """Collects ``c.Section.key = value`` assignments."""

    def __init__(self, prefix=""):
        object.__setattr__(self, "prefix", prefix)
        object.__setattr__(self, "values", {} if not prefix else None)

    def __getattr__(self, name):
        child = Recorder(name)
        object.__setattr__(child, "root", self)
        return child

    def __setattr__(self, name, value):
        self.root.values[f"{self.prefix}.{name}"] = value


def test_git_identity_quotes_values():
    plan = SpawnPlan()
    GitIdentityHook().apply(ctx(files_root="/etc/aaltohub"), plan)
    text = plan.files["gitconfig"]
    assert '\tname = "Alice \'Al\' \\"Q\\" Smith X"' in text
    assert plan.env["GIT_CONFIG_SYSTEM"] == "/etc/aaltohub/gitconfig"


def test_resources_and_threads():
    course = build_course(
        "c", {"gid": 7, "resources": {"instructor": {"cpu_limit": 3.5}}}
    )
    plan = SpawnPlan()
    c = ctx(course, "instructor", defaults={"cpu_limit": 1, "mem_limit": "1G"})
    ResourcesHook().apply(c, plan)
    ThreadsHook().apply(c, plan)
    assert plan.resources.cpu_limit == 3.5 and plan.resources.mem_guarantee == "1G"
    assert plan.env["OMP_NUM_THREADS"] == "3"
    unlimited = SpawnPlan()
    ThreadsHook().apply(ctx(), unlimited)
    assert "OMP_NUM_THREADS" not in unlimited.env


async def test_custom_async_hook_runs_in_order():
    class Mine(SpawnHook):
        async def apply(self, ctx, plan):
            plan.env["MINE"] = plan.env.get("NB_USER", "?")

    plan = await run_hooks([UIDHook(), Mine()], ctx(), SpawnPlan())
    assert plan.env["MINE"] == "alice"


def test_instructors_collect_only_submissions_of_their_owners(tmp_path):
    course = build_course("c", {"gid": 7, "instructors": ["alice"]})
    plan = SpawnPlan()
    NbgraderHook().apply(ctx(course, "instructor"), plan)
    shipped = plan.files["jupyter/aaltohub_nbgrader_exchange.py"]
    source = Path(nbgrader_exchange.__file__).read_text(encoding="utf-8")
    assert shipped == source  # byte for byte: the image need not have aaltohub
    config = tmp_path / "nbgrader_config.py"
    config.write_text(plan.files["jupyter/nbgrader_config.py"])
    namespace = {"get_config": lambda: Recorder(), "__file__": str(config)}
    before = list(sys.path)
    try:
        exec(compile(config.read_text(), str(config), "exec"), namespace)
        assert str(tmp_path) in sys.path  # where the shipped module is
    finally:
        sys.path[:] = before
    values = namespace["c"].values
    assert values["ExchangeFactory.collect"] == (
        "aaltohub_nbgrader_exchange.VerifiedExchangeCollect"
    )
    assert values["ExchangeCollect.check_owner"] is False
    # students submit; they get neither the module nor the collect step
    student = SpawnPlan()
    NbgraderHook().apply(ctx(course, "student"), student)
    assert list(student.files) == ["jupyter/nbgrader_config.py"]
    assert "ExchangeFactory" not in student.files["jupyter/nbgrader_config.py"]


def test_nbgrader_paths_follow_the_mount_targets():
    paths = StoragePaths(
        exchange_target="/exchange", files_target="/teach", home_target="/home/me"
    )
    course = build_course("c", {"gid": 7, "instructors": ["alice"]})
    settings = dict(NbgraderHook().settings(ctx(course, "instructor", paths=paths)))
    assert settings["Exchange.root"] == "/exchange"
    assert settings["CourseDirectory.root"] == "/teach"
    assert settings["Exchange.assignment_dir"] == "/home/me/"
    assert settings["NbGrader.logfile"] == "/teach/.nbgrader.log"


def test_instructors_get_the_uids_the_hub_knows_of_who_may_submit():
    # The collect check is exact for these: a submission planted in their
    # name by another uid is refused, theirs is taken.
    import json

    from aaltohub.identity.static import StaticIdentity

    provider = StaticIdentity()
    for name, uid, groups in [
        ("bob", 1001, ()),
        ("carol", 1002, ("cs-101",)),
        ("dave", 1003, ()),
    ]:
        provider.remember(Identity(name, uid, 70000, groups=frozenset(groups)))
    private = build_course(
        "c",
        {"gid": 7, "private": True, "students": ["bob"], "student_groups": ["cs-101"]},
    )
    plan = SpawnPlan()
    NbgraderHook().apply(
        ctx(private, "instructor", providers={"identity": provider}), plan
    )
    uids = json.loads(plan.files["jupyter/known_uids.json"])
    assert uids == {"bob": 1001, "carol": 1002}  # dave is not on the course
    public = build_course("p", {"gid": 8, "instructors": ["alice"]})
    plan = SpawnPlan()
    NbgraderHook().apply(
        ctx(public, "instructor", providers={"identity": provider}), plan
    )
    assert set(json.loads(plan.files["jupyter/known_uids.json"])) == {
        "bob",
        "carol",
        "dave",
    }
    student = SpawnPlan()
    NbgraderHook().apply(
        ctx(private, "student", providers={"identity": provider}), student
    )
    assert "jupyter/known_uids.json" not in student.files
