"""Enrolment through a directory group decides who may submit, for real.

The demo course ``exam`` is public and has ``restrict_submit: true``; its
students are the directory group ``exam-takers`` (``student_groups``), and
no roster names them. student3 is in that group and nowhere else, so only
:func:`aaltohub.access.enrolment` makes them a student: the spawn mounts the
nbgrader exchange writable, a real ``nbgrader submit`` reaches the inbound,
and instructor1 collects and autogrades it. student2 is not enrolled (on no
roster, not in the group) but may start the public course: they can fetch
the released assignment, yet their exchange is mounted read-only, so
``nbgrader submit`` fails and leaves nothing in the inbound.

Commands run in each user's own server, as in test_nbgrader_roundtrip.
"""

from __future__ import annotations

import pytest

from .demo_process import ENFORCED, NOT_ENFORCED
from .test_nbgrader_roundtrip import NBGRADER, result

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not ENFORCED, reason=NOT_ENFORCED),
]

# Prepended to every snippet: nbgrader() from the round trip, and the
# course's exchange as the servers see it.
PRELUDE = NBGRADER + 'EXCHANGE = "/srv/nbgrader/exchange/exam"\n'

# Released by instructor1 in /course (course/exam/files on storage).
RELEASE = """
import nbformat
from nbformat.v4 import new_code_cell, new_notebook
nb = new_notebook(cells=[
    new_code_cell("answer = 42"),
    new_code_cell("assert answer == 42", metadata={"nbgrader": {
        "schema_version": 3, "task": False, "solution": False, "grade": True,
        "locked": True, "points": 1, "grade_id": "check"}}),
])
os.makedirs("/course/source/exam1", exist_ok=True)
nbformat.write(nb, "/course/source/exam1/exam1.ipynb")
nbgrader("generate_assignment", "exam1", cwd="/course")
nbgrader("release_assignment", "exam1", cwd="/course")
print("RESULT", json.dumps(sorted(os.listdir(f"{EXCHANGE}/outbound"))))
"""

# Fetch, then try to submit; the exit code and output are the result.
FETCH_AND_TRY_SUBMIT = """
nbgrader("fetch_assignment", "exam1", cwd="/notebooks")
fetched = os.path.exists("/notebooks/exam/exam1/exam1.ipynb")
st = os.statvfs(EXCHANGE)
p = subprocess.run(["nbgrader", "submit", "exam1"], cwd="/notebooks",
                   capture_output=True, text=True, stdin=subprocess.DEVNULL,
                   timeout=150)
print(p.stdout[-2000:], p.stderr[-4000:])
print("RESULT", json.dumps({
    "fetched": fetched,
    "exchange_read_only": bool(st.f_flag & os.ST_RDONLY),
    "submit_exit": p.returncode,
    "submit_output": p.stdout + p.stderr,
}))
"""

COLLECT = """
inbound = sorted(os.listdir(f"{EXCHANGE}/inbound"))
nbgrader("collect", "exam1", cwd="/course")
nbgrader("autograde", "exam1", cwd="/course")
from nbgrader.api import Gradebook
with Gradebook("sqlite:////course/gradebook.db", course_id="exam") as gb:
    students = sorted(s.id for s in gb.students)
    sub = gb.find_submission("exam1", "student3")
    score = [sub.score, sub.max_score]
print("RESULT", json.dumps({
    "inbound": inbound,
    "submitted": sorted(os.listdir("/course/submitted")),
    "collected": os.path.exists("/course/submitted/student3/exam1/exam1.ipynb"),
    "students": students,
    "score": score,
}))
"""


@pytest.fixture(scope="module")
def exam(hub):
    """Release, submit (twice: enrolled and not) and collect, once."""
    hub.ensure_server("instructor1", "exam-instructor")
    hub.ensure_server("student3", "exam")
    hub.ensure_server("student2", "exam")
    out = {"released": result(hub.run("instructor1", PRELUDE + RELEASE))}
    out["student3"] = result(hub.run("student3", PRELUDE + FETCH_AND_TRY_SUBMIT))
    out["student2"] = result(hub.run("student2", PRELUDE + FETCH_AND_TRY_SUBMIT))
    out["collected"] = result(hub.run("instructor1", PRELUDE + COLLECT))
    return out


def test_instructor_releases_the_assignment(exam):
    assert exam["released"] == ["exam1"]


def test_group_member_gets_a_writable_exchange_and_submits(exam):
    s3 = exam["student3"]
    assert s3["fetched"]
    assert not s3["exchange_read_only"]
    assert s3["submit_exit"] == 0, s3["submit_output"]


def test_instructor_collects_and_grades_the_group_members_submission(exam):
    got = exam["collected"]
    assert [s.split("+")[0] for s in got["inbound"]] == ["student3"]
    assert got["submitted"] == ["student3"]
    assert got["collected"]
    assert got["students"] == ["student3"]
    assert got["score"] == [1.0, 1.0]


def test_non_enrolled_user_can_fetch_but_not_submit(exam):
    s2 = exam["student2"]
    assert s2["fetched"]  # a public course: the assignment is readable
    assert s2["exchange_read_only"]
    assert s2["submit_exit"] != 0, s2["submit_output"]
    # inbound itself is 2773 (anyone may write): only the mount refuses.
    assert "don't have write permissions" in s2["submit_output"]
    assert not any(s.startswith("student2+") for s in exam["collected"]["inbound"])
    assert "student2" not in exam["collected"]["submitted"]
