"""Sphinx configuration for the aaltohub documentation (MyST Markdown).

Build: ``tox -e docs`` (regenerates reference.md from the traits first, then
builds with warnings as errors into .tox/docs/html).
"""

import os
from pathlib import Path

from docutils import nodes
from sphinx.domains import Domain

project = "aaltohub"
author = "aaltohub developers"
copyright = "aaltohub developers, BSD-3-Clause"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Headings become link targets, so pages can link to "#a-section".
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

html_theme = "alabaster"
html_title = "aaltohub"
html_theme_options = {
    "description": "JupyterHub extensions for university course hubs",
    "fixed_sidebar": True,
}


# --- links from a page to repository files -----------------------------------
# Pages link to files beside the docs (``../deploy/kubernetes/values.yaml``).
# They exist in the repository, not in the site: a small domain resolves a
# link whose target exists in the repository, as a link to
# AALTOHUB_SOURCE_URL/<path> when that is set, else as plain text. A link to
# a path that does not exist still fails the build.

REPO = Path(__file__).resolve().parent.parent
SOURCE_URL = os.environ.get("AALTOHUB_SOURCE_URL", "").rstrip("/")


class RepositoryFiles(Domain):
    name = "repo"
    label = "repository files"

    def resolve_any_xref(self, env, fromdocname, builder, target, node, contnode):
        path = target.split("#", 1)[0]
        if not path or "://" in path:
            return []
        here = (Path(env.srcdir) / fromdocname).parent
        found = (here / path).resolve()
        if not found.is_relative_to(REPO) or not found.exists():
            return []
        rel = found.relative_to(REPO).as_posix()
        if SOURCE_URL:
            return [
                (
                    "repo:file",
                    nodes.reference("", "", contnode, refuri=f"{SOURCE_URL}/{rel}"),
                )
            ]
        return [("repo:file", nodes.literal(rel, rel))]

    def resolve_xref(self, env, fromdocname, builder, typ, target, node, contnode):
        return None

    def merge_domaindata(self, docnames, otherdata):
        pass


def setup(app):
    app.add_domain(RepositoryFiles)
    return {"parallel_read_safe": True}
