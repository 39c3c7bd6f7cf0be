"""JupyterHub configuration of the aaltohub demo; ``aaltohub demo`` runs it.

Thin on purpose: everything comes from the library. Settings are read from
the ``AALTOHUB_DEMO_*`` environment variables that ``aaltohub demo`` sets
(state directory, ports, proxy); see aaltohub/demo/settings.py.
"""

from aaltohub.demo.settings import configure

configure(c)  # noqa: F821 (c is provided by JupyterHub)
