"""The hub's pages as aaltohub extends them, shared by every web part.

JupyterHub looks a template up by name along ``c.JupyterHub.template_paths``
and the first match wins, so two parts that each override ``home.html``
cannot both show. The only aaltohub overrides of the hub's own pages are
therefore here (``templates/pages``: home.html, spawn.html). They include
each part's fragment (``aaltohub-quota-banner.html``,
``aaltohub-your-courses.html``) when that part's directory is on the path,
that is when its ``configure(c)`` was called. The parts then compose in any
order: quota banner, "Your courses" and announcements together or alone.
"""

from __future__ import annotations

from pathlib import Path

#: The overrides of the hub's home and spawn pages.
PAGES_DIR = str(Path(__file__).parent / "templates" / "pages")


def add_template_dir(c, part_dir: str, *, before_deployers: bool = True) -> None:
    """Put a part's template directory on the hub's template path, keeping
    what is there; adding twice changes nothing. A part shown on the home
    or spawn page (``before_deployers``) also brings the shared pages, in
    front: aaltohub's home.html and spawn.html then take the place of a
    site's own, as any part's did before.

    ``before_deployers=False`` appends the part's directory and leaves the
    pages alone, for a part whose template (announcements' ``page.html``)
    a site's own should win over."""
    hub = c.JupyterHub
    paths = list(hub.template_paths) if "template_paths" in hub else []
    if part_dir not in paths:
        paths = [part_dir, *paths] if before_deployers else [*paths, part_dir]
    if before_deployers and PAGES_DIR not in paths:
        paths.insert(0, PAGES_DIR)
    hub.template_paths = paths


def add_template_var(c, name: str, value) -> None:
    """Add one entry to ``c.JupyterHub.template_vars``, keeping the others."""
    hub = c.JupyterHub
    template_vars = dict(hub.template_vars) if "template_vars" in hub else {}
    template_vars[name] = value
    hub.template_vars = template_vars
