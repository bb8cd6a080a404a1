"""The raw-socket adapter: the pump loop on ``socket`` + ``selectors``, standard library only.

One thread runs an event loop for every connection; model sources run on worker threads and
hand their chunks to the loop through a self-pipe. It is also the reference for embedding the
core in a server of your own: per connection, read while the core ``wants_data``, feed it,
hand its events to the application, write what it produced, and re-arm one timer at its
``next_deadline()``. Nothing here decides protocol; this file moves bytes and time.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

from diaproto.adapters._tcp import bound_unsent, drop_on_close
from diaproto.adapters._threaded import ThreadedServer

from diaproto.config import ConnectionConfig
from diaproto.runtime import Application
from diaproto.server import ServerConnection

log = logging.getLogger("diaproto.adapters.sockets")
T = TypeVar("T")

READ_SIZE = 65536
CLOSE_CODE_SHUTDOWN = 1001
WORKER_JOIN = 2.0  # seconds a stopping server waits for its workers to return


def now() -> float:
    return time.monotonic()


class _Timer:
    """A ``call_later`` timer; cancelled entries stay in the heap and are skipped."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Call:
    """A callback a worker hands to the loop, and the worker's wait for it to have run."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.done = threading.Event()
        self.error: BaseException | None = None


class SocketsRuntime:
    """The :class:`diaproto.runtime.Runtime` of one running server."""

    def __init__(self, server: Server) -> None:
        self._server = server

    def now(self) -> float:
        return now()

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        server = self._server
        if threading.get_ident() == server.loop_thread:
            server.ready.append(callback)
            return
        call = _Call(callback)
        with server.inbox_lock:
            if server.closed:
                raise RuntimeError("the server has stopped")
            wake = not server.inbox  # one byte per batch is enough to wake the loop
            server.inbox.append(call)
        if wake:
            server.wake_loop()
        call.done.wait()  # a producer can never run ahead of the loop (the contract)
        if call.error is not None:
            raise call.error

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(callback)
        self._server.push_timer(now() + delay, timer)
        return timer

    def start_worker(self, target: Callable[[], None], name: str = "worker") -> None:
        def run() -> None:
            try:
                target()
            except Exception:
                log.exception("worker %s failed", name)
            finally:
                self._server.workers.discard(thread)

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._server.workers.add(thread)
        thread.start()


class SocketsSession:
    """The :class:`diaproto.runtime.Session` of one connection, and its socket's state."""

    def __init__(self, server: Server, sock: socket.socket, peer: str) -> None:
        self.conn = ServerConnection(now(), server.config)
        self.runtime = server.runtime
        self.peer = peer
        self.sock = sock
        self.pending = bytearray()  # taken from the core, not yet accepted by the socket
        self.interest = 0  # the selector events registered (0: not registered)
        self.armed: float | None = None  # the deadline of this connection's live heap entry
        self.eof = False  # the peer half-closed: nothing more to read
        self.gone = False  # the socket failed: nothing can be written either
        self.closed = False
        self._server = server

    def wake(self) -> None:
        self._server.dirty[self] = None


class Server:
    """Accepts connections and pumps them all from one thread; ``stop()`` from anywhere."""

    def __init__(self, app: Application, config: ConnectionConfig | None = None) -> None:
        self.app = app
        self.config = config or ConnectionConfig()
        self.runtime = SocketsRuntime(self)
        self.selector = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.sessions: set[SocketsSession] = set()
        self.dirty: dict[SocketsSession, None] = {}  # output may be due (ordered set)
        self.ready: deque[Callable[[], None]] = deque()  # callbacks from the loop thread
        self.inbox: deque[_Call] = deque()  # callbacks from other threads
        self.inbox_lock = threading.Lock()
        self.timers: list[tuple[float, int, _Timer | SocketsSession]] = []
        self.workers: set[threading.Thread] = set()
        self.loop_thread: int | None = None
        self.closed = False
        self._seq = itertools.count()
        self._compact_at = 1024
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

    def push_timer(self, deadline: float, item: _Timer | SocketsSession) -> None:
        heapq.heappush(self.timers, (deadline, next(self._seq), item))

    # --- the loop --------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Run the loop on this thread until ``stop()``, then shut down gracefully."""
        assert self.listener is not None, "bind() first"
        self.loop_thread = threading.get_ident()
        self.selector.register(self.listener, selectors.EVENT_READ, "listener")
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")
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
                        self._on_ready(key.data, mask)
                self._run_callbacks()
                self._run_timers()
                while self.dirty:
                    session = next(iter(self.dirty))
                    del self.dirty[session]
                    self._pump(session)
        finally:
            self._close_everything()

    def _timeout(self, shutdown_deadline: float | None) -> float | None:
        if self.ready or self.dirty:
            return 0.0
        deadlines = [self.timers[0][0]] if self.timers else []
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
            bound_unsent(sock)
            session = SocketsSession(self, sock, f"{address[0]}:{address[1]}")
            self.sessions.add(session)
            self._pump(session)  # registers it for reading and arms its handshake timer

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass

    def _on_ready(self, session: SocketsSession, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            try:
                data = session.sock.recv(READ_SIZE)
            except BlockingIOError:
                data = None
            except OSError:
                session.gone = True
                data = b""
            if data == b"":
                session.eof = True
                session.conn.receive_eof(now())
            elif data:
                session.conn.receive_data(data, now())
        self.dirty[session] = None  # readable or writable: either way, pump it

    def _run_callbacks(self) -> None:
        with self.inbox_lock:
            calls, self.inbox = self.inbox, deque()
        for call in calls:
            try:
                call.callback()
            except Exception as exc:  # raised in the worker that handed it over
                call.error = exc
            finally:
                call.done.set()
        for _ in range(len(self.ready)):  # not the ones these callbacks add: next iteration
            callback = self.ready.popleft()
            try:
                callback()
            except Exception:
                log.exception("callback %r failed", callback)

    def _run_timers(self) -> None:
        while self.timers and self.timers[0][0] <= now():
            deadline, _, item = heapq.heappop(self.timers)
            if isinstance(item, _Timer):
                if not item.cancelled:
                    try:
                        item.callback()
                    except Exception:
                        log.exception("timer %r failed", item.callback)
            elif not item.closed and item.armed == deadline:  # else stale: re-armed since
                item.armed = None
                item.conn.handle_timer(now())
                self.dirty[item] = None
        if len(self.timers) > self._compact_at:
            # Stale entries pile up while deadlines keep moving (a heartbeat per write).
            self.timers = [
                (deadline, seq, item)
                for deadline, seq, item in self.timers
                if (not item.cancelled if isinstance(item, _Timer) else item.armed == deadline)
            ]
            heapq.heapify(self.timers)
            self._compact_at = max(1024, 4 * len(self.timers))

    # --- one connection --------------------------------------------------------------------

    def _pump(self, session: SocketsSession) -> None:
        """Deliver events, write what the core has, then re-register and re-arm."""
        if session.closed:
            return
        conn = session.conn
        while True:
            self._dispatch(session)
            if session.pending and not session.gone:
                try:
                    sent = session.sock.send(session.pending)
                    del session.pending[:sent]
                except BlockingIOError:
                    pass
                except OSError:
                    session.gone = True
                    conn.receive_eof(now())
            if session.gone:
                session.pending.clear()  # nobody to write to: the core still drains itself
            conn.set_transport_buffered(len(session.pending), now())
            if session.pending:
                break  # the rest stays in the core, where priorities still apply
            data = conn.data_to_send(now())
            if data:
                session.pending += data
            elif not self._dispatch(session):
                break  # else the events (a producer resumed, a pipelined request) may write
        deadline = conn.next_deadline()
        if conn.finished:
            if not session.pending:
                self._close(session)
                return
            # The last bytes get until the core's flush deadline; then the socket is reset.
            deadline = conn.flush_deadline
            if deadline is not None and now() >= deadline:
                self._close(session, drop=True)
                return
        interest = selectors.EVENT_WRITE if session.pending else 0
        if conn.wants_data and not session.eof and not session.gone:
            interest |= selectors.EVENT_READ
        self._register(session, interest)
        if deadline != session.armed:  # the old heap entry, if any, is stale from now on
            session.armed = deadline
            if deadline is not None:
                self.push_timer(deadline, session)

    def _dispatch(self, session: SocketsSession) -> int:
        """Hand every event of the connection to the application; returns how many."""
        conn, count = session.conn, 0
        while (event := conn.next_event()) is not None:
            count += 1
            try:
                self.app.handle_event(session, event)
            except Exception:
                # The application's bug must not take the server down: this connection ends.
                log.exception(
                    "application failed on %s from %s", type(event).__name__, session.peer
                )
                conn.close(now(), 1011, "internal error")
        return count

    def _register(self, session: SocketsSession, interest: int) -> None:
        if interest == session.interest:
            return
        if session.interest == 0:
            self.selector.register(session.sock, interest, session)
        elif interest == 0:
            self.selector.unregister(session.sock)
        else:
            self.selector.modify(session.sock, interest, session)
        session.interest = interest

    def _close(self, session: SocketsSession, *, drop: bool = False) -> None:
        """Close the socket; ``drop``: reset it, discarding what the peer did not take."""
        self._register(session, 0)
        self.sessions.discard(session)
        self.dirty.pop(session, None)
        session.closed = True
        session.armed = None  # its heap entries are stale now
        if drop:
            drop_on_close(session.sock)
        session.sock.close()

    # --- shutting down ---------------------------------------------------------------------

    def _begin_shutdown(self) -> float:
        """Stop accepting, stop producers, close every connection with 1001; returns how
        long to keep pumping for the close handshakes."""
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
        self.app.shutdown()
        for session in list(self.sessions):
            session.conn.close(now(), CLOSE_CODE_SHUTDOWN, "server shutting down")
            self.dirty[session] = None
        return now() + (self.config.timeouts.close_timeout or 5.0) + 1.0

    def _close_everything(self) -> None:
        for session in list(self.sessions):  # past the deadline: drop them
            session.gone = True
            session.conn.receive_eof(now())
            self._dispatch(session)
            self._close(session, drop=True)
        with self.inbox_lock:
            self.closed = True  # from now on call_soon_threadsafe raises
            calls, self.inbox = self.inbox, deque()
        for call in calls:
            call.error = RuntimeError("the server has stopped")
            call.done.set()
        if self.listener is not None:
            self.listener.close()
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()
        deadline = now() + WORKER_JOIN
        for thread in list(self.workers):
            thread.join(max(deadline - now(), 0.0))
            if thread.is_alive():
                log.warning("worker %s still running after shutdown", thread.name)


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

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: shutting down", signal.Signals(signum).name)
        server.stop()  # sets a flag and writes to the self-pipe: select() returns

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if ready is not None:
            ready(bound_host, bound_port)
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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

    def call(function: Callable[[], T]) -> T:
        if threading.get_ident() == server.loop_thread:
            return function()
        box: list[T] = []
        server.runtime.call_soon_threadsafe(lambda: box.append(function()))
        return box[0]

    # stop() is safe from any thread, and needs no trip through the loop.
    return ThreadedServer(server, bound_port, thread, call, request_stop=server.stop)
