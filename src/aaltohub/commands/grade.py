"""``aaltohub grade COURSE ASSIGNMENT``: isolated nbgrader autograding.

Parses arguments, reads the course's ``grading:`` limits from the catalog
(when one is given), and prints one line per submission; the work is
:mod:`aaltohub.grading.runner`'s. See docs/grading.md.
"""

from __future__ import annotations

import json
import os
import sys

from ..audit import cli_actor, cli_audit_log
from ..grading.limits import DEFAULT, GradingLimits
from ..grading.outcome import clean
from ..grading.runner import GRADED, SKIPPED, grade
from ..storage.progress import Progress
from .course_common import add_catalog_option, audit_options


def register(sub) -> None:
    p = sub.add_parser(
        "grade",
        parents=[audit_options()],
        help="autograde collected nbgrader submissions, each in isolation",
        description="Run nbgrader autograde for each collected submission of"
        " ASSIGNMENT, the notebook's execution isolated (no network, limits,"
        " only that submission visible). Already graded submissions are"
        " skipped unless --force. Results go to the course's gradebook and"
        " autograded directory as with nbgrader autograde.",
    )
    p.add_argument("course", metavar="COURSE", help="the course's slug")
    p.add_argument("assignment", metavar="ASSIGNMENT", help="the nbgrader assignment")
    p.add_argument(
        "--student",
        action="append",
        default=[],
        metavar="S",
        help="grade only this student (repeatable)",
    )
    p.add_argument(
        "--course-dir",
        default=os.environ.get("AALTOHUB_COURSE_DIR", "/course"),
        help="the nbgrader course directory (default: $AALTOHUB_COURSE_DIR,"
        " else /course as in an instructor's server)",
    )
    add_catalog_option(
        p,
        "course catalog for the course's grading: limits (default:"
        " $AALTOHUB_CATALOG; without one, the default limits)",
    )
    p.add_argument(
        "--backend",
        choices=("local", "kube"),
        default="local",
        help="where submissions run: local (bubblewrap sandbox; run as root, it"
        " grades as --grader-uid) or kube (one Kubernetes Job each; needs"
        " --kube-settings)",
    )
    p.add_argument(
        "--grader-uid",
        type=int,
        metavar="UID",
        help="local backend run as root: the uid nbgrader runs as, never 0"
        " (default: the course directory's owner, or nobody if that is root);"
        " its only group is the course directory's",
    )
    p.add_argument(
        "--kube-settings",
        metavar="FILE",
        default=os.environ.get("AALTOHUB_GRADING_KUBE"),
        help="JSON of the kube backend: namespace, image, volume, storage_dir,"
        " volume_path (default: $AALTOHUB_GRADING_KUBE)",
    )
    p.add_argument(
        "--trust-course-config",
        action="store_true",
        help="kube backend: accept that the course's nbgrader_config.py (which"
        " its instructors can write) runs with your Kubernetes credentials;"
        " see docs/grading.md before passing it",
    )
    p.add_argument("--force", action="store_true", help="regrade graded submissions")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="grade N submissions at a time (default 1)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _limits(args) -> GradingLimits:
    if not args.catalog:
        return DEFAULT
    from ..catalog import CourseCatalog

    if not os.path.isdir(args.catalog):
        raise ValueError(f"catalog {args.catalog} is not a directory")
    catalog = CourseCatalog(path=args.catalog).load()
    course = catalog.get(args.course)
    if course is None:
        raise ValueError(
            f"course {args.course!r} is not in the catalog {args.catalog}"
            " (or its file is invalid: run 'aaltohub validate')"
        )
    return course.grading


def _line(status) -> str:
    text = f"{status.student:<24} {status.status}"
    if status.score is not None:
        text += f" {status.score:g}/{status.max_score:g}"
    if status.reason:
        text += f": {status.reason}"
    if status.notes:
        text += f" [{'; '.join(clean(n) for n in status.notes)}]"
    return text


def _backend(args) -> tuple[str, str]:
    """The runner's backend argument, or why it cannot run here."""
    if args.backend == "kube":
        if not args.kube_settings or not os.path.isfile(args.kube_settings):
            return "", "--backend kube needs --kube-settings FILE"
        if not args.trust_course_config:
            # Security by default: the kube grader is the caller (it needs
            # the caller's credentials to create Jobs), and nbgrader runs
            # the instructors' nbgrader_config.py in it.
            return "", (
                "the kube backend runs the course's nbgrader_config.py, which"
                " its instructors can write, with your Kubernetes credentials."
                " Run it as a user whose credentials may only create Jobs and"
                " NetworkPolicies in the grading namespace, then pass"
                " --trust-course-config (docs/grading.md, 'Who runs what')"
            )
        return f"kube:{os.path.abspath(args.kube_settings)}", ""
    from ..grading import trusted

    try:
        ids = trusted.grader_ids(args.course_dir, "local", args.grader_uid)
    except (OSError, ValueError) as e:
        return "", str(e)
    if os.geteuid() != 0:
        return "", (
            "the local backend must run as root (it grades as --grader-uid):"
            " run it with sudo, or use --backend kube"
        )
    from ..local.sandbox import sandbox_problem

    if problem := sandbox_problem() or trusted.problem(args.course_dir, ids):
        return "", (
            f"the local backend cannot sandbox here: {problem}; install"
            " bubblewrap and allow unprivileged user namespaces, or use"
            " --backend kube"
        )
    return "local", ""


def run(args) -> int:
    try:
        limits = _limits(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    backend, problem = _backend(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    progress = Progress()
    audit = cli_audit_log(args.audit_log)

    def on_status(i, n, status):
        audit.record(
            "grade",
            actor=cli_actor(),
            target=status.student,
            course=args.course,
            outcome=status.status,
            reason=status.reason,
        )
        if args.json:  # stdout is the data: the progress line is on stderr
            progress.update(i, f"{args.assignment}: {i}/{n} submissions graded")
        else:  # one line per submission is the progress
            print(f"[{i}/{n}] {_line(status)}", flush=True)

    try:
        results = grade(
            os.path.abspath(args.course_dir),
            args.assignment,
            students=args.student,
            limits=limits,
            backend=backend,
            force=args.force,
            jobs=args.jobs,
            grader_uid=args.grader_uid,
            on_status=on_status,
        )
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        audit.flush()
        audit.close()
    progress.done()
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        counts = {}
        for r in results:
            counts[r.status] = counts.get(r.status, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        print(f"{len(results)} submission(s): {summary or 'none collected'}")
    return 1 if any(r.status not in (GRADED, SKIPPED) for r in results) else 0
