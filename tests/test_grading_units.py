"""The pure parts of isolated grading: limits of a course file, the
Execute swap, what is taken back from a run, statuses and resume rules.
No sandbox, no nbgrader run (see test_grading.py for those)."""

from __future__ import annotations

import copy
import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from aaltohub.course import CourseError, build_course
from aaltohub.grading import kube, local
from aaltohub.grading.autograde import ISOLATED, NoExecuteStep, isolate
from aaltohub.grading.isolated import IsolationError, limit_notes, merge_outputs
from aaltohub.grading.limits import DEFAULT, MAXIMUM, GradingLimits
from aaltohub.grading.outcome import EXECUTED, FAILED, TIMED_OUT, clean
from aaltohub.grading.runner import _status_of, is_graded, submissions


def test_a_course_without_grading_gets_the_safe_defaults():
    assert build_course("c", {}).grading == DEFAULT
    assert DEFAULT.memory == 2**30 and DEFAULT.timeout == 300


def test_course_limits_are_checked_and_bounded():
    got = build_course("c", {"grading": {"cpu": 2, "memory": "512M", "pids": 64}})
    assert got.grading == GradingLimits(cpu=2.0, memory=512 * 2**20, pids=64)
    for bad, words in [
        ({"memory": "lots"}, "'memory' must be bytes or a size"),
        ({"timeout": -1}, "non-negative number"),
        ({"pids": 10**6}, f"between 16 and {MAXIMUM.pids}"),
        ({"cpu": True}, "non-negative number"),
        ("fast", "must be a mapping"),
    ]:
        with pytest.raises(CourseError) as raised:
            build_course("c", {"grading": bad})
        assert words in str(raised.value)


def test_execute_is_swapped_for_the_isolated_step():
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute, SaveAutoGrades

    default = Autograde.class_traits()["autograde_preprocessors"].default()
    swapped = isolate(default)
    assert swapped[0] == ISOLATED and Execute not in swapped
    assert SaveAutoGrades in swapped  # everything else stays nbgrader's
    assert isolate(["nbgrader.preprocessors.Execute", "x.Y"]) == [ISOLATED, "x.Y"]
    with pytest.raises(NoExecuteStep, match="no Execute step"):
        isolate([SaveAutoGrades])


def notebook():
    nb = new_notebook(cells=[new_markdown_cell("hi"), new_code_cell("1 + 1")])
    nb.cells[1].metadata["nbgrader"] = {"grade": True, "grade_id": "t", "points": 1}
    return nb


def test_only_outputs_come_back_from_a_run():
    sent = notebook()
    executed = copy.deepcopy(sent)
    executed.cells[1].outputs = [new_output("stream", name="stdout", text="2\n")]
    executed.cells[1].execution_count = 1
    executed.cells[1].source = "pass"  # a run cannot change what is graded
    executed.cells[1].metadata["nbgrader"]["points"] = 1000
    merge_outputs(sent, executed)
    assert sent.cells[1].outputs[0]["text"] == "2\n"
    assert sent.cells[1].source == "1 + 1"
    assert sent.cells[1].metadata["nbgrader"]["points"] == 1


def test_a_notebook_with_other_cells_is_refused():
    sent, executed = notebook(), notebook()
    executed.cells.append(new_code_cell("extra"))
    with pytest.raises(IsolationError):
        merge_outputs(sent, executed)
    executed = notebook()
    executed.cells[0] = new_code_cell("swapped type")
    with pytest.raises(IsolationError):
        merge_outputs(sent, executed)
    executed = notebook()
    executed.cells[1].outputs = [{"output_type": "bogus"}]
    with pytest.raises(nbformat.ValidationError):
        merge_outputs(notebook(), executed)


def test_limit_errors_are_named():
    nb = notebook()
    nb.cells[1].outputs = [
        new_output("error", ename="MemoryError", evalue="", traceback=[])
    ]
    assert limit_notes(nb) == ["MemoryError (memory limit)"]


def test_text_from_a_run_is_one_printable_line():
    assert clean("a\x1b[31mred\nline\x00") == "a [31mred line"
    assert len(clean("x" * 1000)) == 300


def test_how_a_sandbox_ended():
    limits = GradingLimits(timeout=9)
    assert local.judge(None, b"", False, b"", limits).status == TIMED_OUT
    failed = local.judge(
        3, b"", False, b"noise\nDeadKernelError: Kernel died\n", limits
    )
    assert (failed.status, failed.reason) == (FAILED, "DeadKernelError: Kernel died")
    assert local.judge(0, b"x", True, b"", limits).status == FAILED
    assert local.judge(0, b"{}", False, b"", limits).status == EXECUTED


def test_how_a_job_ended():
    limits = GradingLimits(memory=256 * 2**20, timeout=30)
    assert kube.judge({"status": {}}, [], limits) is None
    done = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert kube.judge(done, [], limits).status == EXECUTED
    late = {
        "status": {
            "conditions": [
                {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}
            ]
        }
    }
    assert kube.judge(late, [], limits).status == TIMED_OUT
    oom = {
        "status": {
            "containerStatuses": [
                {"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
            ]
        }
    }
    # The pod's OOMKilled is known before the Job controller marks it failed.
    assert "OOMKilled" in kube.judge({"status": {}}, [oom], limits).reason


def test_status_from_the_report():
    records = [{"notebook": "ps1", "status": TIMED_OUT, "reason": "after 5 s"}]
    status = _status_of("s", 1, "", records, 0.0)
    assert (status.status, status.reason) == (TIMED_OUT, "ps1: after 5 s")
    status = _status_of("s", 1, "[x | ERROR] No notebooks found\nmore", [], 0.0)
    assert status.reason == "[x | ERROR] No notebooks found"
    status = _status_of(
        "s", 0, "", [{"status": EXECUTED, "score": 1, "max_score": 2}], 0
    )
    assert (status.status, status.score, status.max_score) == ("graded", 1, 2)


def test_submissions_and_resume(tmp_path):
    for student in ("b", "a", ".hidden"):
        (tmp_path / "submitted" / student / "ps1").mkdir(parents=True)
        (tmp_path / "submitted" / student / "ps1" / "ps1.ipynb").write_text("{}")
    (tmp_path / "submitted" / "link").symlink_to(tmp_path / "submitted" / "a")
    assert submissions(str(tmp_path), "ps1") == ["a", "b"]
    with pytest.raises(ValueError, match="for zed"):
        submissions(str(tmp_path), "ps1", ["a", "zed"])
    graded = tmp_path / "autograded" / "a" / "ps1"
    graded.mkdir(parents=True)
    assert not is_graded(str(tmp_path), "ps1", "a")  # its notebook is missing
    (graded / "ps1.ipynb").write_text("{}")
    (graded / "timestamp.txt").write_text("t1")
    (tmp_path / "submitted" / "a" / "ps1" / "timestamp.txt").write_text("t1")
    assert is_graded(str(tmp_path), "ps1", "a")
    (tmp_path / "submitted" / "a" / "ps1" / "timestamp.txt").write_text("t2")
    assert not is_graded(str(tmp_path), "ps1", "a")  # collected again


def test_force_regrades_what_is_graded(tmp_path, monkeypatch):
    from aaltohub.grading import runner

    for student in ("a", "b"):
        (tmp_path / "submitted" / student / "ps1").mkdir(parents=True)
    (tmp_path / "autograded" / "a" / "ps1").mkdir(parents=True)  # a is graded
    if os.geteuid() == 0:  # a course directory of group root is refused
        os.chown(tmp_path, 4321, 4321)
    ran = []

    def fake(course_dir, assignment, student, limits, backend, grader_uid=None):
        ran.append(student)
        return runner.Status(student, runner.GRADED)

    monkeypatch.setattr(runner, "grade_one", fake)
    got = runner.grade(str(tmp_path), "ps1", limits=DEFAULT, jobs=2)
    assert [s.status for s in got] == [runner.SKIPPED, runner.GRADED]
    assert ran == ["b"]
    got = runner.grade(str(tmp_path), "ps1", limits=DEFAULT, force=True)
    assert [s.status for s in got] == [runner.GRADED, runner.GRADED]
    with pytest.raises(ValueError, match="not an nbgrader assignment"):
        runner.grade(str(tmp_path), "../ps1", limits=DEFAULT)


def test_what_the_grader_wrote_is_read_only_as_a_regular_file(tmp_path):
    from aaltohub.grading.runner import read_regular

    (tmp_path / "report").write_bytes(b"x" * 10)
    os.mkfifo(tmp_path / "fifo")  # would block an ordinary open
    (tmp_path / "link").symlink_to(tmp_path / "report")
    assert read_regular(str(tmp_path / "report"), 4) == b"xxxx"
    assert read_regular(str(tmp_path / "fifo"), 4) is None
    assert read_regular(str(tmp_path / "link"), 4) is None
    assert kube._read_output(str(tmp_path / "fifo")) is None
    assert kube._read_output(str(tmp_path / "link")) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="who grades is chosen only as root")
def test_the_grader_is_never_root(tmp_path, monkeypatch):
    from aaltohub.grading import trusted

    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "secret")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))

    course = tmp_path / "course"
    course.mkdir()
    with pytest.raises(ValueError, match="chgrp it to the course's group"):
        trusted.grader_ids(str(course), "local")
    os.chown(course, 0, 4321)
    assert trusted.grader_ids(str(course), "local") == (trusted.NOBODY, 4321)
    os.chown(course, 1234, 4321)
    assert trusted.grader_ids(str(course), "local") == (1234, 4321)
    assert trusted.grader_ids(str(course), "local", 77) == (77, 4321)
    with pytest.raises(ValueError, match="must not be 0"):
        trusted.grader_ids(str(course), "local", 0)
    env = trusted.environment("/h", "local")
    assert env["HOME"] == "/h" and not {"JUPYTERHUB_API_TOKEN", "PYTHONPATH"} & set(env)
    assert local.probe() == local.ROOT  # a sandbox started by root: refused


def test_the_kube_backend_needs_an_explicit_trust_in_the_course_config(
    tmp_path, capsys
):
    # the kube grader runs the instructors' nbgrader_config.py with the
    # caller's Kubernetes credentials: never without saying so
    from aaltohub.cli import main

    settings = tmp_path / "kube.json"
    settings.write_text("{}")
    args = ["grade", "c", "ps1", "--course-dir", str(tmp_path), "--backend", "kube"]
    status = main([*args, "--kube-settings", str(settings)])
    err = capsys.readouterr().err
    assert status == 2 and "--trust-course-config" in err
    assert "Kubernetes credentials" in err


def test_the_sandboxs_own_tmp_never_hides_a_python_below_tmp(monkeypatch):
    # a CI clone's venv lives in /tmp/...: the run's tmpfs /tmp must be
    # mounted before Python is bound, not on top of it
    from aaltohub.grading import local
    from aaltohub.local import sandbox

    monkeypatch.setattr(
        sandbox, "_python_dirs", lambda already, private: ["/tmp/ci/.tox/py"]
    )
    monkeypatch.setattr(sandbox.os.path, "isdir", lambda p: True)
    steps = local.spec_for("/tmp/in", GradingLimits(), 5000, [])["steps"]
    paths = [(s["kind"], s.get("path")) for s in steps]
    tmpfs = paths.index(("tmpfs", "/tmp"))
    python = paths.index(("bind", "/tmp/ci/.tox/py"))
    assert tmpfs < python
    assert ("dir", "/tmp") not in paths
