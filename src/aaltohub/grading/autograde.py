"""``nbgrader autograde`` of one submission, with the execute step isolated.

``python -m aaltohub.grading.autograde ASSIGNMENT --student S [nbgrader
options] [--IsolatedExecute.memory=N ...]`` is nbgrader's own
``AutogradeApp`` (its config files, course directory, gradebook, output),
run by the runner as the grader (never root: :mod:`.trusted`), with one
change: the
``Execute`` preprocessor of ``Autograde.autograde_preprocessors`` is
replaced by :class:`~.isolated.IsolatedExecute`. If a course's nbgrader
config has no ``Execute`` there, it refuses: the notebook would either not
run or run unisolated.
"""

from __future__ import annotations

import json
import sys

ISOLATED = "aaltohub.grading.isolated.IsolatedExecute"


class NoExecuteStep(ValueError):
    pass


def _is_execute(item) -> bool:
    from nbgrader.preprocessors import Execute

    if isinstance(item, str):
        return item.rsplit(".", 1)[-1] == "Execute" or item == ISOLATED
    return isinstance(item, type) and issubclass(item, Execute)


def isolate(preprocessors: list) -> list:
    """``preprocessors`` with every Execute step replaced by IsolatedExecute."""
    swapped = [ISOLATED if _is_execute(p) else p for p in preprocessors]
    if ISOLATED not in swapped:
        raise NoExecuteStep(
            "the nbgrader config's Autograde.autograde_preprocessors has no"
            " Execute step to isolate; remove that setting from nbgrader_config.py"
        )
    return swapped


def main(argv: list[str]) -> int:
    from nbgrader.apps.autogradeapp import AutogradeApp
    from nbgrader.converters import Autograde

    app = AutogradeApp()
    app.initialize(argv)
    configured = app.config.Autograde.get("autograde_preprocessors")
    default = Autograde.class_traits()["autograde_preprocessors"].default()
    try:
        swapped = isolate(list(configured if configured is not None else default))
    except NoExecuteStep as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    app.config.Autograde.autograde_preprocessors = swapped
    app.update_config(app.config)
    try:
        app.start()
    except SystemExit as e:
        return int(e.code or 0)
    _report_score(app)
    return 0


def _report_score(app) -> None:
    """The submission's total from the gradebook, for the runner's line."""
    from nbgrader.api import Gradebook

    report = app.config.IsolatedExecute.get("report_path")
    if not report:
        return
    assignment, student = app.coursedir.assignment_id, app.coursedir.student_id
    with Gradebook(app.coursedir.db_url, app.coursedir.course_id) as gb:
        submission = gb.find_submission(assignment, student)
        score = {"score": submission.score, "max_score": submission.max_score}
    with open(report, "a", encoding="utf-8") as f:
        f.write(json.dumps({"status": "executed", **score}) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
