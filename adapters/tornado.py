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
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from diaproto.adapters._tcp import bound_unsent, drop_on_close
from diaproto.adapters._threaded import (
    Listening,
    ThreadedServer,
    start_loop_thread,
    wait_on_loop,
)
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamBufferFullError, StreamClosedError
from tornado.locks import Event as LoopEvent
from tornado.netutil import bind_sockets
from tornado.tcpserver import TCPServer

from diaproto.config import ConnectionConfig
from diaproto.runtime import Application, Cancellable
from diaproto.server import ServerConnection

log = logging.getLogger("diaproto.adapters.tornado")
T = TypeVar("T")

READ_SIZE = 65536
# Only one batch is ever in IOStream's buffer (the core's scheduler holds the rest). A batch
# can hold one message larger than ``batch_bytes``, but never more than the core's budget
# (``max_buffered``), so that plus room for frame headers is the bound; it stops a pump bug
# from buffering without limit, and never refuses a message the core accepted.
WRITE_BUFFER_HEADROOM = 64 * 1024
CLOSE_CODE_SHUTDOWN = 1001


def now() -> float:
    return time.monotonic()


class _Timer:
    def __init__(self, loop: IOLoop, handle: object) -> None:
        self._loop, self._handle = loop, handle

    def cancel(self) -> None:
        self._loop.remove_timeout(self._handle)


class TornadoRuntime:
    """The :class:`diaproto.runtime.Runtime` of one running server."""

    def __init__(self, loop: IOLoop) -> None:
        self.loop = loop
        self.loop_thread = threading.get_ident()
        self.closed = False  # set on the loop thread when the server's loop is done

    def now(self) -> float:
        return now()

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        if threading.get_ident() == self.loop_thread:
            self.loop.add_callback(callback)
        else:
            # Blocks the worker until the loop ran it: a producer can never outrun the loop.
            run_on_loop(self, callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        return _Timer(self.loop, self.loop.call_later(delay, callback))

    def start_worker(self, target: Callable[[], None], name: str = "worker") -> None:
        def run() -> None:
            try:
                target()
            except Exception:
                log.exception("worker %s failed", name)

        # A daemon thread per worker: a model stuck in a call cannot hold the process open.
        threading.Thread(target=run, name=f"diaproto-{name}", daemon=True).start()


def run_on_loop(runtime: TornadoRuntime, function: Callable[[], T]) -> T:
    """Run ``function`` on the loop thread from another thread; its result or exception."""
    # add_callback silently drops the callback once the loop is closed: hence ``closed``.
    return wait_on_loop(runtime.loop.add_callback, lambda: runtime.closed, function)


class TornadoSession:
    """The :class:`diaproto.runtime.Session` of one connection, and its pump."""

    def __init__(self, server: Server, stream: IOStream, peer: str) -> None:
        self.conn = ServerConnection(now(), server.config)
        self.runtime = server.runtime
        self.peer = peer
        self._app = server.app
        self._stream = stream
        self._writing = False  # a write is in IOStream's buffer, not yet taken by the kernel
        self._pump_scheduled = False
        self._timer: object | None = None
        self._deadline: float | None = None
        self._readable = LoopEvent()  # set while the core wants input
        self._readable.set()
        self.done = LoopEvent()  # the stream is closed

    def wake(self) -> None:
        # Also during a pending write: the step then only dispatches, so events the core
        # raised since (a StreamPaused for a producer) do not wait for the peer to read.
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.runtime.loop.add_callback(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._pump_scheduled = False
        self.pump()

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
                self.pump()
                return
            conn.receive_data(data, now())
            self.pump()

    def pump(self) -> None:
        """One step: events to the application, output to the stream, the timer re-armed."""
        conn = self.conn
        if self._writing:
            self.dispatch()  # no more output until the kernel took the last write
            if conn.finished:
                self._finish_writing()
            else:  # the core's timers run on while the peer is slow: the write timeout too
                self._arm_timer(conn.next_deadline())
            return
        while True:
            data = conn.data_to_send(now())
            delivered = self.dispatch()  # taking a batch can resume paused producers
            if data:
                if not self._write(data):
                    return  # in flight: the write's completion runs the next step
            elif not delivered:
                break  # nothing written and no event that could have produced output
        if conn.finished:
            self.close()
            return
        self._arm_timer(conn.next_deadline())
        if conn.wants_data:
            self._readable.set()

    def dispatch(self) -> int:
        delivered = 0
        while (event := self.conn.next_event()) is not None:
            delivered += 1
            try:
                self._app.handle_event(self, event)
            except Exception:
                # The application's bug must not take the server down: this connection ends.
                log.exception("application failed on %s from %s", type(event).__name__, self.peer)
                self.conn.close(now(), 1011, "internal error")
        return delivered

    def _write(self, data: bytes) -> bool:
        """Hand ``data`` to the stream; True if the kernel took it all at once."""
        if self._stream.closed():
            self._lost()
            return True
        self.conn.set_transport_buffered(len(data), now())
        try:
            written = self._stream.write(data)
        except (StreamClosedError, StreamBufferFullError):
            self.conn.set_transport_buffered(0)
            self._lost()
            return True
        if written.done():  # IOStream writes synchronously what the kernel accepts
            self.conn.set_transport_buffered(0)
            return True
        self._writing = True
        written.add_done_callback(self._written)
        self._arm_timer(self.conn.next_deadline())  # timers run on while the write waits
        return False

    def _written(self, written: asyncio.Future[None]) -> None:
        self._writing = False
        self.conn.set_transport_buffered(0)
        if written.exception() is not None:
            self._lost()
        self.pump()

    def _lost(self) -> None:
        """The transport is gone: the core hears EOF (and reports ConnectionClosed)."""
        self.conn.receive_eof(now())
        self.dispatch()

    def _arm_timer(self, deadline: float | None) -> None:
        if deadline == self._deadline and (deadline is None or self._timer is not None):
            return
        if self._timer is not None:
            self.runtime.loop.remove_timeout(self._timer)
            self._timer = None
        self._deadline = deadline
        if deadline is not None:
            self._timer = self.runtime.loop.call_later(max(deadline - now(), 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._deadline = None
        self.conn.handle_timer(now())
        self.pump()

    def _finish_writing(self) -> None:
        """Finished with a write still in flight: it gets until the core's flush deadline
        (its completion closes the stream), then the stream is aborted."""
        deadline = self.conn.flush_deadline
        if deadline is not None and now() >= deadline:
            self.abort()
        else:
            self._arm_timer(deadline)

    def close(self) -> None:
        self._arm_timer(None)
        self._stream.close()
        self._readable.set()  # the reader sees ``finished`` (or a closed stream) and ends
        self.done.set()

    def abort(self) -> None:
        """Drop the transport without waiting for the peer (a peer that stopped reading, a
        flush past its deadline, the end of shutdown)."""
        drop_on_close(self._stream.socket)
        self._stream.close()
        self._lost()
        self.close()


class Server(TCPServer):
    """Accepts connections and runs the pump for each; ``stop()`` shuts down gracefully."""

    def __init__(self, app: Application, config: ConnectionConfig | None = None) -> None:
        super().__init__(read_chunk_size=READ_SIZE)
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
            if ready is not None:
                ready(str(bound[0]), int(bound[1]))
            await self._stopping.wait()
            await self._shut_down()
        finally:
            super().stop()
            self.runtime.closed = True

    async def _shut_down(self) -> None:
        super().stop()  # stop accepting: closes the listening sockets
        self.app.shutdown()
        for session in list(self.sessions):
            session.conn.close(now(), CLOSE_CODE_SHUTDOWN, "server shutting down")
            session.pump()
        close_timeout = self.config.timeouts.close_timeout or 5.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_done(), close_timeout + 1.0)
        for session in list(self.sessions):
            if not session.done.is_set():
                session.abort()  # a peer that neither read nor answered: drop it

    async def _all_done(self) -> None:
        for session in list(self.sessions):  # no new ones: accepting has stopped
            await session.done.wait()

    async def handle_stream(self, stream: IOStream, address: Any) -> None:
        stream.max_write_buffer_size = self.config.scheduler.max_buffered + WRITE_BUFFER_HEADROOM
        bound_unsent(stream.socket)
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        session = TornadoSession(self, stream, peer)
        self.sessions.add(session)
        try:
            session.pump()  # arms the handshake timer
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
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then close every connection with 1001."""

    async def main() -> None:
        server = Server(app, config)
        loop = asyncio.get_running_loop()  # tornado 6 runs on asyncio: its signal handling
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, _on_signal, server, signum)
        try:
            await server.serve(host, port, ready)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    asyncio.run(main())


def _on_signal(server: Server, signum: int) -> None:
    log.info("received %s: shutting down", signal.Signals(signum).name)
    server.stop()


def start_in_thread(
    app: Application,
    host: str = "127.0.0.1",
    port: int = 0,
    config: ConnectionConfig | None = None,
) -> ThreadedServer[Server]:
    """Serve ``app`` on a new thread; returns once it listens (raises if it cannot start)."""

    async def serve(listening: Listening[Server]) -> None:
        server = Server(app, config)  # on the running loop: its runtime binds to that loop

        def call(function: Callable[[], T]) -> T:
            if threading.get_ident() == server.runtime.loop_thread:
                return function()
            return run_on_loop(server.runtime, function)

        def ready(_host: str, bound: int) -> None:
            listening(server, bound, call)

        await server.serve(host, port, ready)

    def main(listening: Listening[Server]) -> None:
        asyncio.run(serve(listening))

    return start_loop_thread("diaproto-tornado", main)
