"""Execute one notebook, inside the isolated run (sandbox or Job).

``python -m aaltohub.grading.worker IN OUT CELL_TIMEOUT [FILES]`` copies
the submission's files from FILES into the current directory (a scratch
directory), runs nbgrader's own ``Execute`` preprocessor (the one
``nbgrader autograde`` runs) on the notebook IN there, and writes the
executed notebook to OUT (``-``: the original stdout). The kernel is a
child of this process, so it shares every limit of the run, and its own
stdout is /dev/null. Nothing here is trusted afterwards: the grader takes
only the outputs back (:mod:`.isolated`).
"""

from __future__ import annotations

import os
import shutil
import sys

#: Exit status when the notebook could not be executed (the reason is on stderr).
FAILED = 3


def _copy_in(source: str) -> None:
    """The submission's files into the working directory (contents only:
    the directory itself belongs to the sandbox)."""
    for dirpath, _, filenames in os.walk(source):
        rel = os.path.relpath(dirpath, source)
        os.makedirs(rel, exist_ok=True)
        for name in filenames:
            shutil.copyfile(os.path.join(dirpath, name), os.path.join(rel, name))


def _result_stream(target: str):
    """Where the executed notebook goes. For ``-``, a private copy of
    stdout (not inherited), and fd 1 becomes /dev/null for the kernel."""
    if target != "-":
        return open(target, "w", encoding="utf-8")
    saved = os.dup(1)  # close-on-exec: the kernel does not get it
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    return os.fdopen(saved, "w", encoding="utf-8")


def main(argv: list[str]) -> int:
    import nbformat
    from nbgrader.preprocessors import Execute

    source, target, cell_timeout = argv[0], argv[1], int(argv[2])
    if len(argv) > 3 and os.path.isdir(argv[3]):
        _copy_in(argv[3])
    out = _result_stream(target)
    nb = nbformat.read(source, as_version=nbformat.NO_CONVERT)
    execute = Execute(timeout=cell_timeout)
    resources = {"metadata": {"path": os.getcwd()}}
    try:
        nb, _ = execute.preprocess(nb, resources)
    except Exception as e:  # the kernel died or did not start
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return FAILED
    with out:
        nbformat.write(nb, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
