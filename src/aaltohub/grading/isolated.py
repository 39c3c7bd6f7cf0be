"""``IsolatedExecute``: nbgrader's ``Execute`` step, run isolated.

:mod:`.autograde` puts this preprocessor where ``nbgrader autograde``
has ``Execute``. Everything else nbgrader does (overwriting the grade
cells from the gradebook, saving grades, late penalties, the autograded
directory) stays nbgrader's own code on the trusted side. This step sends
the sanitized notebook and the submission's files to a backend, and takes
back only the *outputs* of the code cells: sources and metadata (points,
grade ids) stay as nbgrader's sanitize step left them, so a run cannot
change what is graded or how much it is worth.

The run's status and reason go to ``report_path`` (JSON), for the runner.
"""

from __future__ import annotations

import json
import os

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Float, Int, Unicode

from .limits import GradingLimits
from .outcome import EXECUTED, LIMIT_ERRORS, RunResult


class IsolationError(Exception):
    """The isolated run did not give back an executed notebook."""


def merge_outputs(sent, executed) -> None:
    """Copy outputs and execution counts of ``executed`` into ``sent``
    (in place); refuse a notebook whose cells do not line up."""
    if len(executed.cells) != len(sent.cells):
        raise IsolationError("the run returned a notebook with other cells")
    for mine, theirs in zip(sent.cells, executed.cells, strict=True):
        if mine.cell_type != theirs.get("cell_type"):
            raise IsolationError("the run returned a notebook with other cells")
        if mine.cell_type == "code":
            mine.outputs = theirs.get("outputs", [])
            mine.execution_count = theirs.get("execution_count")
    nbformat.validate(sent)


def limit_notes(nb) -> list[str]:
    """Errors in the outputs that mean a limit or the isolation stopped
    something, e.g. ``MemoryError (memory limit)``."""
    seen = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = output.get("ename") if output.get("output_type") == "error" else None
            if name in LIMIT_ERRORS and name not in seen:
                seen.append(name)
    return [f"{name} ({LIMIT_ERRORS[name]})" for name in seen]


class IsolatedExecute(NbGraderPreprocessor):
    """Execute the notebook in an isolated run (a backend) instead of here."""

    backend = Unicode(
        "local",
        help="Where submissions run: 'local' (a bubblewrap sandbox the grader"
        " starts unprivileged, in a user namespace) or 'kube' (one Kubernetes"
        " Job per submission). The runner sets it from `aaltohub grade"
        " --backend`, overriding nbgrader_config.py.",
    ).tag(config=True)
    cpu = Float(
        GradingLimits.cpu,
        help="CPU cores of one run (a Job's CPU limit; locally, CPU seconds ="
        " cpu * timeout), 0.1 to 4. The runner sets it from the course file's"
        " `grading:` section, overriding nbgrader_config.py.",
    ).tag(config=True)
    memory = Int(
        GradingLimits.memory,
        help="Memory of one run in bytes (a Job's memory limit; locally each"
        " process's address space), 64 MiB to 8 GiB. The runner sets it from"
        " the course file's `grading:` section, overriding nbgrader_config.py.",
    ).tag(config=True)
    pids = Int(
        GradingLimits.pids,
        help="Processes and threads of one run (a Job's pids limit; locally"
        " RLIMIT_NPROC, shared by the runs graded at the same time), 16 to"
        " 1024. The runner sets it from the course file's `grading:` section,"
        " overriding nbgrader_config.py.",
    ).tag(config=True)
    timeout = Int(
        GradingLimits.timeout,
        help="Wall-clock seconds one notebook's run may take, then it is"
        " killed and the submission timed out; 5 to 3600. The runner sets it"
        " from the course file's `grading:` section, overriding"
        " nbgrader_config.py.",
    ).tag(config=True)
    cell_timeout = Int(
        GradingLimits.cell_timeout,
        help="Seconds one cell may run (nbgrader's Execute.timeout inside the"
        " run), 1 to 3600. The runner sets it from the course file's"
        " `grading:` section, overriding nbgrader_config.py.",
    ).tag(config=True)
    kube_settings = Unicode(
        "",
        help="For the 'kube' backend: path of a JSON file of KubeSettings"
        " (namespace, image, volume, storage_dir, volume_path), the"
        " deployer's. The runner sets it from `aaltohub grade --kube-settings`,"
        " overriding nbgrader_config.py.",
    ).tag(config=True)
    report_path = Unicode(
        "",
        help="File the runs' status, reason and notes are appended to (JSON"
        " lines), for the runner; empty: none. The runner sets it to a file"
        " in the grader's private home, overriding nbgrader_config.py.",
    ).tag(config=True)

    def limits(self) -> GradingLimits:
        return GradingLimits(
            cpu=self.cpu,
            memory=self.memory,
            pids=self.pids,
            timeout=self.timeout,
            cell_timeout=self.cell_timeout,
        )

    def _run(self, text: str, files_dir: str) -> RunResult:
        if self.backend == "local":
            from . import local

            return local.execute(text, files_dir, self.limits(), private=[os.getcwd()])
        if self.backend == "kube":
            from . import kube

            with open(self.kube_settings, encoding="utf-8") as f:
                settings = kube.KubeSettings(**json.load(f))
            return kube.execute(text, files_dir, self.limits(), settings)
        raise IsolationError(f"unknown grading backend {self.backend!r}")

    def _report(self, result: RunResult, notebook: str, notes=()) -> None:
        if not self.report_path:
            return
        record = {"notebook": notebook, **result.to_dict(), "notes": list(notes)}
        with open(self.report_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def preprocess(self, nb, resources):
        name = resources.get("nbgrader", {}).get("notebook", "")
        files_dir = resources["metadata"]["path"]
        result = self._run(nbformat.writes(nb), files_dir)
        if result.status != EXECUTED:
            self._report(result, name)
            raise IsolationError(f"{result.status}: {result.reason}")
        try:
            executed = nbformat.reads(result.notebook, as_version=nbformat.NO_CONVERT)
            merge_outputs(nb, executed)
        except (
            IsolationError,
            nbformat.ValidationError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
        ) as e:
            failed = RunResult("failed", reason=f"unusable notebook returned: {e}")
            self._report(failed, name)
            raise IsolationError(failed.reason) from e
        self._report(result, name, limit_notes(nb))
        return nb, resources
