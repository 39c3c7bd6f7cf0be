"""The Kubernetes objects of one isolated run: a Job and its NetworkPolicy.

Pure, like kubespawner's ``objects.py``: plain dicts from plain values,
validated in the tests against the Kubernetes schema. The Job's pod

- gets no service account token and no service links (no API access);
- runs as a non-root uid of its own, without privilege escalation, with
  every capability dropped, a read-only root filesystem and the runtime's
  default seccomp profile;
- has the course's CPU and memory as limits, its process limit as
  ``prlimit --nproc`` (the pod API has no per-pod pid limit; the kubelet's
  ``podPidsLimit`` is the node's backstop), and its time limit as the
  Job's ``activeDeadlineSeconds``; no retries;
- mounts only this run's input (the submission's files and the notebook
  to execute, read-only) and its own output directory from the course
  storage, plus size-limited ``emptyDir`` scratch: never the gradebook,
  the source directory or another submission.

The NetworkPolicy selects exactly that pod and allows no ingress and no
egress (a cluster whose network plugin does not enforce policies must not
run grading Jobs: see docs/grading.md).
"""

from __future__ import annotations

import hashlib
import re

from .limits import SCRATCH_BYTES, GradingLimits

INPUT, OUTPUT, WORK, TMP = "/grading/in", "/grading/out", "/grading/work", "/tmp"  # noqa: S108
RUN_LABEL = "aaltohub.io/grading-run"
MANAGED = {
    "app.kubernetes.io/managed-by": "aaltohub",
    "app.kubernetes.io/component": "grading",
}
SCRATCH_SIZE = f"{SCRATCH_BYTES >> 20}Mi"
ENV = {
    "HOME": WORK,
    "NBGRADER_EXECUTION": "autograde",
    "JUPYTER_RUNTIME_DIR": f"{TMP}/runtime",
    "IPYTHONDIR": f"{TMP}/ipython",
    "MPLCONFIGDIR": f"{TMP}/matplotlib",
    "JUPYTER_PLATFORM_DIRS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def run_name(course: str, assignment: str, student: str, attempt: str) -> str:
    """A DNS-1123 name, unique per run, that names no student in clear
    (object names show in cluster-wide listings and events)."""
    digest = hashlib.sha256(f"{course}\0{assignment}\0{student}\0{attempt}".encode())
    slug = re.sub(r"[^a-z0-9-]", "-", course.lower())[:30].strip("-") or "course"
    return f"grade-{slug}-{digest.hexdigest()[:16]}"


def worker_command(limits: GradingLimits, python: str = "python3") -> list[str]:
    return [
        "prlimit",
        f"--nproc={limits.pids}",
        "--core=0",
        "--",
        python,
        "-m",
        "aaltohub.grading.worker",
        f"{INPUT}/notebook.ipynb",
        f"{OUTPUT}/notebook.ipynb",
        str(limits.cell_timeout),
        f"{INPUT}/files",
    ]


def _container(image, limits, input_path, output_path, uid) -> dict:
    memory = str(limits.memory)
    return {
        "name": "grade",
        "image": image,
        "command": worker_command(limits),
        "workingDir": WORK,
        "env": [{"name": k, "value": v} for k, v in ENV.items()],
        "resources": {
            "limits": {"cpu": str(limits.cpu), "memory": memory},
            "requests": {"cpu": str(limits.cpu), "memory": memory},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {
                "name": "storage",
                "mountPath": INPUT,
                "subPath": input_path,
                "readOnly": True,
            },
            {"name": "storage", "mountPath": OUTPUT, "subPath": output_path},
            {"name": "work", "mountPath": WORK},
            {"name": "tmp", "mountPath": TMP},
        ],
    }


def job(
    *,
    name: str,
    namespace: str,
    image: str,
    limits: GradingLimits,
    volume: dict,
    input_path: str,
    output_path: str,
    uid: int,
    labels: dict[str, str] | None = None,
) -> dict:
    """The Job; ``volume`` is the course storage's volume source (e.g.
    ``{"nfs": {...}}`` or ``{"persistentVolumeClaim": {...}}``) and the
    paths are this run's directories on it."""
    labels = {**MANAGED, **(labels or {}), RUN_LABEL: name}
    scratch = {"emptyDir": {"sizeLimit": SCRATCH_SIZE}}
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(image, limits, input_path, output_path, uid)],
        "volumes": [
            {"name": "storage", **volume},
            {"name": "work", **scratch},
            {"name": "tmp", **scratch},
        ],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": limits.timeout,
            "ttlSecondsAfterFinished": 600,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def network_policy(*, name: str, namespace: str) -> dict:
    """No ingress and no egress for the run's pod (selected by its label)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED)},
        "spec": {
            "podSelector": {"matchLabels": {RUN_LABEL: name}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [],
        },
    }
