"""Give each course its own nbgrader configuration file."""

from __future__ import annotations

import json
from importlib import resources

from traitlets import Int, Unicode

from .. import nbgrader_exchange
from ..plan import SpawnContext, SpawnPlan
from .base import SpawnHook

CONFIG_FILE = "jupyter/nbgrader_config.py"
#: username -> uid of who may submit, next to the shipped collect module,
#: which reads it (see nbgrader_exchange.KNOWN_UIDS_FILE).
KNOWN_UIDS_FILE = "jupyter/known_uids.json"
#: Above this many entries only the course's enrolled users are listed: the
#: file travels in a pod annotation, and those are limited to 256 KiB.
MAX_KNOWN_UIDS = 4000
#: The collect step's owner check, shipped next to the config so that it
#: works in images without aaltohub (the config puts its directory on
#: sys.path). Read once at import, never on the hub's event loop.
EXCHANGE_MODULE_FILE = f"jupyter/{nbgrader_exchange.SHIPPED_MODULE}.py"
EXCHANGE_MODULE_SOURCE = (
    resources.files("aaltohub").joinpath("nbgrader_exchange.py").read_text("utf-8")
)
# Makes the shipped module importable: the directory of nbgrader_config.py
# (traitlets gives config files their ``__file__``).
SHIPPED_PATH_LINES = [
    "import os, sys",
    "aaltohub_dir = os.path.dirname(os.path.abspath(__file__))",
    "if aaltohub_dir not in sys.path:",
    "    sys.path.append(aaltohub_dir)",
]


class NbgraderHook(SpawnHook):
    """Write ``nbgrader_config.py`` for the course and point Jupyter at it.

    Every value is written with ``repr()``, so it is a Python literal and
    never interpolated by a shell. The course's own ``nbgrader_config``
    lines are appended verbatim: they are instructor-controlled
    configuration that nbgrader (not the hub) evaluates inside the server.
    The file reaches the server through ``JUPYTER_CONFIG_PATH``.

    Instructors' servers also get :mod:`aaltohub.nbgrader_exchange` as
    ``aaltohub_nbgrader_exchange.py`` next to the config, which puts its own
    directory on ``sys.path`` (fixed lines, no data) and names that module's
    ``VerifiedExchangeCollect`` as nbgrader's collect step.
    """

    timezone = Unicode(
        "Europe/Helsinki", help="Exchange.timezone and NbGraderAPI.timezone."
    ).tag(config=True)
    assignment_dir = Unicode(
        "",
        help="""Where students fetch assignments to. Empty: the home's
        mount point, ``c.StoragePaths.home_target``.""",
    ).tag(config=True)

    execute_timeout = Int(240, help="Seconds a cell may run during autograding.").tag(
        config=True
    )
    instructor_log_file = Unicode(
        ".nbgrader.log",
        help="Instructor-mode log file, relative to the course directory.",
    ).tag(config=True)
    course_root = Unicode(
        "",
        help="""CourseDirectory.root: where instructors see course files.
        Empty: ``c.StoragePaths.files_target``.""",
    ).tag(config=True)
    exchange_root = Unicode(
        "",
        help="""Exchange.root inside the server. Empty:
        ``c.StoragePaths.exchange_target``.""",
    ).tag(config=True)

    def settings(self, ctx: SpawnContext) -> list[tuple[str, object]]:
        slug = ctx.course.slug
        paths = ctx.paths
        course_root = self.course_root or paths.files_target
        exchange_root = self.exchange_root or paths.exchange_target
        assignment_dir = self.assignment_dir or paths.home_target.rstrip("/") + "/"
        pairs = [
            ("CourseDirectory.root", course_root),
            ("CourseDirectory.groupshared", True),
            ("CourseDirectory.course_id", slug),
            (
                "CourseDirectory.ignore",
                [".ipynb_checkpoints", "*.pyc*", "__pycache__", "feedback", ".*"],
            ),
            ("Exchange.root", exchange_root),
            ("Exchange.path_includes_course", True),
            ("Exchange.assignment_dir", assignment_dir),
            ("Exchange.timezone", self.timezone),
            ("NbGraderAPI.timezone", self.timezone),
            ("AssignmentList.assignment_dir", assignment_dir),
            ("ExecutePreprocessor.timeout", self.execute_timeout),
            ("Execute.timeout", self.execute_timeout),
            ("Validator.validate_all", True),
        ]
        if ctx.as_instructor:
            log = course_root.rstrip("/") + "/" + self.instructor_log_file
            pairs += [
                ("NbGrader.logfile", log),
                # Students can name a submission after anyone; this collect
                # step takes only those owned by the student they name.
                ("ExchangeFactory.collect", nbgrader_exchange.COLLECT_CLASS),
                # nbgrader's own owner check maps owners to names through the
                # server's passwd, which has no students in a pod: it would
                # warn about every submission, and it only warns. The step
                # above replaces it. (nbgrader's hint names
                # CollectApp.check_owner, but ExchangeCollect reads it.)
                ("ExchangeCollect.check_owner", False),
            ]
        return pairs

    def render(self, ctx: SpawnContext) -> str:
        lines = [
            f"# nbgrader configuration for course {ctx.course.slug!r},"
            " written by aaltohub",
            "c = get_config()  # noqa",
        ]
        if ctx.as_instructor:
            lines += SHIPPED_PATH_LINES
        lines += [f"c.{key} = {value!r}" for key, value in self.settings(ctx)]
        if ctx.course.nbgrader_config.strip():
            lines += ["", "# From the course file:", ctx.course.nbgrader_config]
        return "\n".join(lines).rstrip("\n") + "\n"

    def known_uids(self, ctx: SpawnContext) -> dict[str, int]:
        """Who may submit, with the uid the hub knows for them, so that the
        collect check is exact for them (a planted submission in their name
        is refused, theirs is taken). From the identity provider's cache:
        everyone who logged in recently; the rest fall back to the check's
        consistency rule."""
        provider = ctx.providers.get("identity")
        if provider is None:
            return {}
        course = ctx.course
        known = provider.known()

        def enrolled(i) -> bool:
            return (
                i.username in course.students
                or i.username in course.instructors
                or not course.student_groups.isdisjoint(i.groups)
            )

        may_submit = [i for i in known if enrolled(i) or not course.private]
        if len(may_submit) > MAX_KNOWN_UIDS:
            may_submit = [i for i in may_submit if enrolled(i)][:MAX_KNOWN_UIDS]
        return {i.username: i.uid for i in may_submit}

    def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        if ctx.course is None or not ctx.course.has_instructor_mode:
            return
        plan.files[CONFIG_FILE] = self.render(ctx)
        if ctx.as_instructor:
            plan.files[EXCHANGE_MODULE_FILE] = EXCHANGE_MODULE_SOURCE
            uids = self.known_uids(ctx)
            if uids:
                plan.files[KNOWN_UIDS_FILE] = json.dumps(uids, sort_keys=True)
        config_dir = f"{ctx.files_root}/jupyter"
        existing = plan.env.get("JUPYTER_CONFIG_PATH")
        plan.env["JUPYTER_CONFIG_PATH"] = (
            f"{config_dir}:{existing}" if existing else config_dir
        )
