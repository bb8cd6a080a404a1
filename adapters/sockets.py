"""The raw-socket adapter: the pump loop on ``socket`` + ``selectors``, standard library only.

One thread runs an event loop for every connection; model sources run on worker threads and
hand their chunks to the loop through a self-pipe. It is also the reference for embedding the
core in a server of your own: per connection, read while the core ``wants_data``, feed it,
hand its events to the application, write what it produced, and re-arm one timer at its
``next_deadline()``. Nothing here decides protocol; this file moves bytes and time.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from diaproto.adapters._pump import Pump, now
from diaproto.adapters._runtime import LoopRuntime, tell_started
from diaproto.adapters._shutdown import close_all, grace, process_signals
from diaproto.adapters._tcp import bound_unsent, drop_on_close
from diaproto.adapters._threaded import ThreadedServer, wait_on_loop
from diaproto.adapters._timers import Timer, TimerHeap
from diaproto.config import ConnectionConfig
from diaproto.runtime import Application
from diaproto.server import ServerConnection

log = logging.getLogger("diaproto.adapters.sockets")
T = TypeVar("T")

READ_SIZE = 65536


class SocketsRuntime(LoopRuntime):
    """The :class:`diaproto.runtime.Runtime` of one running server."""

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.loop_thread = None  # the thread that runs serve_forever, once it does
        self._server = server

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self._server.timers.push(now() + delay, callback)

    def soon(self, callback: Callable[[], None]) -> None:
        self._server.ready.append(callback)

    def _from_thread(self, function: Callable[[], T]) -> T:
        return wait_on_loop(self._server.post, self._ended, function)

    def _ended(self) -> bool:
        return self.closed


class SocketsSession:
    """One connection: the :class:`diaproto.runtime.Session`, its socket, and the transport
    of its :class:`~diaproto.adapters._pump.Pump`."""

    def __init__(self, server: Server, sock: socket.socket, peer: str) -> None:
        self.conn = ServerConnection(now(), server.config)
        self.runtime = server.runtime
        self.peer = peer
        self.sock = sock
        self.pending = bytearray()  # taken from the core, not yet accepted by the socket
        self.interest = 0  # the selector events registered (0: not registered)
        self.eof = False  # the peer half-closed: nothing more to read
        self.gone = False  # the socket failed: nothing can be written either
        self._reading = False
        self._closed = False
        self._server = server
        self.pump = Pump(server.app, self, self, self.runtime.soon, self.runtime.call_later)

    def wake(self) -> None:
        self.pump.wake()

    def on_ready(self, mask: int) -> None:
        """The selector says the socket is readable or writable: read, then step."""
        if mask & selectors.EVENT_READ:
            try:
                data = self.sock.recv(READ_SIZE)
            except BlockingIOError:
                data = None
            except OSError:
                self.gone = True
                data = b""
            if data == b"":
                self.eof = True
                self.conn.receive_eof(now())
            elif data:
                self.conn.receive_data(data, now())
        self.pump.step()  # readable or writable: either way

    # --- the pump's transport --------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def held(self) -> int:
        if self.pending and not self.gone:
            try:
                sent = self.sock.send(self.pending)
                del self.pending[:sent]
            except BlockingIOError:
                pass
            except OSError:
                self.gone = True
                self.pump.lost()
        if self.gone:
            self.pending.clear()  # nobody to write to: the core still drains itself
        self._register()
        return len(self.pending)

    def write(self, data: bytes) -> None:
        self.pending += data

    def set_reading(self, wanted: bool) -> None:
        self._reading = wanted and not self.eof and not self.gone
        self._register()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._reading = False
        self.pending.clear()
        self._register()
        self._server.sessions.discard(self)
        self.sock.close()

    def abort(self) -> None:
        drop_on_close(self.sock)
        self.close()

    def _register(self) -> None:
        interest = (selectors.EVENT_READ if self._reading else 0) | (
            selectors.EVENT_WRITE if self.pending else 0
        )
        if interest == self.interest:
            return
        selector = self._server.selector
        if self.interest == 0:
            selector.register(self.sock, interest, self)
        elif interest == 0:
            selector.unregister(self.sock)
        else:
            selector.modify(self.sock, interest, self)
        self.interest = interest


class Server:
    """Accepts connections and pumps them all from one thread; ``stop()`` from anywhere."""

    def __init__(self, app: Application, config: ConnectionConfig | None = None) -> None:
        self.app = app
        self.config = config or ConnectionConfig()
        self.runtime = SocketsRuntime(self)
        self.selector = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.sessions: set[SocketsSession] = set()
        self.ready: deque[Callable[[], None]] = deque()  # callbacks from the loop thread
        self.inbox: deque[Callable[[], None]] = deque()  # callbacks from other threads
        self.inbox_lock = threading.Lock()
        self.timers = TimerHeap()
        self._stopping = False
        # The self-pipe: a byte on it wakes the loop out of select() from another thread
        # or from a signal handler.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def bind(self, host: str, port: int) -> tuple[str, int]:
        listener = socket.create_server((host, port), backlog=socket.SOMAXCONN)  # SO_REUSEADDR
        listener.setblocking(False)
        self.listener = listener
        bound = listener.getsockname()
        return str(bound[0]), int(bound[1])

    def stop(self) -> None:
        """Begin a graceful shutdown; safe from any thread and from a signal handler."""
        self._stopping = True
        self.wake_loop()

    def wake_loop(self) -> None:
        with contextlib.suppress(OSError):  # full (it will wake anyway), or closed
            self._wake_w.send(b"\0")

    def post(self, callback: Callable[[], None]) -> None:
        """Any thread: run ``callback`` on the loop soon."""
        with self.inbox_lock:
            wake = not self.inbox  # one byte per batch is enough to wake the loop
            self.inbox.append(callback)
        if wake:
            self.wake_loop()

    # --- the loop --------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Run the loop on this thread until ``stop()``, then shut down gracefully."""
        assert self.listener is not None, "bind() first"
        self.runtime.loop_thread = threading.get_ident()
        self.selector.register(self.listener, selectors.EVENT_READ, "listener")
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        tell_started(self.app, self.runtime)
        shutdown_deadline: float | None = None
        try:
            while True:
                if self._stopping and shutdown_deadline is None:
                    shutdown_deadline = self._begin_shutdown()
                if shutdown_deadline is not None and (
                    not self.sessions or now() >= shutdown_deadline
                ):
                    break
                for key, mask in self.selector.select(self._timeout(shutdown_deadline)):
                    if key.data == "listener":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        key.data.on_ready(mask)
                self._run_callbacks()
                self.timers.run_due(now)
        finally:
            self._close_everything()

    def _timeout(self, shutdown_deadline: float | None) -> float | None:
        if self.ready:
            return 0.0
        first = self.timers.next_deadline()
        deadlines = [] if first is None else [first]
        if shutdown_deadline is not None:
            deadlines.append(shutdown_deadline)
        return max(min(deadlines) - now(), 0.0) if deadlines else None

    def _accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of descriptors, say: try again on the next select
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # audio is latency
            bound_unsent(sock, self.config.send_buffer)
            session = SocketsSession(self, sock, f"{address[0]}:{address[1]}")
            self.sessions.add(session)
            session.pump.step()  # registers it for reading and arms its handshake timer

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass

    def _run_callbacks(self) -> None:
        with self.inbox_lock:
            posted, self.inbox = self.inbox, deque()
        # Not the ones these callbacks add to ``ready``: those run on the next iteration.
        callbacks = [*posted, *(self.ready.popleft() for _ in range(len(self.ready)))]
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("callback %r failed", callback)

    # --- shutting down ---------------------------------------------------------------------

    def _begin_shutdown(self) -> float:
        """Stop accepting, stop producers, close every connection with 1001; returns how
        long to keep pumping for the close handshakes."""
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
        close_all(self.app, [session.pump for session in self.sessions])
        return now() + grace(self.config)

    def _close_everything(self) -> None:
        for session in list(self.sessions):  # past the deadline: drop them
            session.gone = True
            session.pump.lost()
            session.pump.abort()
        self.runtime.close()  # from now on a worker's call onto the loop raises
        if self.listener is not None:
            self.listener.close()
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()
        self.runtime.workers.join()


def run(
    app: Application,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    config: ConnectionConfig | None = None,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then close every connection with 1001.
    Call it from the main thread (signal handlers live there)."""
    server = Server(app, config)
    bound_host, bound_port = server.bind(host, port)
    # stop() sets a flag and writes to the self-pipe: select() returns
    with process_signals(server.stop):
        if ready is not None:
            ready(bound_host, bound_port)
        server.serve_forever()


def start_in_thread(
    app: Application,
    host: str = "127.0.0.1",
    port: int = 0,
    config: ConnectionConfig | None = None,
) -> ThreadedServer[Server]:
    """Serve ``app`` on a new thread; returns once it listens (raises if it cannot bind)."""
    server = Server(app, config)
    _, bound_port = server.bind(host, port)
    thread = threading.Thread(target=server.serve_forever, name="diaproto-sockets", daemon=True)
    thread.start()
    # stop() is safe from any thread, and needs no trip through the loop.
    return ThreadedServer(server, bound_port, thread, server.runtime.call, request_stop=server.stop)
