"""CourseCatalog: loading, failing closed, reloading, images, the index."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import textwrap

import pytest
import yaml
from traitlets import TraitError

from aaltohub.access import Viewer
from aaltohub.catalog import CourseCatalog
from aaltohub.catalog.safe_yaml import CourseLoader, limited_loader
from aaltohub.cli import main as cli_main
from conftest import write_catalog

# A course file exactly as the reference deployment writes them: every key
# it knows, in its own spelling.
REFERENCE_COURSE = """\
name: Data Science with Python
gid: 70777
instructors: [teach1, teach2]
students: [stud1]
private: false
archive: false
default: false
image: [standard, 2024-02-01]
image_instructor: DEFAULT
datadir: true
datadir_readwrite: false
restrict_submit: true
coursedir_slug: dsp2024
nbgrader_config: |
  c.Exchange.max_file_size = 1000
student_umask: 0007
create_userdata: true
extra_instructor_groups: [[jupyter-dsp-ta, 70778]]
extra_student_groups: [[dsp-students, 70779]]
kubespawner_override:
  mem_limit: 4G
jupyterlab: true
"""


def load(path) -> CourseCatalog:
    return CourseCatalog(path=str(path), reload_interval=0).load()


def test_reference_course_file_loads_unchanged(catalog_dir):
    (catalog_dir / "dsp.yaml").write_text(REFERENCE_COURSE)
    catalog = load(catalog_dir)
    assert catalog.problems() == []
    course = catalog.get("dsp")
    assert course.gid == 70777 and course.instructors == {"teach1", "teach2"}
    assert course.student_umask == "0007"  # YAML read 0007 as the number 7
    assert course.directory == "dsp2024"
    assert course.extra_instructor_groups == (("jupyter-dsp-ta", 70778),)
    assert course.kubespawner_override == {"mem_limit": "4G"}
    assert catalog.image_for(course, "student") == "example/notebook:7.0"
    assert catalog.image_for(course, "instructor") == "example/notebook:5.0"


def test_roster_is_merged(catalog_dir):
    catalog = load(catalog_dir)
    assert catalog.get("intro").students == {"student1"}


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "name: X\nprivte: true\n",
            "key 'privte' is unknown (did you mean 'private'?)",
        ),
        ("name: X\ngid: seventy\n", "key 'gid' must be a positive group id"),
        ("name: X\nprivate: yes please\n", "key 'private' must be true or false"),
        ("name: [unclosed\n", "invalid YAML at line"),
        ("- just\n- a list\n", "expected a mapping of course keys"),
        ("image: NOPE\n", "image alias 'NOPE' is not defined"),
        ("image: [nosuch, 2024-01-01]\n", "image series 'nosuch' is not defined"),
        ("coursedir_slug: ../etc\n", "no '/', no '..'"),
        ("resources: {student: {cpu_limt: 2}}\n", "did you mean 'cpu_limit'"),
        ("extra_student_groups: [grp]\n", "[group-name, gid] pairs"),
    ],
)
def test_broken_file_fails_closed_with_clear_message(catalog_dir, text, expected):
    (catalog_dir / "broken.yaml").write_text(text)
    catalog = load(catalog_dir)
    assert catalog.get("broken") is None  # not offered
    [problem] = catalog.problems()
    assert problem.startswith("course file broken.yaml: ")
    assert expected in problem
    assert {"intro", "ml-private", "exam", "old", "nogid"} <= set(catalog.courses)


def test_broken_roster_fails_its_course_closed(catalog_dir):
    (catalog_dir / "intro-users.yaml").write_text("studnets: [x]\n")
    catalog = load(catalog_dir)
    assert catalog.get("intro") is None
    assert "did you mean 'students'" in catalog.errors["intro"]


def test_bad_file_names_are_reported(catalog_dir):
    (catalog_dir / "Bad Name.yaml").write_text("name: x\n")
    (catalog_dir / "x-instructor.yaml").write_text("name: x\n")
    catalog = load(catalog_dir)
    assert len(catalog.problems()) == 2
    assert all("file name must be <slug>.yaml" in p for p in catalog.problems())


def touch_later(path, text):
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


async def test_reload_reparses_only_changed_files(catalog_dir, monkeypatch):
    catalog = load(catalog_dir)
    parsed = []
    import aaltohub.catalog.directory as mod

    real = mod._read_yaml
    monkeypatch.setattr(
        mod,
        "_read_yaml",
        lambda fd, name, *a: parsed.append(name) or real(fd, name, *a),
    )
    touch_later(catalog_dir / "intro.yaml", "name: Renamed intro\ngid: 70001\n")
    await catalog.ensure_fresh()
    assert parsed == ["intro.yaml"]
    assert catalog.get("intro").name == "Renamed intro"
    assert catalog.get("intro").students == {"student1"}  # roster still merged


async def test_reload_picks_up_new_removed_and_fixed_files(catalog_dir):
    catalog = load(catalog_dir)
    (catalog_dir / "new.yaml").write_text("name: New\n")
    (catalog_dir / "nogid.yaml").unlink()
    touch_later(catalog_dir / "intro.yaml", "name: Oops\nprivte: true\n")
    await catalog.ensure_fresh()
    assert catalog.get("new") and catalog.get("nogid") is None
    assert catalog.get("intro") is None and "privte" in catalog.errors["intro"]
    touch_later(catalog_dir / "intro.yaml", "name: Fixed\n")
    await catalog.ensure_fresh()
    assert catalog.get("intro").name == "Fixed" and "intro" not in catalog.errors
    # the index follows: a student of the removed roster entry loses access
    assert "intro" in {c.slug for c, _ in catalog.offered_to(Viewer("anyone"))}


async def test_reload_interval_limits_rescans(catalog_dir):
    catalog = CourseCatalog(path=str(catalog_dir), reload_interval=3600).load()
    (catalog_dir / "new.yaml").write_text("name: New\n")
    await catalog.ensure_fresh()
    assert catalog.get("new") is None  # not yet: next scan is due later


def test_images_file_errors_keep_the_previous_table(catalog_dir):
    catalog = load(catalog_dir)
    touch_later(catalog_dir / "IMAGES.yaml", "aliasses: {}\n")
    catalog.apply(catalog.scan())
    assert "unknown key(s) ['aliasses']" in catalog.problems()[0]
    assert catalog.image_for(catalog.get("intro"), "student") == "example/notebook:5.0"


def test_dated_series_before_first_image_uses_the_oldest(catalog_dir):
    (catalog_dir / "ancient.yaml").write_text("image: [standard, 2001-01-01]\n")
    catalog = load(catalog_dir)
    assert (
        catalog.image_for(catalog.get("ancient"), "student") == "example/notebook:6.0"
    )
    assert catalog.images.series["standard"][0][0] == datetime.date(2023, 8, 1)


def test_unreadable_directory_keeps_serving(tmp_path, catalog_dir):
    from aaltohub import metrics

    catalog = load(catalog_dir)
    failures = metrics.CATALOG_RELOAD_FAILURES._value.get()
    catalog.path = str(tmp_path / "missing")
    catalog.apply(catalog.scan())
    assert "intro" in catalog.courses
    # a failed reload as a whole is counted (a broken file is not)
    assert metrics.CATALOG_RELOAD_FAILURES._value.get() == failures + 1


def test_offered_to_uses_roster_groups_and_rules(catalog_dir):
    catalog = load(catalog_dir)
    catalog.default_instructors = {"boss"}

    def offered(who):
        return {c.slug: roles for c, roles in catalog.offered_to(who)}

    assert "ml-private" not in offered(Viewer("student2"))
    assert offered(Viewer("student1"))["ml-private"] == ("student",)
    assert offered(Viewer("x", groups=frozenset({"jupyter-exam"})))["exam"] == (
        "student",
        "instructor",
    )
    assert offered(Viewer("boss"))["intro"] == ("student", "instructor")
    assert "old" not in offered(Viewer("admin", admin=True))


async def test_offered_courses_are_reused_until_a_file_changes_or_they_age(
    catalog_dir, monkeypatch
):
    catalog = CourseCatalog(path=str(catalog_dir), reload_interval=0).load()
    who = Viewer("student2")
    first = catalog.offered_to(who)
    assert catalog.offered_to(who) == first
    # the cached answer is what is shown; a changed course file is seen at once
    touch_later(catalog_dir / "ml-private.yaml", "name: ML\nprivate: false\n")
    await catalog.ensure_fresh()
    assert "ml-private" in {c.slug for c, _ in catalog.offered_to(who)}
    # time-based rules (a term that ends) are seen within offer_cache_seconds
    seen = []
    monkeypatch.setattr(
        "aaltohub.catalog.offers.visible_roles",
        lambda course, who, rules, now=None: seen.append(course.slug) or ("student",),
    )
    catalog.offered_to(who)
    assert seen == []  # served from the cache
    catalog.offer_cache_seconds = 0
    catalog.offered_to(who)
    assert seen, "with the cache off, the rules are asked again"


def test_validate_command(catalog_dir, capsys):
    assert cli_main(["validate", str(catalog_dir)]) == 0
    assert "5 course(s) valid, 0 problem(s)" in capsys.readouterr().out
    (catalog_dir / "intro.yaml").write_text(
        textwrap.dedent("name: Intro\nprivte: true\n")
    )
    assert cli_main(["validate", str(catalog_dir)]) == 1
    out = capsys.readouterr().out
    assert "error: course file intro.yaml: key 'privte' is unknown" in out


def test_validate_command_missing_directory(tmp_path, capsys):
    assert cli_main(["validate", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().out


def test_write_catalog_helper_round_trip(tmp_path):
    # the fixture data itself must be valid, or every other test is moot
    assert load(write_catalog(tmp_path / "c")).problems() == []


# --- course files are untrusted input -------------------------------------------------
def problem_of(catalog: CourseCatalog, slug: str) -> str:
    assert catalog.get(slug) is None, f"{slug} must not be offered"
    return catalog.errors[slug]


def test_override_allow_list_is_enforced_at_load(catalog_dir):
    (catalog_dir / "root.yaml").write_text(
        "name: Root\nkubespawner_override:\n  uid: 0\n  privileged: true\n"
    )
    (catalog_dir / "prio.yaml").write_text(
        "kubespawner_override: {priority_class_name: high}\n"
    )
    catalog = load(catalog_dir)
    message = problem_of(catalog, "root")
    # both refused keys are named, not only the first
    assert message.startswith("course file root.yaml: 2 problems: (1)")
    assert "(1) kubespawner_override key 'uid' is not allowed" in message
    assert "(2) kubespawner_override key 'privileged' is not allowed" in message
    assert "extra_override_keys" in problem_of(catalog, "prio")
    # the deployer may widen the list, but never with a key that weakens isolation
    wide = CourseCatalog(
        path=str(catalog_dir), extra_override_keys={"priority_class_name"}
    ).load()
    assert wide.get("prio").kubespawner_override == {"priority_class_name": "high"}
    assert wide.get("root") is None
    with pytest.raises(TraitError, match=r"'privileged'.*can never"):
        CourseCatalog(path=str(catalog_dir), extra_override_keys={"privileged"})


def test_validate_command_refuses_dangerous_overrides(catalog_dir, capsys):
    (catalog_dir / "x.yaml").write_text(
        "kubespawner_override:\n  extra_pod_config: {hostPID: true}\n"
    )
    assert cli_main(["validate", str(catalog_dir)]) == 1
    out = capsys.readouterr().out
    assert (
        "error: course file x.yaml: kubespawner_override key 'extra_pod_config'"
        " is not allowed" in out
    )


def test_validate_command_takes_the_deployers_extra_override_keys(catalog_dir, capsys):
    (catalog_dir / "x.yaml").write_text(
        "kubespawner_override: {priority_class_name: a}\n"
    )
    assert cli_main(["validate", str(catalog_dir)]) == 1
    assert "c.CourseCatalog.extra_override_keys" in capsys.readouterr().out
    args = ["validate", str(catalog_dir), "--extra-override-key", "priority_class_name"]
    assert cli_main(args) == 0
    assert cli_main([*args, "--extra-override-key", "uid"]) == 2
    assert "'uid' can never be set by a course file" in capsys.readouterr().out


def unblock_fifo(path) -> None:
    """Give a reader stuck in open() of the FIFO its end of file."""
    with contextlib.suppress(OSError):  # ENXIO: nobody waits, nothing to do
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


async def test_fifo_named_yaml_does_not_block_the_scan(catalog_dir):
    fifo = catalog_dir / "x.yaml"
    os.mkfifo(fifo)
    (catalog_dir / "d.yaml").mkdir()
    catalog = CourseCatalog(path=str(catalog_dir), reload_interval=0)
    try:
        await asyncio.wait_for(catalog.ensure_fresh(), timeout=5)
    finally:
        unblock_fifo(fifo)
    assert problem_of(catalog, "x") == (
        "course file x.yaml: not a regular file (a FIFO); a course file must be"
        " a plain file"
    )
    assert "not a regular file (a directory)" in problem_of(catalog, "d")
    assert {"intro", "ml-private", "exam", "old", "nogid"} <= set(catalog.courses)


def test_symlinks_are_followed_only_inside_the_directory(tmp_path, catalog_dir):
    (tmp_path / "secret.yaml").write_text("name: hub secret\n")
    (catalog_dir / "leak.yaml").symlink_to(tmp_path / "secret.yaml")
    (catalog_dir / "up.yaml").symlink_to("../secret.yaml")
    (catalog_dir / "intro-2027.yaml").symlink_to("intro.yaml")
    # a Kubernetes ConfigMap mount: x.yaml -> ..data/x.yaml, ..data -> ..2026_01
    (catalog_dir / "..2026_01").mkdir()
    (catalog_dir / "..2026_01" / "cm.yaml").write_text("name: From a ConfigMap\n")
    (catalog_dir / "..data").symlink_to("..2026_01")
    (catalog_dir / "cm.yaml").symlink_to("..data/cm.yaml")
    catalog = load(catalog_dir)
    assert catalog.get("intro-2027").name == "Introduction to Programming"
    assert catalog.get("cm").name == "From a ConfigMap"
    for slug in ("leak", "up"):
        message = problem_of(catalog, slug)
        assert message.startswith(f"course file {slug}.yaml: symlink leads outside")
        assert "hub secret" not in message


def test_file_size_is_limited(catalog_dir):
    assert CourseCatalog().max_file_size == 1024 * 1024
    text = "name: Big\ndescription: " + "x" * 200
    (catalog_dir / "big.yaml").write_text(text)
    catalog = CourseCatalog(path=str(catalog_dir), max_file_size=100).load()
    message = problem_of(catalog, "big")
    assert message.startswith(f"course file big.yaml: the file has {len(text)} bytes")
    assert "c.CourseCatalog.max_file_size (100)" in message
    assert catalog.get("nogid") is not None  # small enough


def test_deep_nesting_is_refused(catalog_dir):
    depth = 200
    (catalog_dir / "deep.yaml").write_text("name: " + "[" * depth + "]" * depth + "\n")
    message = problem_of(load(catalog_dir), "deep")
    assert message.startswith("course file deep.yaml: invalid YAML at line 1:")
    assert "nested deeper than" in message


# Each level repeats the one before ten times: 10**5 scalars from 50 aliases.
BOMB = """\
name:
  - &a [x, x, x, x, x, x, x, x, x, x]
  - &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
  - &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
  - &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
  - &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
"""


def test_alias_expansion_is_limited(catalog_dir):
    (catalog_dir / "bomb.yaml").write_text(BOMB)
    message = problem_of(load(catalog_dir), "bomb")
    assert message.startswith("course file bomb.yaml: invalid YAML at line")
    assert "aliases expand to more than" in message
    assert len(message) < 300


def test_a_few_aliases_are_fine(catalog_dir):
    (catalog_dir / "shared.yaml").write_text(
        "resources:\n  student: &r {cpu_limit: 2, mem_limit: 2G}\n  instructor: *r\n"
    )
    course = load(catalog_dir).get("shared")
    assert course.resources["student"] == course.resources["instructor"]


@pytest.mark.parametrize(
    "name,text,line,key",
    [
        ("dup.yaml", "name: Dup\nprivate: true\nprivate: false\n", 3, "private"),
        (
            "dup.yaml",
            "kubespawner_override:\n  environment: {A: '1', A: '2'}\n",
            2,
            "A",
        ),
        ("dup-users.yaml", "students: [a]\n'students': [b]\n", 2, "students"),
    ],
)
def test_duplicate_keys_are_refused(catalog_dir, name, text, line, key):
    (catalog_dir / "dup.yaml").write_text("name: Dup\n")
    (catalog_dir / name).write_text(text)
    message = problem_of(load(catalog_dir), "dup")
    assert message.startswith(f"course file {name}: invalid YAML at line {line}:")
    assert f"duplicate key '{key}'" in message


def test_merge_keys_may_be_overridden(catalog_dir):
    (catalog_dir / "merge.yaml").write_text(
        "resources:\n  student: &r {cpu_limit: 2, mem_limit: 2G}\n"
        "  instructor: {<<: *r, cpu_limit: 4}\n"
    )
    course = load(catalog_dir).get("merge")
    assert course.resources["instructor"].cpu_limit == 4
    assert course.resources["instructor"].mem_limit == "2G"


BREAKAGES = {
    "fifo": None,
    "oversized": "name: x\ndescription: " + "x" * (1024 * 1024) + "\n",
    "deep-repr": "name: " + "[" * 990 + "]" * 990 + "\n",
    "bomb": BOMB,
    "duplicate": "name: x\nname: y\n",
    "infinite-cull": "cull: {inactive_timeout: .inf}\n",
    "bad-date": "image: [standard, 2024-13-45]\n",
    "privileged": "kubespawner_override: {privileged: true}\n",
}


@pytest.mark.parametrize("kind", sorted(BREAKAGES))
async def test_a_bad_file_fails_alone_and_the_rest_keeps_serving(catalog_dir, kind):
    catalog = load(catalog_dir)
    before = {s: c for s, c in catalog.courses.items() if s != "intro"}
    target = catalog_dir / "intro.yaml"
    target.unlink()
    if BREAKAGES[kind] is None:
        os.mkfifo(target)
    else:
        target.write_text(BREAKAGES[kind])
    try:
        await asyncio.wait_for(catalog.ensure_fresh(), timeout=10)
    finally:
        if BREAKAGES[kind] is None:
            unblock_fifo(target)
    assert problem_of(catalog, "intro").startswith("course file intro.yaml: ")
    assert len(catalog.errors["intro"]) < 500
    assert {s: c for s, c in catalog.courses.items()} == before  # untouched
    # and a fix is picked up
    target.unlink()
    touch_later(target, "name: Fixed\n")
    await catalog.ensure_fresh()
    assert catalog.get("intro").name == "Fixed"


def test_broken_images_file_of_any_shape_keeps_the_previous_table(catalog_dir):
    catalog = load(catalog_dir)
    for text, expected in (
        ("series: [a, b]\n", "series must map NAME: [[YYYY-MM-DD, image], ...]"),
        (
            "series: {s: [[2024-01-01, a], [2024-01-01 10:00:00, b]]}\n",
            "series 's' must be a list of [YYYY-MM-DD, image] pairs",
        ),
        ("aliases: {A: x}\naliases: {B: y}\n", "duplicate key 'aliases'"),
    ):
        touch_later(catalog_dir / "IMAGES.yaml", text)
        catalog.apply(catalog.scan())
        assert catalog.problems()[0].startswith("images file IMAGES.yaml: ")
        assert expected in catalog.problems()[0]
        assert catalog.image_for(catalog.get("intro"), "student") == (
            "example/notebook:5.0"
        )


@pytest.mark.parametrize("base", [yaml.SafeLoader, getattr(yaml, "CSafeLoader", None)])
@pytest.mark.parametrize(
    "text,problem",
    [
        ("a: 1\nb: 2\na: 3\n", "duplicate key 'a'"),
        ("a: &x [*x]\n", "an alias refers to a value that contains it"),
        (BOMB, "aliases expand to more than 10000 values"),
        ("a: " + "[" * 33 + "]" * 33, "nested deeper than 32 levels"),
        ("a: " + "[" * 990 + "]" * 990, "nested deeper than 32 levels"),
        # an alias may not carry a value past the limit either
        ("a: &x " + "[" * 30 + "]" * 30 + "\nb: [[[*x]]]\n", "nested deeper than"),
    ],
)
def test_loader_limits_with_and_without_libyaml(base, text, problem):
    if base is None:
        pytest.skip("PyYAML without libyaml")
    loader = limited_loader(base)(text)
    try:
        with pytest.raises(yaml.YAMLError) as e:
            loader.get_single_data()
    finally:
        loader.dispose()
    assert problem in str(e.value)


def test_course_files_use_libyaml_when_it_limits_nesting_itself():
    # PyYAML wheels bundle different libyaml versions: the C loader is used
    # only where it limits nesting itself (older ones crash instead).
    from aaltohub.catalog.safe_yaml import libyaml_limits_depth

    fast = bool(getattr(yaml, "CSafeLoader", None)) and libyaml_limits_depth()
    assert issubclass(CourseLoader, yaml.CSafeLoader) is fast
