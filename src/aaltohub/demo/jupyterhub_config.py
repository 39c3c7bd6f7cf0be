"""JupyterHub configuration of the aaltohub demo; ``aaltohub demo`` runs it.

Thin on purpose: everything comes from the library. Settings are read from
the ``AALTOHUB_DEMO_*`` environment variables that ``aaltohub demo`` sets
(state directory, ports, proxy); see aaltohub/demo/settings.py.
"""

from aaltohub.demo.settings import configure

configure(c)  # noqa: F821 (c is provided by JupyterHub)

# The instructor's course page, /hub/courses/<slug>, and "Your courses" on the
# home page; after configure(c), so its home.html (which keeps the quota
# banner) comes first.
from aaltohub.web import course_page  # noqa: E402

course_page.configure(c)  # noqa: F821
