"""jupyterhub-idle-culler config: apply each course's own cull limits."""

from aaltohub.ops.culling import course_cull_arbiter

c = get_config()  # noqa: F821 (provided by the culler)
c.IdleCuller.cull_arbiter_hook = course_cull_arbiter
