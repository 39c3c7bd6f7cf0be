"""Aalto's hook files, run at spawn (opt-in compatibility, off by default).

Aalto's hub exec'd ``hooks-all.py``, ``hooks-user/<user>.py`` and
``hooks-course/<slug>.py`` from its data volume (``/srv/jupyterhub``)
inside the spawn hook. This hook runs the same files, in that order.

**Trust.** These files are administrator-owned Python that runs inside the
hub process with the hub's privileges: the same trust as the hub's own
configuration. Enable the hook only if the directory is writable by the
hub's administrators alone. It refuses a file that is group- or
world-writable, owned by anyone but root or the hub's user, or that
resolves under the course catalog directory (course editors write there).

**What a hook file sees.** ``spawner``: an :class:`AaltoHookSpawner`, not
the real spawner; ``environ`` (its ``environment``), ``username``,
``uid``, ``course_slug`` ("" for a general server), ``as_instructor``,
``is_admin``, ``course`` (the validated Course or None) and ``log``.
Changes to ``environment``, ``image``, ``default_url``, the cpu/mem limits
and guarantees, ``extra_labels``, ``supplemental_gids`` and
``create_groups`` go into the plan; anything else a file sets (e.g.
``node_selector``, ``volume_mounts``) is named in a warning and not
applied: the plan has no place for it (course files set those).

**Never blocking.** Files are read and run in a thread with a time limit
(``timeout``); a file that fails or overruns fails the spawn with its name,
as on Aalto's hub. A file still running after the limit only changes its
own copy, which is thrown away.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from dataclasses import replace
from types import SimpleNamespace

from traitlets import Float, Unicode

from ..plan import SpawnContext, SpawnPlan
from .base import SpawnHook

_RESOURCES = ("cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee")
_MAPPED = {
    "environment", "image", "default_url", "extra_labels",
    "supplemental_gids", "create_groups", *_RESOURCES,
}  # fmt: skip


class HookFileError(RuntimeError):
    """A hook file was refused, failed or overran; names the file."""


class AaltoHookSpawner(SimpleNamespace):
    """The ``spawner`` a hook file sees: the plan's values as KubeSpawner
    attributes, plus ones the plan cannot carry (reported, not applied)."""


def _hook_spawner(ctx: SpawnContext, plan: SpawnPlan, log) -> AaltoHookSpawner:
    res = plan.resources
    return AaltoHookSpawner(
        environment=dict(plan.env),
        image=plan.image or ctx.image,
        default_url=plan.default_url,
        extra_labels=dict(plan.labels),
        supplemental_gids=list(plan.supplemental_gids),
        create_groups=list(plan.create_groups),
        node_selector={},
        tolerations=[],
        volume_mounts=[],
        volumes=[],
        user=SimpleNamespace(name=ctx.username, admin=ctx.viewer.admin),
        log=log,
        **{k: getattr(res, k) for k in _RESOURCES},
    )


def _check_file(path: str, forbidden_root: str) -> None:
    real = os.path.realpath(path)
    if forbidden_root and (
        real == forbidden_root or real.startswith(forbidden_root.rstrip("/") + "/")
    ):
        raise HookFileError(
            f"{path}: refused: it is under the course catalog directory, which"
            " course editors write; hook files must be administrator-owned"
        )
    st = os.stat(real)
    if st.st_uid not in (0, os.getuid()) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise HookFileError(
            f"{path}: refused: a hook file runs with the hub's privileges, so it"
            " must be owned by root or the hub's user and writable by the owner"
            " only (chmod go-w)"
        )


class AaltoHookFilesHook(SpawnHook):
    """Run Aalto's hooks-all.py, hooks-user/<user>.py, hooks-course/<slug>.py."""

    directory = Unicode(
        "",
        help="""Directory with Aalto's hook files (Aalto: /srv/jupyterhub).
        Empty: the hook does nothing. The files run with the hub's
        privileges (the trust of the hub's configuration): it must be
        writable by administrators only, and never the course catalog.""",
    ).tag(config=True)

    catalog_path = Unicode(
        "",
        help="""The course catalog directory (c.CourseCatalog.path); no hook
        file is read from under it.""",
    ).tag(config=True)

    timeout = Float(
        10.0,
        help="Seconds the hook files of one spawn may run before the spawn fails.",
    ).tag(config=True)

    def files(self, ctx: SpawnContext) -> list[str]:
        names = ["hooks-all.py"]
        if (
            ctx.username
            and "/" not in ctx.username
            and not ctx.username.startswith(".")
        ):
            names.append(f"hooks-user/{ctx.username}.py")
        if ctx.course is not None:
            names.append(f"hooks-course/{ctx.course.slug}.py")
        paths = (os.path.join(self.directory, n) for n in names)
        return [p for p in paths if os.path.isfile(p)]

    def _run(self, ctx: SpawnContext, spawner: AaltoHookSpawner) -> list[str]:
        """Blocking: check, read and run each file; returns those run."""
        forbidden = os.path.realpath(self.catalog_path) if self.catalog_path else ""
        ran = []
        for path in self.files(ctx):
            _check_file(path, forbidden)
            with open(path, encoding="utf-8") as f:
                code = compile(f.read(), path, "exec")
            namespace = {
                "spawner": spawner,
                "environ": spawner.environment,
                "username": ctx.username,
                "uid": ctx.identity.uid,
                "course_slug": ctx.course.slug if ctx.course else "",
                "course": ctx.course,
                "as_instructor": ctx.as_instructor,
                "is_admin": ctx.viewer.admin,
                "log": spawner.log,
            }
            try:
                # Administrator-owned code, the trust of the hub config (above).
                exec(code, namespace)  # noqa: S102
            except Exception as e:
                raise HookFileError(f"{path} failed: {type(e).__name__}: {e}") from e
            ran.append(path)
        return ran

    async def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        if not self.directory:
            return
        log = self.log or logging.getLogger(__name__)
        spawner = _hook_spawner(ctx, plan, log)
        try:
            ran = await asyncio.wait_for(
                asyncio.to_thread(self._run, ctx, spawner), self.timeout
            )
        except TimeoutError:
            raise HookFileError(
                f"Aalto hook files in {self.directory} ran longer than"
                f" {self.timeout} s; c.AaltoHookFilesHook.timeout"
            ) from None
        self._merge(spawner, plan, ran, log)

    def _merge(self, spawner, plan: SpawnPlan, ran: list[str], log) -> None:
        plan.env.update({str(k): str(v) for k, v in spawner.environment.items()})
        plan.labels.update({str(k): str(v) for k, v in spawner.extra_labels.items()})
        if spawner.image:
            plan.image = spawner.image
        if spawner.default_url:
            plan.default_url = spawner.default_url
        plan.resources = replace(
            plan.resources, **{k: getattr(spawner, k) for k in _RESOURCES}
        )
        for name, gid in spawner.create_groups:
            plan.add_group(gid, name)
        for gid in spawner.supplemental_gids:
            plan.add_group(gid)
        ignored = [
            k
            for k in ("node_selector", "tolerations", "volume_mounts", "volumes")
            if getattr(spawner, k)
        ]
        ignored += [
            k
            for k in vars(spawner)
            if k not in _MAPPED
            and k
            not in {
                "node_selector",
                "tolerations",
                "volume_mounts",
                "volumes",
                "user",
                "log",
            }
        ]
        if ignored:
            log.warning(
                "aalto hook files %s set %s, which aaltohub's plan cannot carry;"
                " not applied (set them in the course file's kubespawner_override)",
                ", ".join(ran),
                ", ".join(sorted(ignored)),
            )
