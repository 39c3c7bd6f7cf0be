"""The mock single-user server farm of the burst benchmark.

One process answers for every user's server: any GET is 200 with the
headers a jupyterhub-singleuser server sends, so the hub's "is it up yet"
check and the proxy route work as for real servers, at no cost to the hub
process (as JupyterHub's own tests do with their mock servers, but one
process for all users instead of one per server).

Run: ``python burst_farm.py PORT``.
"""

from __future__ import annotations

import asyncio
import sys

import jupyterhub
from tornado import web


class Any(web.RequestHandler):
    def get(self, path=""):
        self.set_header("X-JupyterHub-Version", jupyterhub.__version__)
        self.write({"ok": True})

    head = get


async def main(port: int) -> None:
    app = web.Application([(r"/(.*)", Any)])
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
