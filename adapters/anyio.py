"""The anyio adapter: the pump loop on asyncio (optionally uvloop) or trio.

Per connection, one task reads and feeds the core, one task writes what the core produced and
sleeps until the core's next deadline or a wake-up. Nothing here decides protocol: timeouts,
heartbeats, batching and backpressure are the core's; this file moves bytes and time.
"""

from __future__ import annotations

import logging
import math
import ssl as _ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSListener

from diaproto.adapters._pump import dispatch, now, past, write_deadline
from diaproto.adapters._runtime import LoopRuntime, tell_started
from diaproto.adapters._shutdown import SIGNALS, close_all, grace, stop_on_signal
from diaproto.adapters._tcp import bound_unsent, drop_on_close
from diaproto.adapters._threaded import Listening, ThreadedServer, start_loop_thread
from diaproto.adapters._timers import Timer, TimerHeap
from diaproto.config import ConnectionConfig
from diaproto.runtime import Application, Cancellable
from diaproto.server import ServerConnection

T = TypeVar("T")

log = logging.getLogger("diaproto.adapters.anyio")

READ_SIZE = 65536


class _Timers(TimerHeap):
    """Every ``call_later`` of one server, served by one task that sleeps until the
    earliest. (A task per timer cost a task, a cancel scope and a sleep for each: at 200
    streams ticking at 50 Hz, most of the loop's time.)"""

    def __init__(self) -> None:
        super().__init__()
        self._sleeping: anyio.CancelScope | None = None  # the task's sleep, while it sleeps

    def add(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = self.push(now() + max(delay, 0.0), callback)
        if self._sleeping is not None and self.first() is timer:
            self._sleeping.cancel()  # earlier than what the task sleeps until
        return timer

    async def run(self) -> None:
        while True:
            self.run_due(now)
            # A plain sleep: a timeout that raises (move_on_after) would make garbage with
            # cycles at every timer, and the full collections that follow stall the loop.
            # Only an earlier timer cancels it (add()).
            deadline = self.next_deadline()
            with anyio.CancelScope() as self._sleeping:
                if deadline is None:
                    await anyio.sleep_forever()
                else:
                    await anyio.sleep(max(deadline - now(), 0.0))
            self._sleeping = None


class AnyioRuntime(LoopRuntime):
    """The :class:`diaproto.runtime.Runtime` of one running server."""

    def __init__(self, task_group: anyio.abc.TaskGroup) -> None:
        super().__init__()
        self._tg = task_group
        self._token = anyio.lowlevel.current_token()
        self._timers = _Timers()
        task_group.start_soon(self._timers.run)

    def soon(self, callback: Callable[[], None]) -> None:
        self._tg.start_soon(_call, callback)

    def _from_thread(self, function: Callable[[], T]) -> T:
        return anyio.from_thread.run_sync(function, token=self._token)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        return self._timers.add(delay, callback)


async def _call(callback: Callable[[], None]) -> None:
    callback()


@dataclass(eq=False)
class AnyioSession:
    """The :class:`diaproto.runtime.Session` of one connection."""

    conn: ServerConnection
    runtime: AnyioRuntime
    peer: str
    app: Application | None = None
    _wakeup: anyio.Event = field(default_factory=anyio.Event)
    _sending: bool = False
    _dispatch_scheduled: bool = False

    def wake(self) -> None:
        self._wakeup.set()
        if self._sending and not self._dispatch_scheduled and self.app is not None:
            # The writer is blocked on a full transport and dispatches nothing meanwhile; the
            # events the core raised since (a StreamPaused for a producer) must not wait for
            # the peer to read, or the producer never pauses.
            self._dispatch_scheduled = True
            self.runtime.call_soon_threadsafe(self._dispatch_now)

    def _dispatch_now(self) -> None:
        self._dispatch_scheduled = False
        if self.app is not None:
            dispatch(self.app, self)

    def step(self) -> None:
        """Hand out the events now; the writer writes what the core produced."""
        if self.app is not None:
            dispatch(self.app, self)
        self.wake()

    async def wait(self, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            await self._wakeup.wait()
        if self._wakeup.is_set():  # (a timeout leaves it unset: no new one needed)
            self._wakeup = anyio.Event()


class Server:
    """Accepts connections and runs the pump for each; ``stop()`` shuts down gracefully."""

    def __init__(
        self,
        app: Application,
        config: ConnectionConfig | None = None,
        *,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.config = config or ConnectionConfig()
        self.ssl = ssl
        self.sessions: set[AnyioSession] = set()
        self.runtime: AnyioRuntime | None = None
        self._stopping = anyio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def serve(
        self, host: str, port: int, ready: Callable[[str, int], None] | None = None
    ) -> None:
        tcp = await anyio.create_tcp_listener(local_host=host, local_port=port)
        bound = tcp.extra(SocketAttribute.local_address)
        listener: anyio.abc.Listener[anyio.abc.ByteStream] = tcp
        if self.ssl is not None:  # each connection's handshake runs in its own task
            listener = _TLSListener(tcp, self.ssl, standard_compatible=False)
        accepting = anyio.CancelScope()

        async def accept(tg: anyio.abc.TaskGroup) -> None:
            # Connections run in ``tg``, so they outlive this scope; the listener is closed
            # here, by the task blocked in accept(), once it is cancelled.
            with accepting:
                async with listener:
                    await listener.serve(self._handle, tg)

        async with anyio.create_task_group() as tg:
            self.runtime = runtime = AnyioRuntime(tg)
            tg.start_soon(accept, tg)
            tell_started(self.app, runtime)
            if ready is not None:
                ready(str(bound[0]), int(bound[1]))
            await self._stopping.wait()
            accepting.cancel()
            await self._shut_down()
            tg.cancel_scope.cancel()
        runtime.close()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(runtime.workers.join)  # off the loop

    async def _shut_down(self) -> None:
        close_all(self.app, self.sessions)
        with anyio.move_on_after(grace(self.config)):
            while self.sessions:
                await anyio.sleep(0.01)

    async def _handle(self, stream: anyio.abc.ByteStream) -> None:
        assert self.runtime is not None
        address = stream.extra(SocketAttribute.remote_address)
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        session = AnyioSession(ServerConnection(now(), self.config), self.runtime, peer, self.app)
        bound_unsent(stream.extra(SocketAttribute.raw_socket, None), self.config.send_buffer)
        self.sessions.add(session)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_reader, self.app, session, stream)
                sender = _Sender(self.app, session, stream)
                tg.start_soon(sender.run)
                await _writer(self.app, session, stream, sender)
                tg.cancel_scope.cancel()  # the reader, and a send abandoned by the writer
        finally:
            self.sessions.discard(session)
            await stream.aclose()


async def _reader(app: Application, session: AnyioSession, stream: anyio.abc.ByteStream) -> None:
    conn = session.conn
    while not conn.finished:
        if not conn.wants_data:
            await session.wait(0.05)  # the core holds enough unread input: let it drain
            continue
        try:
            data = await stream.receive(READ_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            conn.receive_eof(now())
            dispatch(app, session)
            session.wake()
            return
        conn.receive_data(data, now())
        dispatch(app, session)
        session.wake()


async def _writer(
    app: Application,
    session: AnyioSession,
    stream: anyio.abc.ByteStream,
    sender: _Sender,
) -> None:
    conn = session.conn
    while True:
        data = conn.data_to_send(now())
        dispatch(app, session)  # taking a batch can resume paused producers
        if data:
            conn.set_transport_buffered(len(data), now())
            if not await _send(app, session, sender, data):
                # The core gave up on the peer: reset, so nothing waits on its window.
                drop_on_close(stream.extra(SocketAttribute.raw_socket, None))
                return
            conn.set_transport_buffered(0, now())
            continue
        if conn.finished:
            return
        deadline = conn.next_deadline()
        await session.wait(math.inf if deadline is None else max(deadline - now(), 0.0))
        if past(deadline):
            conn.handle_timer(now())
            dispatch(app, session)


class _Sender:
    """The connection's one sending task: the writer hands it each batch and waits, with
    the core's timers running, until it is sent (a peer that does not read would otherwise
    stop them, the write timeout included). One task for the connection's life: a task per
    batch cost a task and a cancel scope for every write."""

    def __init__(
        self, app: Application, session: AnyioSession, stream: anyio.abc.ByteStream
    ) -> None:
        self.app = app
        self.session = session
        self.stream = stream
        self.sent = True
        self._inbox, self._outlet = anyio.create_memory_object_stream[bytes](1)

    def hand(self, data: bytes) -> None:
        self.sent = False
        self._inbox.send_nowait(data)  # the writer hands one batch at a time: never full

    async def run(self) -> None:
        conn, session = self.session.conn, self.session
        with self._inbox, self._outlet:  # both closed with the connection (its tasks' end)
            async for data in self._outlet:
                try:
                    await self.stream.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    conn.receive_eof(now())
                    dispatch(self.app, session)
                self.sent = True
                session._wakeup.set()


async def _send(app: Application, session: AnyioSession, sender: _Sender, data: bytes) -> bool:
    """Send ``data`` through the connection's sender while the core's timers run on. False
    when the connection finished and its flush deadline passed with the send still
    blocked (the caller then drops the connection, which cancels the send)."""
    conn = session.conn
    sender.hand(data)
    session._sending = True
    try:
        while not sender.sent:
            deadline = write_deadline(conn)
            # A wake-up too: the application may have closed the connection meanwhile, and
            # the flush deadline then replaces the deadline this wait began with.
            await session.wait(math.inf if deadline is None else max(deadline - now(), 0))
            if sender.sent or not past(deadline):
                continue
            if conn.finished:
                return False  # the send is abandoned: the stream is dropped next
            conn.handle_timer(now())
            dispatch(app, session)
    finally:
        session._sending = False
    return True


class _TLSListener(TLSListener):
    """anyio's TLS listener, with a failed handshake (a plain-HTTP client, a scanner) logged
    in one line at debug, not as an error with a traceback: it harms nothing."""

    @staticmethod
    async def handle_handshake_error(exc: BaseException, stream: anyio.abc.AnyByteStream) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, anyio.get_cancelled_exc_class()):
            await anyio.aclose_forcefully(stream)
            log.debug("TLS handshake failed: %s", exc)
            return
        await TLSListener.handle_handshake_error(exc, stream)


def run(
    app: Application,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    backend: str = "asyncio",
    use_uvloop: bool = False,
    config: ConnectionConfig | None = None,
    ready: Callable[[str, int], None] | None = None,
    ssl: _ssl.SSLContext | None = None,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then close every connection with 1001.
    ``ssl``: serve HTTPS and WSS with this context."""
    server = Server(app, config, ssl=ssl)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, server)
            await server.serve(host, port, ready)
            tg.cancel_scope.cancel()

    options = {"use_uvloop": True} if backend == "asyncio" and use_uvloop else {}
    anyio.run(main, backend=backend, backend_options=options)


async def _stop_on_signal(server: Server) -> None:
    with anyio.open_signal_receiver(*SIGNALS) as signals:
        async for signum in signals:
            stop_on_signal(server.stop, signum)
            return


async def serve_in_background(
    app: Application,
    task_group: anyio.abc.TaskGroup,
    host: str = "127.0.0.1",
    port: int = 0,
    config: ConnectionConfig | None = None,
    *,
    ssl: _ssl.SSLContext | None = None,
) -> tuple[Server, int]:
    """Start a server inside ``task_group`` (for tests and embedding); returns it and its port."""
    server = Server(app, config, ssl=ssl)
    bound: list[int] = []
    started = anyio.Event()

    def ready(_host: str, actual_port: int) -> None:
        bound.append(actual_port)
        started.set()

    task_group.start_soon(server.serve, host, port, ready)
    await started.wait()
    return server, bound[0]


def start_in_thread(
    app: Application,
    host: str = "127.0.0.1",
    port: int = 0,
    config: ConnectionConfig | None = None,
    *,
    backend: str = "asyncio",
    use_uvloop: bool = False,
    ssl: _ssl.SSLContext | None = None,
) -> ThreadedServer[Server]:
    """Serve ``app`` on a new thread; returns once it listens (raises if it cannot start)."""

    async def serve(listening: Listening[Server]) -> None:
        async with anyio.create_task_group() as tg:
            server, bound = await serve_in_background(app, tg, host, port, config, ssl=ssl)
            assert server.runtime is not None  # made before it listens
            listening(server, bound, server.runtime.call)

    def main(listening: Listening[Server]) -> None:
        options = {"use_uvloop": True} if backend == "asyncio" and use_uvloop else {}
        anyio.run(serve, listening, backend=backend, backend_options=options)

    return start_loop_thread(f"diaproto-{backend}", main)
