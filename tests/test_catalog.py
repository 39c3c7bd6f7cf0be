"""CourseCatalog: loading, failing closed, reloading, images, the index."""

from __future__ import annotations

import datetime
import os
import textwrap

import pytest

from aaltohub.access import Viewer
from aaltohub.catalog import CourseCatalog
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
    monkeypatch.setattr(mod, "_read_yaml", lambda p, s: parsed.append(p) or real(p, s))
    touch_later(catalog_dir / "intro.yaml", "name: Renamed intro\ngid: 70001\n")
    await catalog.ensure_fresh()
    assert parsed == [str(catalog_dir / "intro.yaml")]
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
    catalog = load(catalog_dir)
    catalog.path = str(tmp_path / "missing")
    catalog.apply(catalog.scan())
    assert "intro" in catalog.courses


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
