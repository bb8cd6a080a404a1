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
import ssl as _ssl
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from diaproto.adapters._pump import Pump, now
from diaproto.adapters._runtime import LoopRuntime, tell_started
from diaproto.adapters._shutdown import close_all, grace, serve_until_signal
from diaproto.adapters._tcp import bound_unsent, drop_on_close
from diaproto.adapters._threaded import (
    RunLoop,
    ThreadedServer,
    start_serving_thread,
    wait_on_loop,
)
from diaproto.config import ConnectionConfig
from diaproto.runtime import Application, Cancellable
from diaproto.server import ServerConnection

T = TypeVar("T")

BACKLOG = 65535  # as anyio's listener; the kernel caps it at net.core.somaxconn


class AsyncioRuntime(LoopRuntime):
    """The :class:`diaproto.runtime.Runtime` of one running server."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        return self.loop.call_later(delay, callback)

    def soon(self, callback: Callable[[], None]) -> None:
        self.loop.call_soon(callback)

    def _from_thread(self, function: Callable[[], T]) -> T:
        return wait_on_loop(self._post, self._ended, function)

    def _post(self, callback: Callable[[], None]) -> None:
        self.loop.call_soon_threadsafe(callback)

    def _ended(self) -> bool:
        return self.closed or self.loop.is_closed()


class AsyncioSession(asyncio.Protocol):
    """One connection: the :class:`diaproto.runtime.Session`, and the transport of its
    :class:`~diaproto.adapters._pump.Pump`."""

    __slots__ = (
        "_read_paused",
        "_server",
        "_transport",
        "_write_paused",
        "conn",
        "pump",
        "runtime",
    )

    def __init__(self, server: Server) -> None:
        self.conn = ServerConnection(now(), server.config)
        self.runtime = server.runtime
        self._server = server
        self._transport: asyncio.Transport | None = None  # None once the connection is lost
        self._write_paused = False  # the transport holds bytes: the core keeps the rest
        self._read_paused = False
        self.pump = Pump(server.app, self, self, self.runtime.soon, self.runtime.call_later)

    @property
    def peer(self) -> str:
        transport = self._transport
        address = transport.get_extra_info("peername") if transport is not None else None
        return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)

    def wake(self) -> None:
        self.pump.wake()

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        # pause_writing as soon as the transport holds a byte, resume_writing once it holds
        # none: the kernel has all it will take, so at most one batch waits outside the core
        # (whose scheduler keeps priorities) and the core learns at once when it drained.
        transport.set_write_buffer_limits(high=0, low=0)
        bound_unsent(transport.get_extra_info("socket"), self._server.config.send_buffer)
        self._server.sessions.add(self)
        self.pump.step()  # arms the handshake timer

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data, now())
        self.pump.step()

    def eof_received(self) -> bool:
        self.conn.receive_eof(now())
        self.pump.step()
        return True  # keep the write side: the core decides when to close

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.pump.timer.cancel()
        self.pump.lost()  # the core reports ConnectionClosed; no more timers
        self._server.session_done(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self.pump.step()

    # --- the pump's transport --------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def held(self) -> int:
        transport = self._transport
        if not self._write_paused or transport is None:
            return 0
        return transport.get_write_buffer_size()

    def write(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    def set_reading(self, wanted: bool) -> None:
        # The core holds enough unread input: leave the rest in the kernel (TCP
        # backpressure) until a step sees it drained.
        if wanted == self._read_paused and self._transport is not None:
            self._read_paused = not wanted
            if wanted:
                self._transport.resume_reading()
            else:
                self._transport.pause_reading()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            drop_on_close(self._transport.get_extra_info("socket"))
            self._transport.abort()  # connection_lost follows on the loop


class Server:
    """Accepts connections and pumps them; ``stop()`` (loop thread) shuts down gracefully.

    Make it on the running loop: its runtime binds to that loop."""

    def __init__(
        self,
        app: Application,
        config: ConnectionConfig | None = None,
        *,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.config = config or ConnectionConfig()
        self.ssl = ssl  # TLS: the handshake is the transport's, before connection_made
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
            lambda: AsyncioSession(self), host, port, backlog=BACKLOG, ssl=self.ssl
        )
        try:
            bound = listener.sockets[0].getsockname()
            tell_started(self.app, self.runtime)
            if ready is not None:
                ready(str(bound[0]), int(bound[1]))
            await self._stopping.wait()
            listener.close()  # stop accepting
            await self._shut_down()
        finally:
            listener.close()
            self.runtime.close()
            await asyncio.to_thread(self.runtime.workers.join)  # off the loop

    async def _shut_down(self) -> None:
        close_all(self.app, [session.pump for session in self.sessions])
        if self.sessions:
            self._all_done.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_done.wait(), grace(self.config))
        if self.sessions:
            for session in list(self.sessions):
                session.pump.abort()  # a peer that neither read nor answered: drop it
            await asyncio.sleep(0)  # their connection_lost: the application hears the end


def _runner(use_uvloop: bool) -> RunLoop:
    if not use_uvloop:
        return asyncio.run
    import uvloop  # noqa: PLC0415 (optional)

    def run(main: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)

    return run


def run(
    app: Application,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    use_uvloop: bool = False,
    config: ConnectionConfig | None = None,
    ready: Callable[[str, int], None] | None = None,
    ssl: _ssl.SSLContext | None = None,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then close every connection with 1001.
    ``ssl``: serve HTTPS and WSS with this context."""
    serve_until_signal(lambda: Server(app, config, ssl=ssl), host, port, ready, _runner(use_uvloop))


def start_in_thread(
    app: Application,
    host: str = "127.0.0.1",
    port: int = 0,
    config: ConnectionConfig | None = None,
    *,
    use_uvloop: bool = False,
    ssl: _ssl.SSLContext | None = None,
) -> ThreadedServer[Server]:
    """Serve ``app`` on a new thread; returns once it listens (raises if it cannot start)."""
    name = "diaproto-asyncio" + ("-uvloop" if use_uvloop else "")
    return start_serving_thread(
        name, lambda: Server(app, config, ssl=ssl), host, port, _runner(use_uvloop)
    )
