"""Default git author name and email from the directory."""

from __future__ import annotations

from traitlets import Unicode

from ..plan import SpawnContext, SpawnPlan
from .base import SpawnHook

CONFIG_FILE = "gitconfig"


def _git_quote(value: str) -> str:
    """Quote a value for git-config syntax (no newlines survive)."""
    value = " ".join(value.split())
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class GitIdentityHook(SpawnHook):
    """Set user.name and user.email at git's *system* level.

    The file is given to git through ``GIT_CONFIG_SYSTEM``, which ranks
    below the user's own ``~/.gitconfig``, so the user can still override
    both. The image's ``/etc/gitconfig`` is included, not replaced.
    """

    image_system_config = Unicode(
        "/etc/gitconfig",
        help="The image's system gitconfig, included so its settings survive.",
    ).tag(config=True)

    def apply(self, ctx: SpawnContext, plan: SpawnPlan):
        ident = ctx.identity
        if not (ident.name or ident.email):
            return
        lines = []
        if self.image_system_config:
            lines += ["[include]", f"\tpath = {_git_quote(self.image_system_config)}"]
        lines.append("[user]")
        if ident.name:
            lines.append(f"\tname = {_git_quote(ident.name)}")
        if ident.email:
            lines.append(f"\temail = {_git_quote(ident.email)}")
        plan.files[CONFIG_FILE] = "\n".join(lines) + "\n"
        plan.env["GIT_CONFIG_SYSTEM"] = f"{ctx.files_root}/{CONFIG_FILE}"
