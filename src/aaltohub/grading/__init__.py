"""Isolated autograding: ``aaltohub grade`` (issue 15).

nbgrader's ``autograde`` runs on the trusted side, as the instructor, with
the real gradebook; only its *execute* step (the kernel running student
code) runs isolated, one submission at a time, in a backend: the local
bubblewrap sandbox or a Kubernetes Job. See docs/grading.md.

- :mod:`.limits`   the course file's ``grading:`` section (core, pure)
- :mod:`.jobs`     the Kubernetes Job and NetworkPolicy (pure manifests)
- :mod:`.worker`   runs inside the sandbox or the Job: executes a notebook
- :mod:`.isolated` the nbgrader preprocessor that replaces ``Execute``
- :mod:`.local`, :mod:`.kube`  the backends
- :mod:`.autograde` the trusted ``nbgrader autograde`` of one submission
- :mod:`.runner`   submissions, resume, status, progress

Nothing is imported here: the course model imports :mod:`.limits`
without pulling in nbgrader or Kubernetes clients.
"""
