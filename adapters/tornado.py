"""The tornado adapter: the pump loop on tornado's IOLoop, over ``TCPServer`` + ``IOStream``.

Per connection, one coroutine reads and feeds the core; everything else is a step (``_pump``)
run after each read, each finished write, the connection's timer and each ``wake()``: hand the
core's events to the application, write what the core produced (one write in flight at a
time), re-arm the timer at the core's next deadline. Nothing here decides protocol (tornado's
own HTTP and WebSocket code is not used): this file moves bytes and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as _ssl
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamBufferFullError, StreamClosedError
from tornado.locks import Event as LoopEvent
from tornado.netutil import bind_sockets
from tornado.tcpserver import TCPServer

from diaproto.adapters._pump import Pump, now
from diaproto.adapters._runtime import LoopRuntime, tell_started
from diaproto.adapters._shutdown import close_all, grace, serve_until_signal
from diaproto.adapters._tcp import bound_unsent, drop_on_close
from diaproto.adapters._threaded import ThreadedServer, start_serving_thread, wait_on_loop
from diaproto.config import ConnectionConfig
from diaproto.runtime import Application, Cancellable
from diaproto.server import ServerConnection

T = TypeVar("T")

READ_SIZE = 65536
# Only one batch is ever in IOStream's buffer (the core's scheduler holds the rest). A batch
# can hold one message larger than ``batch_bytes``, but never more than the core's budget
# (``max_buffered``), so that plus room for frame headers is the bound; it stops a pump bug
# from buffering without limit, and never refuses a message the core accepted.
WRITE_BUFFER_HEADROOM = 64 * 1024


class _Timer:
    def __init__(self, loop: IOLoop, handle: object) -> None:
        self._loop, self._handle = loop, handle

    def cancel(self) -> None:
        self._loop.remove_timeout(self._handle)


class TornadoRuntime(LoopRuntime):
    """The :class:`diaproto.runtime.Runtime` of one running server."""

    def __init__(self, loop: IOLoop) -> None:
        super().__init__()
        self.loop = loop

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        return _Timer(self.loop, self.loop.call_later(delay, callback))

    def soon(self, callback: Callable[[], None]) -> None:
        self.loop.add_callback(callback)

    def _from_thread(self, function: Callable[[], T]) -> T:
        # add_callback silently drops the callback once the loop is closed: hence ``closed``.
        return wait_on_loop(self.loop.add_callback, self._ended, function)

    def _ended(self) -> bool:
        return self.closed


class TornadoSession:
    """One connection: the :class:`diaproto.runtime.Session`, its read loop, and the
    transport of its :class:`~diaproto.adapters._pump.Pump` (one write in flight at a time)."""

    def __init__(self, server: Server, stream: IOStream, peer: str) -> None:
        self.conn = ServerConnection(now(), server.config)
        self.runtime = server.runtime
        self.peer = peer
        self._stream = stream
        self._in_flight = 0  # a write in IOStream's buffer, not yet taken by the kernel
        self._readable = LoopEvent()  # set while the core wants input
        self._readable.set()
        self.done = LoopEvent()  # the stream is closed
        self.pump = Pump(server.app, self, self, self.runtime.soon, self.runtime.call_later)

    def wake(self) -> None:
        # Also during a pending write: nothing is written then, but events the core raised
        # since (a StreamPaused for a producer) get a step and do not wait for the peer.
        self.pump.wake()

    async def read_loop(self) -> None:
        conn = self.conn
        while not conn.finished:
            if not conn.wants_data:
                # The core holds enough unread input: leave the rest in the kernel (TCP
                # backpressure) until a step sees it drained. (IOStream's idle close check
                # may still buffer one read chunk of its own: bounded by READ_SIZE.)
                self._readable.clear()
                await self._readable.wait()
                continue
            try:
                data = await self._stream.read_bytes(READ_SIZE, partial=True)
            except StreamClosedError:
                conn.receive_eof(now())
                self.pump.step()
                return
            conn.receive_data(data, now())
            self.pump.step()

    # --- the pump's transport --------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.done.is_set()

    def held(self) -> int:
        return self._in_flight

    def write(self, data: bytes) -> None:
        if self._stream.closed():
            self.pump.lost()
            return
        try:
            written = self._stream.write(data)
        except (StreamClosedError, StreamBufferFullError):
            self.pump.lost()
            return
        if not written.done():  # IOStream writes synchronously what the kernel accepts
            self._in_flight = len(data)
            written.add_done_callback(self._written)

    def _written(self, written: asyncio.Future[None]) -> None:
        self._in_flight = 0
        if written.exception() is not None:
            self.pump.lost()
        self.pump.step()

    def set_reading(self, wanted: bool) -> None:
        if wanted:
            self._readable.set()

    def close(self) -> None:
        self._stream.close()
        self._readable.set()  # the reader sees ``finished`` (or a closed stream) and ends
        self.done.set()

    def abort(self) -> None:
        drop_on_close(self._stream.socket)
        self._stream.close()
        self.pump.lost()
        self.close()


class Server(TCPServer):
    """Accepts connections and runs the pump for each; ``stop()`` shuts down gracefully."""

    def __init__(
        self,
        app: Application,
        config: ConnectionConfig | None = None,
        *,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        # TLS: tornado wraps each accepted socket; the handshake runs before the first read.
        super().__init__(read_chunk_size=READ_SIZE, ssl_options=ssl)
        self.app = app
        self.config = config or ConnectionConfig()
        self.sessions: set[TornadoSession] = set()
        self.runtime = TornadoRuntime(IOLoop.current())
        self._stopping = LoopEvent()

    def stop(self) -> None:
        """Begin a graceful shutdown (loop thread); ``serve`` returns when it is done."""
        self._stopping.set()

    async def serve(
        self, host: str, port: int, ready: Callable[[str, int], None] | None = None
    ) -> None:
        sockets = bind_sockets(port, host)
        self.add_sockets(sockets)
        bound = sockets[0].getsockname()
        try:
            tell_started(self.app, self.runtime)
            if ready is not None:
                ready(str(bound[0]), int(bound[1]))
            await self._stopping.wait()
            await self._shut_down()
        finally:
            super().stop()
            self.runtime.close()
            await asyncio.to_thread(self.runtime.workers.join)  # off the loop

    async def _shut_down(self) -> None:
        super().stop()  # stop accepting: closes the listening sockets
        close_all(self.app, [session.pump for session in self.sessions])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_done(), grace(self.config))
        for session in list(self.sessions):
            if not session.done.is_set():
                session.pump.abort()  # a peer that neither read nor answered: drop it

    async def _all_done(self) -> None:
        for session in list(self.sessions):  # no new ones: accepting has stopped
            await session.done.wait()

    async def handle_stream(self, stream: IOStream, address: Any) -> None:
        stream.max_write_buffer_size = self.config.scheduler.max_buffered + WRITE_BUFFER_HEADROOM
        bound_unsent(stream.socket, self.config.send_buffer)
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        session = TornadoSession(self, stream, peer)
        self.sessions.add(session)
        try:
            session.pump.step()  # arms the handshake timer
            await session.read_loop()
            await session.done.wait()
        finally:
            self.sessions.discard(session)
            stream.close()


def run(
    app: Application,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    config: ConnectionConfig | None = None,
    ready: Callable[[str, int], None] | None = None,
    ssl: _ssl.SSLContext | None = None,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then close every connection with 1001.
    ``ssl``: serve HTTPS and WSS with this context."""
    serve_until_signal(lambda: Server(app, config, ssl=ssl), host, port, ready, asyncio.run)


def start_in_thread(
    app: Application,
    host: str = "127.0.0.1",
    port: int = 0,
    config: ConnectionConfig | None = None,
    *,
    ssl: _ssl.SSLContext | None = None,
) -> ThreadedServer[Server]:
    """Serve ``app`` on a new thread; returns once it listens (raises if it cannot start)."""
    return start_serving_thread(
        "diaproto-tornado", partial(Server, app, config, ssl=ssl), host, port, asyncio.run
    )
