"""The remaining per-server environment: time zone, course, UI, labels."""

from __future__ import annotations

from traitlets import Dict, Unicode

from ..plan import SpawnContext, SpawnPlan
from .base import SpawnHook


class EnvironmentHook(SpawnHook):
    """TZ, the course label, the default URL, and deployment-wide env."""

    timezone = Unicode("Europe/Helsinki", help="TZ for every server.").tag(config=True)
    lab_url = Unicode(
        "lab/tree/notebooks/", help="default_url when the course uses JupyterLab."
    ).tag(config=True)
    classic_url = Unicode(
        "tree/notebooks/",
        help="default_url for courses with ``jupyterlab: false``.",
    ).tag(config=True)
    extra_env = Dict(
        {},
        help="""Environment variables for every server, e.g.
        ``{"AALTO_JUPYTERHUB": "1"}``. Values are literal text.""",
    ).tag(config=True)

    def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        plan.env.update({str(k): str(v) for k, v in self.extra_env.items()})
        plan.env["TZ"] = self.timezone
        course = ctx.course
        plan.labels["aaltohub/course"] = course.slug if course else "generic"
        lab = course.jupyterlab if course else True
        plan.default_url = self.lab_url if lab else self.classic_url
        if ctx.as_instructor:
            plan.env["AALTO_NB_ENABLE_FORMGRADER"] = "1"
        else:
            plan.env["AALTO_NB_DISABLE_FORMGRADER"] = "1"
