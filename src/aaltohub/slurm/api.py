"""The batch job's port callback, without batchspawner's open setter.

``batchspawner-singleuser`` (in the job) tells the hub which port the
server listens on: ``POST /hub/api/batchspawner {"port": N}`` with the
server's token. batchspawner's own handler sets *every* key of that body
as an attribute of the spawner (``hasattr`` then ``setattr``), so whoever
holds the token (the user, inside their server) could change the
spawner's ``batch_script``, ``exec_prefix`` or, behind CourseWrapSpawner,
its backends. This handler replaces it at the same route: it accepts only
``{"port": N}``, only while that server's job is waiting for it, and gives
it to the batch spawner itself (the child, behind a CourseWrapSpawner).
"""

from __future__ import annotations

import hmac
import json

from batchspawner import BatchSpawnerBase
from jupyterhub import apihandlers
from jupyterhub.apihandlers import APIHandler
from tornado import web

ROUTE = r"/api/batchspawner"


def _port(body) -> int:
    port = body.get("port") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or set(body) != {"port"}
        or not isinstance(port, int)
        or isinstance(port, bool)
        or not 0 < port < 65536
    ):
        raise web.HTTPError(400, 'expected {"port": <1-65535>} and nothing else')
    return port


class PortHandler(APIHandler):
    """``POST /hub/api/batchspawner``: the port of a starting batch job."""

    @web.authenticated
    def post(self):
        port = _port(self.get_json_body())
        token = self.get_auth_token() or ""
        user = self.current_user
        target = None
        for spawner in getattr(user, "spawners", {}).values():
            if spawner.api_token and hmac.compare_digest(spawner.api_token, token):
                target = getattr(spawner, "child_spawner", None) or spawner
        if not isinstance(target, BatchSpawnerBase):
            raise web.HTTPError(404, "no batch server of this token is starting")
        if target.port:
            raise web.HTTPError(409, "this server's port is already known")
        target.port = port
        self.set_status(201)
        self.finish(json.dumps({"message": "BatchSpawner data configured"}))


def register() -> None:
    """Put this handler at batchspawner's route (replacing its own, which
    ``import batchspawner`` adds). Must run before the hub builds its
    routes: importing :mod:`aaltohub.slurm` or :mod:`aaltohub.wrap` does."""
    routes = apihandlers.default_handlers
    routes[:] = [r for r in routes if r[0] != ROUTE] + [(ROUTE, PortHandler)]
