"""The asyncio adapter: the pump loop in one ``asyncio.Protocol`` per connection (optionally
on uvloop).

No task, no ``Event`` per connection: the loop calls the protocol when bytes arrive, when the
transport fills or drains, and when the connection's one ``TimerHandle`` fires; each of these
runs a step (``pump``): hand the core's events to the application, write what the core
produced with ``transport.write``, re-arm the timer at the core's next deadline. Nothing here
decides protocol: timeouts, heartbeats, batching and backpressure are the core's; this file
moves bytes and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from diaproto.adapters._tcp import bound_unsent, drop_on_close
from diaproto.adapters._threaded import (
    Listening,
    ThreadedServer,
    start_loop_thread,
    wait_on_loop,
)

from diaproto.config import ConnectionConfig
from diaproto.runtime import Application, Cancellable
from diaproto.server import ServerConnection

log = logging.getLogger("diaproto.adapters.asyncio")
T = TypeVar("T")

WORKER_THREADS = 256
BACKLOG = 65535  # as anyio's listener; the kernel caps it at net.core.somaxconn
CLOSE_CODE_SHUTDOWN = 1001
PAUSED_POLL = 0.05  # seconds between timer checks while a due deadline waits on the peer


def now() -> float:
    return time.monotonic()


class AsyncioRuntime:
    """The :class:`diaproto.runtime.Runtime` of one running server."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.loop_thread = threading.get_ident()
        self.closed = False  # set on the loop thread when the server's loop is done
        # Daemon threads: a model call that never returns must not hold the process at exit.
        self._worker_slots = threading.BoundedSemaphore(WORKER_THREADS)

    def now(self) -> float:
        return now()

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        if threading.get_ident() == self.loop_thread:
            self.loop.call_soon(callback)
        else:
            # Blocks the worker until the loop ran it: a producer can never outrun the loop.
            self.run_on_loop(callback)

    def run_on_loop(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the loop thread from another thread; its result or exception."""
        return wait_on_loop(self._post, self._ended, function)

    def _post(self, callback: Callable[[], None]) -> None:
        self.loop.call_soon_threadsafe(callback)

    def _ended(self) -> bool:
        return self.closed or self.loop.is_closed()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        return self.loop.call_later(delay, callback)

    def start_worker(self, target: Callable[[], None], name: str = "worker") -> None:
        if self.closed:
            return

        def run() -> None:
            with self._worker_slots:  # at most WORKER_THREADS run at once; the rest wait
                if self.closed:
                    return
                try:
                    target()
                except Exception:
                    log.exception("worker %s failed", name)

        threading.Thread(target=run, name=f"diaproto-{name}", daemon=True).start()

    def shutdown(self) -> None:
        """The loop is done: workers still blocked on it see RuntimeError; no new ones start."""
        self.closed = True


class AsyncioSession(asyncio.Protocol):
    """One connection: the :class:`diaproto.runtime.Session` and its pump."""

    __slots__ = (
        "_deadline",
        "_pumping",
        "_read_paused",
        "_server",
        "_timer",
        "_transport",
        "_wake_scheduled",
        "_write_paused",
        "conn",
        "runtime",
    )

    def __init__(self, server: Server) -> None:
        self.conn = ServerConnection(now(), server.config)
        self.runtime = server.runtime
        self._server = server
        self._transport: asyncio.Transport | None = None  # None once the connection is lost
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._write_paused = False  # the transport holds bytes: the core keeps the rest
        self._read_paused = False
        self._wake_scheduled = False
        self._pumping = False

    @property
    def peer(self) -> str:
        transport = self._transport
        address = transport.get_extra_info("peername") if transport is not None else None
        return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)

    def wake(self) -> None:
        # Inside a step the step's own loop writes what was produced; otherwise one step soon,
        # however many wakes come before it runs.
        if not self._pumping and not self._wake_scheduled:
            self._wake_scheduled = True
            self.runtime.loop.call_soon(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._wake_scheduled = False
        self.pump()

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        # pause_writing as soon as the transport holds a byte, resume_writing once it holds
        # none: the kernel has all it will take, so at most one batch waits outside the core
        # (whose scheduler keeps priorities) and the core learns at once when it drained.
        transport.set_write_buffer_limits(high=0, low=0)
        bound_unsent(transport.get_extra_info("socket"))
        self._server.sessions.add(self)
        self.pump()  # arms the handshake timer

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data, now())
        self.pump()

    def eof_received(self) -> bool:
        self.conn.receive_eof(now())
        self.pump()
        return True  # keep the write side: the core decides when to close

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._cancel_timer()
        self.conn.receive_eof(now())  # the core reports ConnectionClosed; no more timers
        self.dispatch()
        self._server.session_done(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self.conn.set_transport_buffered(0)
        self.pump()

    # --- the pump --------------------------------------------------------------------------

    def pump(self) -> None:
        """One step: events to the application, output to the transport, the timer re-armed."""
        conn = self.conn
        transport = self._transport
        if transport is None or transport.is_closing():
            self.dispatch()  # a callback after the end still gets its events handed out
            return
        self._pumping = True
        try:
            self.dispatch()
            # While the transport holds bytes nothing more leaves the core (resume_writing
            # runs the next step), but events are still handed out: a producer sees
            # StreamPaused without waiting for the peer to read.
            while not self._write_paused:
                data = conn.data_to_send(now())
                delivered = self.dispatch()  # taking a batch can resume paused producers
                if data:
                    transport.write(data)
                    if self._write_paused:  # the write window and budget count what it holds
                        conn.set_transport_buffered(transport.get_write_buffer_size(), now())
                elif not delivered:
                    break  # nothing written and no event that could have produced output
        finally:
            self._pumping = False
        if conn.finished:
            self._cancel_timer()
            if data := conn.data_to_send(now()):  # the last words, even past a full transport
                transport.write(data)
            transport.close()  # after what the transport still holds ...
            if transport.get_write_buffer_size():
                self._arm_flush_deadline(conn.flush_deadline)  # ... for a bounded time
            return
        self._arm_timer(conn.next_deadline())
        if conn.wants_data:
            if self._read_paused:
                self._read_paused = False
                transport.resume_reading()
        elif not self._read_paused:
            # The core holds enough unread input: leave the rest in the kernel (TCP
            # backpressure) until a step sees it drained.
            self._read_paused = True
            transport.pause_reading()

    def dispatch(self) -> int:
        conn = self.conn
        delivered = 0
        while (event := conn.next_event()) is not None:
            delivered += 1
            try:
                self._server.app.handle_event(self, event)
            except Exception:
                # The application's bug must not take the server down: this connection ends.
                log.exception("application failed on %s from %s", type(event).__name__, self.peer)
                conn.close(now(), 1011, "internal error")
        return delivered

    def _arm_timer(self, deadline: float | None) -> None:
        if deadline == self._deadline and (deadline is None or self._timer is not None):
            return
        self._cancel_timer()
        if deadline is None:
            return
        delay = deadline - now()
        if delay <= 0.0 and self._write_paused:
            # Due but waiting on the peer: poll rather than spin, and never go without a
            # timer (the write timeout must fire while the peer does not read).
            delay = PAUSED_POLL
        self._deadline = deadline
        # Relative: the core's clock is time.monotonic(), uvloop's loop.time() is not.
        self._timer = self.runtime.loop.call_later(max(delay, 0.0), self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = None

    def _on_timer(self) -> None:
        self._timer = None
        self._deadline = None
        transport = self._transport
        if self._write_paused and transport is not None:
            # How much the peer took meanwhile: progress restarts the core's write timeout.
            self.conn.set_transport_buffered(transport.get_write_buffer_size(), now())
        self.conn.handle_timer(now())
        self.pump()

    def _arm_flush_deadline(self, deadline: float | None) -> None:
        """The connection is finished but the transport still holds bytes: abort it if they
        have not left by the core's flush deadline."""
        if deadline is None:
            return
        delay = deadline - now()
        if delay <= 0.0:
            self.abort()
        else:
            self._deadline = deadline
            self._timer = self.runtime.loop.call_later(delay, self.abort)

    def abort(self) -> None:
        """Drop the transport without waiting for the peer (a peer that stopped reading, a
        flush past its deadline, the end of shutdown)."""
        self._cancel_timer()  # the flush timer, if this is not its callback
        if self._transport is not None:
            drop_on_close(self._transport.get_extra_info("socket"))
            self._transport.abort()  # connection_lost follows on the loop


class Server:
    """Accepts connections and pumps them; ``stop()`` (loop thread) shuts down gracefully.

    Make it on the running loop: its runtime binds to that loop."""

    def __init__(self, app: Application, config: ConnectionConfig | None = None) -> None:
        self.app = app
        self.config = config or ConnectionConfig()
        self.sessions: set[AsyncioSession] = set()
        self.runtime = AsyncioRuntime(asyncio.get_running_loop())
        self._stopping = asyncio.Event()
        self._all_done = asyncio.Event()

    def stop(self) -> None:
        """Begin a graceful shutdown (loop thread); ``serve`` returns when it is done."""
        self._stopping.set()

    def session_done(self, session: AsyncioSession) -> None:
        self.sessions.discard(session)
        if not self.sessions:
            self._all_done.set()

    async def serve(
        self, host: str, port: int, ready: Callable[[str, int], None] | None = None
    ) -> None:
        loop = self.runtime.loop
        listener = await loop.create_server(
            lambda: AsyncioSession(self), host, port, backlog=BACKLOG
        )
        try:
            bound = listener.sockets[0].getsockname()
            if ready is not None:
                ready(str(bound[0]), int(bound[1]))
            await self._stopping.wait()
            listener.close()  # stop accepting
            await self._shut_down()
        finally:
            listener.close()
            self.runtime.shutdown()

    async def _shut_down(self) -> None:
        self.app.shutdown()
        for session in list(self.sessions):
            session.conn.close(now(), CLOSE_CODE_SHUTDOWN, "server shutting down")
            session.pump()
        close_timeout = self.config.timeouts.close_timeout or 5.0
        if self.sessions:
            self._all_done.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_done.wait(), close_timeout + 1.0)
        if self.sessions:
            for session in list(self.sessions):
                session.abort()  # a peer that neither read nor answered: drop it
            await asyncio.sleep(0)  # their connection_lost: the application hears the end


def _run(main: Coroutine[Any, Any, None], use_uvloop: bool) -> None:
    if not use_uvloop:
        asyncio.run(main)
        return
    import uvloop  # noqa: PLC0415 (optional)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def run(
    app: Application,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    use_uvloop: bool = False,
    config: ConnectionConfig | None = None,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then close every connection with 1001."""

    async def main() -> None:
        server = Server(app, config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, _on_signal, server, signum)
        try:
            await server.serve(host, port, ready)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    _run(main(), use_uvloop)


def _on_signal(server: Server, signum: int) -> None:
    log.info("received %s: shutting down", signal.Signals(signum).name)
    server.stop()


def start_in_thread(
    app: Application,
    host: str = "127.0.0.1",
    port: int = 0,
    config: ConnectionConfig | None = None,
    *,
    use_uvloop: bool = False,
) -> ThreadedServer[Server]:
    """Serve ``app`` on a new thread; returns once it listens (raises if it cannot start)."""

    async def serve(listening: Listening[Server]) -> None:
        server = Server(app, config)

        def call(function: Callable[[], T]) -> T:
            if threading.get_ident() == server.runtime.loop_thread:
                return function()
            return server.runtime.run_on_loop(function)

        def ready(_host: str, bound: int) -> None:
            listening(server, bound, call)

        await server.serve(host, port, ready)

    def main(listening: Listening[Server]) -> None:
        _run(serve(listening), use_uvloop)

    return start_loop_thread("diaproto-asyncio" + ("-uvloop" if use_uvloop else ""), main)
