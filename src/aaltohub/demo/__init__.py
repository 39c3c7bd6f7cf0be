"""The local demo: a whole course hub on one machine (``aaltohub demo``).

Package data: ``catalog/`` (the demo courses) and ``users.yaml`` (the demo
users), copied into the state directory at first start so they can be
edited there. ``settings`` turns the state directory into JupyterHub
configuration, ``state`` lays it out, and ``runner`` supervises the
processes. ``views`` and ``sandbox`` are LocalCourseSpawner's backend: the
per-server view of the storage, and a server run in a private mount
namespace.
"""
