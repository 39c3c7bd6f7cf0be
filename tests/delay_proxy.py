"""A TCP proxy on loopback that makes a fast server slow, or down.

Put it in front of slapd to emulate a directory on a bad day:

- ``delay``: every chunk the client sends reaches the server ``delay``
  seconds after it was sent (answers come back at once), so each LDAP
  request/response round trip takes ``delay`` longer. Chunks are delayed
  independently (latency, not bandwidth): requests sent together arrive
  together.
- ``mode = "refuse"``: the listening socket is closed and every open
  connection reset, like a stopped server; connecting fails at once.
- ``mode = "blackhole"``: connections are accepted and data is dropped in
  both directions, like a hung server or a firewall dropping packets.

The TCP handshake itself is not delayed (the kernel answers it), so a new
connection is cheaper here than over a real slow network. It runs its own
event loop in a daemon thread, so tests, benchmarks and blocking code can
all use it::

    proxy = DelayProxy("127.0.0.1", slapd.port, delay=2.0).start()
    ... proxy.url ...
    proxy.mode = "blackhole"
    proxy.stop()

Or standalone: ``python tests/delay_proxy.py TARGET_PORT --delay 2``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time


class DelayProxy:
    def __init__(self, host: str, port: int, delay: float = 0.0) -> None:
        self.target = (host, port)
        self.delay = delay
        self.port = 0
        self.chunks = 0  # client chunks forwarded, i.e. requests seen
        self.connections = 0  # connections accepted while up
        self._mode = "up"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="delay-proxy", daemon=True
        )
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    # --- control, from any thread ---------------------------------------------
    def _call(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> DelayProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in ("up", "refuse", "blackhole"):
            raise ValueError(f"mode must be up, refuse or blackhole, not {value!r}")
        self._call(self._set_mode(value))

    def drop_connections(self) -> None:
        """Reset every open connection (a server restart, an idle cut-off)."""
        self._call(self._reset_all())

    # --- on the proxy's loop ---------------------------------------------------
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set_mode(self, value: str) -> None:
        old, self._mode = self._mode, value
        if value == "refuse" and self._server is not None:
            self._server.close()
            self._server = None
            await self._reset_all()
        elif old == "refuse" and value != "refuse":
            await self._listen()

    async def _reset_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset_all()
        # Let every connection's tasks end here, not be destroyed pending
        # when the loop stops (clients may still hold kept connections).
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, client_r, client_w) -> None:
        if self._mode == "refuse":
            client_w.transport.abort()
            return
        self.connections += 1
        self._writers.add(client_w)
        try:
            if self._mode == "blackhole":
                await client_r.read()  # swallow until the client gives up
                return
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            self._writers.discard(client_w)
            return
        self._writers.add(server_w)
        tasks = [
            asyncio.create_task(self._upstream(client_r, server_w)),
            asyncio.create_task(self._pump(server_r, client_w)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (client_w, server_w):
            self._writers.discard(writer)
            writer.transport.abort()

    async def _upstream(self, reader, writer) -> None:
        """Client to server, each chunk ``delay`` after it was read."""
        queue: asyncio.Queue = asyncio.Queue()

        async def send():
            while True:
                chunk, due = await queue.get()
                if chunk is None:
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if self._mode != "up":
                    continue  # blackholed: dropped on the floor
                self.chunks += 1
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while chunk := await reader.read(65536):
                queue.put_nowait((chunk, time.monotonic() + self.delay))
            queue.put_nowait((None, 0.0))
            await sender
        finally:
            sender.cancel()

    async def _pump(self, reader, writer) -> None:
        while chunk := await reader.read(65536):
            if self._mode != "up":
                continue
            writer.write(chunk)
            await writer.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target_port", type=int)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    proxy = DelayProxy("127.0.0.1", args.target_port, args.delay).start()
    print(f"proxy on {proxy.url} -> 127.0.0.1:{args.target_port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    proxy.stop()


if __name__ == "__main__":
    main()
