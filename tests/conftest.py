"""Shared fixtures: a sample course catalog, static users, and spawners.

KubeSpawner builds pod manifests offline when a dummy kubeconfig is set
before it is imported and ``_mock=True`` is passed; no cluster is needed
(none can run here). Everything else in these fixtures is real.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kube_helpers import use_dummy_kubeconfig

use_dummy_kubeconfig()

COURSES = {
    "intro.yaml": """\
        name: Introduction to Programming
        gid: 70001
        instructors: [instructor1]
        datadir: true
        image: DEFAULT
        nbgrader_config: |
          c.Exchange.max_file_size = 2000
        """,
    "intro-users.yaml": """\
        students: [student1]
        """,
    "ml-private.yaml": """\
        name: Machine Learning (private)
        private: true
        gid: 70002
        students: [student1]
        instructors: [instructor1]
        image: [standard, 2024-03-01]
        resources:
          student: {cpu_limit: 2, mem_limit: 2G}
          instructor: {cpu_limit: 4, mem_limit: 8G, mem_guarantee: 2G}
        cull: {inactive_timeout: 1800, max_age: 14400}
        """,
    "exam.yaml": """\
        name: Exam course
        gid: 70003
        restrict_submit: true
        students: [student1]
        student_groups: [exam-takers]
        coursedir_slug: exam2026
        student_umask: '0077'
        extra_student_groups: [[exam-students, 71003]]
        """,
    "old.yaml": """\
        name: An archived course
        archive: true
        gid: 70004
        instructors: [instructor1]
        """,
    "nogid.yaml": """\
        name: A course without storage
        image: plain/image:1
        """,
    "IMAGES.yaml": """\
        aliases:
          DEFAULT: example/notebook:5.0
        series:
          standard:
            - [2023-08-01, example/notebook:6.0]
            - [2024-01-08, example/notebook:7.0]
            - [2024-08-01, example/notebook:8.0]
        """,
}

USERS = """\
users:
  student1: {uid: 1001234, gid: 70000, name: Stu Dent, email: s1@example.org}
  student2: {uid: 1001235, gid: 70000, name: Other Student, email: s2@example.org}
  instructor1: {uid: 1002001, gid: 70000, name: "Ina {Structor}", email: i1@example.org}
  admin1: {uid: 1003001, gid: 70000, name: Ad Min, email: a1@example.org}
  groupie: {uid: 1004001, gid: 70000, groups: [jupyter-exam]}
  examtaker: {uid: 1004002, gid: 70000, groups: [exam-takers]}
  sysuser: {uid: 5, gid: 5}
"""


def write_catalog(path: Path, files: dict[str, str] = COURSES) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def catalog_dir(tmp_path) -> Path:
    return write_catalog(tmp_path / "courses")


@pytest.fixture
def users_file(tmp_path) -> Path:
    path = tmp_path / "users.yaml"
    path.write_text(USERS)
    return path
