"""Property-based tests: whatever a course editor writes, the catalog survives.

Random text and random YAML documents go through the catalog loader (as a
course file, a roster and the images file) and through build_course. The
only acceptable failure is an error that names the file; nothing may raise
out of the loader, and nothing may take long.
"""

from __future__ import annotations

import datetime
import math
import tempfile
import threading
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aaltohub.catalog import CourseCatalog
from aaltohub.course import (
    FIELDS,
    ROLES,
    CourseError,
    build_course,
)
from aaltohub.course_overrides import ALLOWED_OVERRIDE_KEYS, REFUSED_OVERRIDE_KEYS

FUZZ = settings(
    max_examples=200,
    deadline=5000,  # ms per example (generous: CI is shared); slow is a failure
    database=None,  # no example database written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Every key a course file knows at any level, so that generated documents
# get past "unknown key" and into each validator.
VOCABULARY = sorted(
    {*FIELDS, *ROLES, *ALLOWED_OVERRIDE_KEYS, *sorted(REFUSED_OVERRIDE_KEYS)[:5]}
    | {"cpu_limit", "mem_limit", "inactive_timeout", "max_age", "aliases", "series"}
    | {"key", "operator", "value", "effect", "tolerationSeconds", "NB_UID", "OMP"}
)

# Pieces of YAML syntax and course vocabulary, so random text reaches the
# parser's and the validators' interesting corners more often than noise.
TOKENS = [
    *VOCABULARY,
    ": ",
    "\n",
    "  ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "&a ",
    "*a",
    "<<: ",
    "? ",
    "!!str ",
    "!!python/object:os.system ",
    "!!binary ",
    "!!set ",
    "'",
    '"',
    "#",
    "---\n",
    "...\n",
    "|\n",
    "true",
    "null",
    "~",
    "0007",
    "0x1F",
    "1e400",
    ".inf",
    ".nan",
    "-1",
    "2024-13-45",
    "2024-01-01",
    "2024-01-01 10:00:00",
    "{username}",
    "{username.__class__}",
    "\t",
    "\x00",
    "\ufeff",
    "é",
]
SCALARS = [t for t in TOKENS if t.strip() and t not in "[]{}:,-?#|'\"&*<"]


def _flow(inner):
    seq = st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
    pairs = st.lists(st.tuples(st.sampled_from(VOCABULARY), inner), max_size=4)
    mapping = pairs.map(lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}")
    anchored = st.tuples(st.sampled_from(["&a ", "&b ", ""]), seq | mapping)
    return seq | mapping | anchored.map("".join) | st.sampled_from(["*a", "*b"])


# Mostly well-formed: "key: value" lines whose values are flow collections
# of the vocabulary, anchors and aliases, and tricky scalars.
flow_value = st.recursive(st.sampled_from(SCALARS), _flow, max_leaves=20)
block = st.lists(
    st.tuples(st.sampled_from(VOCABULARY), flow_value), min_size=1, max_size=8
).map(lambda kv: "".join(f"{k}: {v}\n" for k, v in kv))
yaml_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(TOKENS), max_size=60).map("".join),
    block,
)

# Values that broke validators before: non-finite and huge numbers, times
# where dates belong, YAML 1.1 octal.
TRICKY = [math.inf, -math.inf, math.nan, 10**40, -1, 0, "", "0007", True]
TRICKY += [datetime.datetime(2024, 1, 1, 10), datetime.date(2024, 1, 1)]
scalars = st.one_of(
    st.sampled_from(TRICKY),
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.dates(),
    st.datetimes(),
)
keys = st.one_of(
    st.sampled_from(VOCABULARY),
    st.text(max_size=10),
    st.integers(),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(keys, inner, max_size=6),
    ),
    max_leaves=30,
)

# The keys each mapping of a course file knows, so that generated documents
# have the right shape one level and the wrong value the next.
SUBKEYS = {
    "resources": list(ROLES),
    "student": ["cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee"],
    "instructor": ["cpu_limit", "mem_limit"],
    "cull": ["inactive_timeout", "max_age"],
    "kubespawner_override": [*sorted(ALLOWED_OVERRIDE_KEYS), "uid", "course_slug"],
    "environment": ["OMP_NUM_THREADS", "NB_UID", "X Y", "PYTHONPATH"],
    "node_selector": ["gpu", "hub.jupyter.org/node-purpose", "a/b/c"],
    "extra_labels": ["team", "component", "-bad"],
    "extra_annotations": ["example.org/x", "aaltohub/file.x"],
    "extra_resource_limits": ["nvidia.com/gpu"],
}


def value_for(key, depth: int = 0):
    """A value for ``key``: often of the shape the key expects, often not."""
    sub = SUBKEYS.get(key)
    options = [scalars, st.lists(scalars, max_size=3), documents]
    if key in ("image", "image_instructor"):
        options.append(st.tuples(st.text(max_size=8), scalars).map(list))
    if key == "tolerations":
        options.append(st.lists(value_for("toleration", depth + 1), max_size=3))
    if key == "toleration":
        sub = ["key", "operator", "value", "effect", "tolerationSeconds"]
    if sub and depth < 3:
        options.append(
            st.lists(st.sampled_from(sub), max_size=4).flatmap(
                lambda ks: st.fixed_dictionaries(
                    {k: value_for(k, depth + 1) for k in ks}
                )
            )
        )
    return st.one_of(options)


course_documents = st.lists(st.sampled_from(sorted(FIELDS)), max_size=5).flatmap(
    lambda ks: st.fixed_dictionaries({k: value_for(k) for k in ks})
)


def load_in_time(files: dict[str, str], seconds: float = 10) -> CourseCatalog:
    """Load a catalog of these files in a thread; fail if it takes too long."""
    outcome: dict = {}

    def run(path: str) -> None:
        try:
            outcome["catalog"] = CourseCatalog(path=path).load()
        except BaseException as e:  # reported below, in the test's thread
            outcome["error"] = e

    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            Path(tmp, name).write_text(text, encoding="utf-8", errors="surrogatepass")
        worker = threading.Thread(target=run, args=(tmp,), daemon=True)
        worker.start()
        worker.join(seconds)
        assert not worker.is_alive(), f"catalog load hung on {files!r}"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["catalog"]


def check_problems(catalog: CourseCatalog, files) -> None:
    for problem in catalog.problems():
        # the catalog's last line of defence must never be reached
        assert "internal error" not in problem, problem
        assert any(f" {name}:" in problem for name in files), problem
        assert len(problem) < 2000, problem[:200]


@FUZZ
@given(course=yaml_text, roster=st.none() | yaml_text)
@example("name: 2024-13-45\n", None)  # once a ValueError out of the loader
@example("cull: {inactive_timeout: .inf}\n", None)  # once an OverflowError
@example("name: " + "[" * 990 + "]" * 990, None)  # once a RecursionError
@example("name: x\n", "students: !!set {a, b}\n")
def test_random_text_never_breaks_the_loader(course, roster):
    files = {"fuzz.yaml": course}
    if roster is not None:
        files["fuzz-users.yaml"] = roster
    catalog = load_in_time(files)
    check_problems(catalog, files)
    assert set(catalog.courses) <= {"fuzz"}


@FUZZ
@given(images=yaml_text)
@example("series: [a]\n")  # once an AttributeError out of the loader
@example("? 0\n?\n")  # once a TypeError: unknown keys 0 and None do not sort
@example("series: {s: [[2024-01-01, a], [2024-01-01 10:00:00, b]]}\n")
def test_random_images_file_never_breaks_the_loader(images):
    files = {"IMAGES.yaml": images, "c.yaml": "image: [standard, 2024-01-01]\n"}
    catalog = load_in_time(files)
    check_problems(catalog, files)


@FUZZ
@given(data=course_documents)
def test_random_documents_through_the_loader(data):
    text = yaml.safe_dump(data, allow_unicode=True)
    files = {"fuzz.yaml": text}
    catalog = load_in_time(files)
    check_problems(catalog, files)


@FUZZ
@given(data=st.one_of(documents, course_documents), roster=st.none() | documents)
@example({"cull": {"max_age": math.inf}}, None)
@example({"name": [[[]]] * 3}, {"students": ["a"]})
def test_build_course_raises_only_course_errors_naming_the_file(data, roster):
    try:
        course = build_course("fuzz", data, roster)
    except CourseError as e:
        message = str(e)
        assert message.startswith(("course file fuzz.yaml: ", "roster file ")), message
        assert len(message) < 2000, message[:200]
        return
    # what loads is what the model promises
    assert isinstance(course.name, str)
    for spec in course.resources.values():
        for number in (spec.cpu_limit, spec.cpu_guarantee):
            assert number is None or math.isfinite(number)
    image = course.image
    assert image is None or isinstance(image, str) or type(image[1]) is datetime.date
