"""Keep numeric libraries from starting a thread per host core."""

from __future__ import annotations

import math

from traitlets import List, Unicode

from ..plan import SpawnContext, SpawnPlan
from .base import SpawnHook


class ThreadsHook(SpawnHook):
    """Set OMP/OPENBLAS/MKL/NUMEXPR/JULIA thread counts to the CPU limit.

    Without this, a 4-CPU pod on a 64-core node starts 64 BLAS threads and
    is throttled. Runs after ResourcesHook, whose CPU limit it reads.
    """

    variables = List(
        Unicode(),
        [
            "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "MKL_NUM_THREADS",
            "NUMEXPR_NUM_THREADS",
            "JULIA_NUM_THREADS",
        ],
        help="Environment variables that receive the thread count.",
    ).tag(config=True)

    def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        limit = plan.resources.cpu_limit
        if not limit:
            return  # no limit: let libraries decide
        count = str(max(1, math.floor(limit)))
        for var in self.variables:
            plan.env[var] = count
