"""Warn users whose home is nearly full, without ever blocking the spawn."""

from __future__ import annotations

import asyncio

from traitlets import Float, Unicode

from ..plan import SpawnContext, SpawnPlan
from ..shared import shared_instance
from ..storage.quota import QuotaSource, Usage, warning_message
from ..storage.quota_policy import QuotaPolicy
from .base import SpawnHook


class QuotaHook(SpawnHook):
    """At or above the warning threshold, tell the user, three ways:

    * ``AALTOHUB_QUOTA_USED`` / ``_LIMIT`` (bytes) / ``_PERCENT`` and
      ``AALTOHUB_QUOTA_NOTICE`` (the notice file's path) in the environment;
    * a notice file ``quota-warning.txt`` in the server's files directory;
    * a line in the plan's notices, for the spawn page.

    The notebook image shows the first two in every terminal
    (/etc/profile.d) and in JupyterLab (``aaltohub.web.lab``).

    The source, threshold and help text are ``c.QuotaPolicy``'s, shared
    with the hub's pages. Instructors also hear about the course
    directory's quota. A failing or slow quota source is logged and
    ignored: an over-quota user must still be able to start a server to
    clean up.
    """

    timeout = Float(
        5.0,
        help="""Seconds to wait for the quota source; after that the spawn
        goes on without a warning.""",
    ).tag(config=True)

    notice_file = Unicode(
        "quota-warning.txt",
        help="Name of the notice file inside the server's files directory.",
    ).tag(config=True)

    @property
    def policy(self) -> QuotaPolicy:
        return shared_instance(QuotaPolicy, self.config)

    def source(self, ctx: SpawnContext) -> QuotaSource:
        """An injected ``ctx.providers["quota"]``, else the policy's source."""
        provided = ctx.providers.get("quota")
        return provided if provided is not None else self.policy.source

    async def _ask(self, what: str, ctx: SpawnContext, call) -> Usage | None:
        try:
            return await asyncio.wait_for(call, self.timeout)
        except Exception as e:  # never let quota trouble stop a spawn
            self.log.warning(
                "spawn user=%s action=quota-%s outcome=unavailable error=%r",
                ctx.username,
                what,
                e,
            )
            return None

    async def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        source, policy = self.source(ctx), self.policy
        lines = []
        home = await self._ask("home", ctx, source.usage(ctx.identity))
        if policy.warns(home):
            plan.env["AALTOHUB_QUOTA_USED"] = str(home.used)
            plan.env["AALTOHUB_QUOTA_LIMIT"] = str(home.limit)
            plan.env["AALTOHUB_QUOTA_PERCENT"] = f"{home.percent:.0f}"
            lines.append(warning_message(home))
        if ctx.as_instructor:
            course = await self._ask(
                "course", ctx, source.course_usage(ctx.course, ctx.course_group)
            )
            if policy.warns(course):
                lines.append(
                    warning_message(
                        course, f"The course directory of {ctx.course.name}"
                    )
                )
        if not lines:
            return
        self.log.info(
            "spawn user=%s action=quota-warning outcome=warned %s",
            ctx.username,
            " | ".join(lines),
        )
        plan.notices.extend(lines)
        plan.notices.append(policy.free_space_help)
        plan.files[self.notice_file] = (
            "\n\n".join([*lines, policy.free_space_help]) + "\n"
        )
        plan.env["AALTOHUB_QUOTA_NOTICE"] = f"{ctx.files_root}/{self.notice_file}"
