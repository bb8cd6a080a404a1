"""A TCP proxy that breaks a client's first connection mid-stream, like a broken network.

Shared by the resume tests of the JavaScript client (tests/interop/test_js_resume.py under
Node, tests/interop/test_browser_resume.py in Chromium). The proxy runs its own event loop
on a thread of its own, so it works whatever runtime serves behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator

LIMIT = 60.0  # seconds to start or stop the proxy (the machine may be loaded)


class CuttingProxy:
    """127.0.0.1 TCP proxy to ``port``; its first connection is cut (both sides aborted)
    once ``cut_after`` bytes came from the server. Later connections pass everything.

    ``hold``, when given, is called (on a worker thread) before a later connection is
    passed on to the server: the client's reconnection waits until it returns. ``requests``
    holds the first line each connection's client sent (``GET /ws HTTP/1.1`` for a
    WebSocket), in the order they arrived."""

    def __init__(
        self, port: int, cut_after: int, *, hold: Callable[[], None] | None = None
    ) -> None:
        self.target, self.cut_after, self.hold = port, cut_after, hold
        self.connections = 0
        self.requests: list[bytes] = []
        self.cut = threading.Event()
        self._transports: list[asyncio.WriteTransport] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="proxy", daemon=True)
        self.thread.start()
        start = asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.server = asyncio.run_coroutine_threadsafe(start, self.loop).result(LIMIT)
        self.port: int = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = self.connections == 0
        self.connections += 1
        index = len(self.requests)
        self.requests.append(b"")
        if not first and self.hold is not None:
            await self.loop.run_in_executor(None, self.hold)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        ends = [writer.transport, up_writer.transport]
        self._transports += ends
        limit = self.cut_after if first else None
        tasks = [
            asyncio.ensure_future(self._pipe(reader, up_writer, None, ends, index)),
            asyncio.ensure_future(self._pipe(up_reader, writer, limit, ends, None)),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        limit: int | None,
        ends: list[asyncio.WriteTransport],
        request: int | None,
    ) -> None:
        passed = 0
        try:
            while data := await source.read(65536):
                if request is not None and b"\n" not in self.requests[request]:
                    self.requests[request] += data[:1024]
                if limit is not None and passed + len(data) >= limit:
                    sink.write(data[: limit - passed])
                    with contextlib.suppress(ConnectionError):
                        await sink.drain()
                    self.cut.set()
                    break
                passed += len(data)
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        for end in ends:  # one side gone (or the cut): drop the other abruptly as well
            end.abort()

    def request_lines(self) -> list[str]:
        """The first line of what each connection's client sent."""
        return [raw.split(b"\r\n", 1)[0].decode("latin-1") for raw in self.requests]

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for transport in self._transports:
                transport.abort()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(LIMIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(LIMIT)
        self.loop.close()


@contextlib.contextmanager
def cutting_proxy(
    port: int, cut_after: int, *, hold: Callable[[], None] | None = None
) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(port, cut_after, hold=hold)
    try:
        yield proxy
    finally:
        proxy.close()
