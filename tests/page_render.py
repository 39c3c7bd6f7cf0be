"""JupyterHub's page templates rendered outside a hub, with the loader
layout JupyterHub builds: its own templates under the ``templates/``
prefix, then ``c.JupyterHub.template_paths``, then its own by name."""

from __future__ import annotations

from types import SimpleNamespace

import jinja2

from aaltohub.web import announcements as web_announcements
from aaltohub.web import quota as quota_web
from aaltohub.web.pages import PAGES_DIR

#: The template paths ``configure(c)`` of the pages, the quota banner and
#: the announcements leave.
ALL_PATHS = [PAGES_DIR, quota_web.TEMPLATE_DIR, web_announcements.TEMPLATE_DIR]


def render(page, paths=None, user_name="student2", **ns):
    """Render ``page`` as JupyterHub does, with ``paths`` (default: every
    aaltohub template directory) as c.JupyterHub.template_paths; ``ns``
    adds to or overrides the variables JupyterHub's handlers pass."""
    from jupyterhub.app import JupyterHub

    base = JupyterHub()._template_paths_default()[0]
    if paths is None:
        paths = ALL_PATHS
    loader = jinja2.ChoiceLoader(
        [
            jinja2.PrefixLoader({"templates": jinja2.FileSystemLoader([base])}, "/"),
            jinja2.FileSystemLoader([*paths, base]),
        ]
    )
    env = jinja2.Environment(loader=loader, autoescape=True)
    who = SimpleNamespace(
        name=user_name,
        admin=False,
        all_spawners=lambda **kw: [],
        spawners={},
        spawner=SimpleNamespace(options_form=""),
    )
    defaults = dict(
        base_url="/hub/",
        prefix="/",
        user=who,
        static_url=lambda p, **kw: "/static/" + p,
        login_url="/hub/login",
        logout_url="/hub/logout",
        xsrf="x",
        services=[],
        parsed_scopes={},
        expanded_scopes=set(),
        default_server=SimpleNamespace(active=False),
        url="/hub/spawn",
        for_user=None,
        authenticator_login_url="/hub/login",
        login_term_url="",
        authenticator=SimpleNamespace(request_otp=False),
    )
    return env.get_template(page).render(**{**defaults, **ns})
