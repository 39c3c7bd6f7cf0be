"""A whole course hub on one machine: the aaltohub demo configuration.

Run it with ``aaltohub demo`` (or ``bash scripts/demo.sh`` on a fresh
machine), which prepares the state directory (users, courses, storage
laid out like the campus NFS, a password) and then starts::

    jupyterhub -f deploy/local/jupyterhub_config.py

with ``AALTOHUB_DEMO_STATE``, ``AALTOHUB_DEMO_PORT`` and friends set. This
file is the same as the packaged ``aaltohub/demo/jupyterhub_config.py``:
it only composes the library's classes (DemoAuthenticator,
StaticIdentity, LocalCourseSpawner, CourseCatalog); see
aaltohub/demo/settings.py for every setting.
"""

from aaltohub.demo.settings import configure

configure(c)  # noqa: F821 (c is provided by JupyterHub)
