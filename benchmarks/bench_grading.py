"""Time per submission: ``aaltohub grade`` (isolated) against running
``nbgrader autograde`` directly, in the same run, on the same course.

    sudo .tox/py/bin/python benchmarks/bench_grading.py [--submissions N]

Needs root and bubblewrap (the local backend). Makes a real nbgrader
course (tests/grading_course.py), N correct submissions, then grades them
three ways, each from scratch:

- direct: one ``nbgrader autograde ps1`` for all (nbgrader's own loop);
- direct, one process per submission (``--student S``): the fair
  baseline, since ``aaltohub grade`` runs one nbgrader per submission;
- isolated: ``aaltohub grade`` with the local sandbox, one at a time.

Prints a Markdown table for docs/benchmarks.md (ratios to the direct
per-submission run of the same machine and moment).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from aaltohub.grading.limits import DEFAULT  # noqa: E402
from aaltohub.grading.runner import grade, trusted_env  # noqa: E402
from grading_course import GOOD, make_course, own, scores, submit  # noqa: E402


def _fresh(course: Path) -> None:
    shutil.rmtree(course / "autograded", ignore_errors=True)


def _nbgrader(course: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "nbgrader", "autograde", "ps1", *args, "--force"],
        cwd=course,
        env=trusted_env(),
        capture_output=True,
        check=True,
        timeout=600,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=4)
    args = parser.parse_args()
    n = args.submissions
    with tempfile.TemporaryDirectory() as tmp:
        course = make_course(Path(tmp) / "course")
        students = [f"student{i}" for i in range(n)]
        for student in students:
            submit(course, student, GOOD)
        times = {}

        _fresh(course)
        start = time.monotonic()
        _nbgrader(course)
        times["nbgrader autograde, one process"] = time.monotonic() - start

        _fresh(course)
        start = time.monotonic()
        for student in students:
            _nbgrader(course, f"--student={student}")
        times["nbgrader autograde, one process each"] = time.monotonic() - start

        _fresh(course)
        own(course)  # an instructor's, not root's: grading runs as its owner
        start = time.monotonic()
        results = grade(str(course), "ps1", limits=DEFAULT)
        times["aaltohub grade (local sandbox)"] = time.monotonic() - start
        assert all(r.status == "graded" for r in results), results
        assert set(scores(course).values()) == {2.0}

    base = times["nbgrader autograde, one process each"] / n
    print(f"| way ({n} submissions) | s per submission | ratio |")
    print("|---|---:|---:|")
    for way, seconds in times.items():
        print(f"| {way} | {seconds / n:.2f} | {seconds / n / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
