"""The asyncio adapter (one ``asyncio.Protocol`` per connection), on asyncio and on uvloop,
driven by real clients over 127.0.0.1.

What every runtime must do (streams, shutdown with 1001, backpressure, timeouts) is in
tests/adapters; this file keeps what is particular to this adapter:

- no task per connection (the loop's task count does not grow with connections), slotted
  sessions, TCP_NODELAY on accepted sockets;
- one ``TimerHandle`` per connection, re-armed only when the core's deadline moves;
- a peer that stops reading: the transport holds bytes, the core counts them as in flight
  and takes no more until the transport drained (then the stream goes on to its end);
- an application that raises loses only that connection (1011);
- after ``stop()`` the handle says the loop is gone instead of hanging;
- shutdown drops, after the close timeout, a client that neither reads nor answers;
- inbound flow control: a peer that pipelines without end is no longer read;
- the runtime's contract: a worker's ``call_soon_threadsafe`` returns once the loop ran it;
- ``diaproto serve --runtime asyncio --uvloop`` and ``--runtime anyio`` serve and exit 0 on
  SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import cast

import httpx
import pytest
from diaproto.adapters._threaded import ThreadedServer
from diaproto.adapters.asyncio import AsyncioSession, Server, start_in_thread
from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.sources import Source, SyntheticSource
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from diaproto.client import WebSocketClientConnection
from diaproto.config import ConnectionConfig, Limits, Timeouts
from diaproto.events import Event, Request, WebSocketAccepted, WebSocketMessage, WebSocketRequest
from diaproto.runtime import Application, Session
from diaproto.wire import OpenStream

SUBPROTOCOL = Subprotocol("diaproto.v1")
LIMIT = 10.0  # bound on every wait (never a timing assertion)
LOOPS = ["asyncio", "uvloop"]


def long_text(sentences: int) -> str:
    return " ".join(
        f"Sentence number {n} goes on for quite a while indeed." for n in range(sentences)
    )


def fast_source() -> Source:
    return SyntheticSource(real_time_factor=0.02, first_chunk_latency=0.005)


def start(
    loop: str, app: Application, config: ConnectionConfig | None = None
) -> ThreadedServer[Server]:
    return start_in_thread(app, config=config, use_uvloop=loop == "uvloop")


@contextmanager
def serving(
    loop: str, app: Application, config: ConnectionConfig | None = None
) -> Iterator[ThreadedServer[Server]]:
    handle = start(loop, app, config)
    try:
        yield handle
    finally:
        assert handle.stop(timeout=15.0), "the server thread did not end"


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LIMIT
    while not condition():
        assert time.monotonic() < deadline, f"not within {LIMIT} s: {what}"
        time.sleep(0.01)


def ws_connect(port: int, path: str = "/ws") -> ClientConnection:
    return connect(f"ws://127.0.0.1:{port}{path}", proxy=None, open_timeout=5, close_timeout=5)


class Echo:
    """Plain WebSocket echo that raises on "boom"; HTTP requests get 200 "ok"."""

    def __init__(self) -> None:
        self.shut_down = False

    def handle_event(self, session: Session, event: Event) -> None:
        conn, now = session.conn, session.runtime.now()
        match event:
            case Request():
                conn.respond(200, (("content-type", "text/plain"),), b"ok", now=now)
            case WebSocketRequest():
                conn.accept_websocket(None, now=now)
                conn.open_stream(1, now)
            case WebSocketMessage(data=str() as text):
                if text == "boom":
                    raise RuntimeError("the application failed")
                conn.send(1, f"echo: {text}", now)
            case _:
                pass

    def shutdown(self) -> None:
        self.shut_down = True


@pytest.mark.parametrize("loop", LOOPS)
def test_connections_cost_no_task_and_get_nodelay(loop: str) -> None:
    with serving(loop, Echo()) as server, ExitStack() as clients:

        def tasks() -> int:
            return len(asyncio.all_tasks())

        before = server.call(tasks)
        peers = [clients.enter_context(ws_connect(server.port, "/echo")) for _ in range(20)]
        for n, peer in enumerate(peers):
            peer.send(f"m{n}")
            assert peer.recv(timeout=LIMIT) == f"echo: m{n}"
        sessions = server.call(lambda: list(server.server.sessions))
        assert len(sessions) == 20
        assert server.call(tasks) == before  # no task (nor task group) per connection
        assert not hasattr(sessions[0], "__dict__")  # slotted

        def nodelay() -> list[int]:
            return [
                s._transport.get_extra_info("socket").getsockopt(
                    socket.IPPROTO_TCP, socket.TCP_NODELAY
                )
                for s in server.server.sessions
                if s._transport is not None
            ]

        assert all(server.call(nodelay)) and len(server.call(nodelay)) == 20


@pytest.mark.parametrize("loop", LOOPS)
def test_one_timer_per_connection_rearmed_only_when_the_deadline_moves(loop: str) -> None:
    with (
        serving(loop, Echo()) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=LIMIT) as sock,
    ):
        wait_until(lambda: server.call(lambda: len(server.server.sessions) == 1), "accepted")

        def timer() -> asyncio.TimerHandle | None:
            # uvloop's handles are not subclasses of asyncio.TimerHandle, only alike.
            return cast("asyncio.TimerHandle | None", only_session(server).pump.timer.handle)

        handshake = server.call(timer)  # the core's handshake deadline
        assert handshake is not None
        server.call(lambda: only_session(server).pump.step())
        assert server.call(timer) is handshake  # same deadline: the same handle, not re-armed
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        # Answered: keep-alive waits for the next request under the idle deadline instead.
        wait_until(lambda: server.call(timer) is not handshake, "the timer moves")
        idle = server.call(timer)
        assert handshake.cancelled() and idle is not None and not idle.cancelled()
        assert idle.when() > handshake.when()


def open_and_stop_reading(port: int, text: str) -> tuple[socket.socket, WebSocketClientConnection]:
    """A diaproto.v1 WebSocket with a tiny receive window that opens stream 1 and reads no more."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(LIMIT)
    sock.connect(("127.0.0.1", port))
    client = WebSocketClientConnection(
        time.monotonic(), f"127.0.0.1:{port}", "/ws", subprotocols=(SUBPROTOCOL,)
    )
    sock.sendall(client.data_to_send(time.monotonic()))
    while not isinstance(event := client.next_event(), WebSocketAccepted):
        assert event is None
        client.receive_data(sock.recv(65536), time.monotonic())
    client.send_wire(OpenStream(1, text, "S1"), time.monotonic())
    sock.sendall(client.data_to_send(time.monotonic()))
    return sock, client


def only_session(server: ThreadedServer[Server]) -> AsyncioSession:
    (session,) = server.server.sessions
    return session


@pytest.mark.parametrize("loop", LOOPS)
def test_a_full_transport_is_counted_and_holds_back_the_core(loop: str) -> None:
    service = DiaService(fast_source())
    with serving(loop, service) as server:
        sock, _client = open_and_stop_reading(server.port, long_text(6))
        with sock:

            def held() -> tuple[bool, int, int]:
                session = only_session(server)
                transport = session._transport
                assert transport is not None
                return (
                    session._write_paused,
                    transport.get_write_buffer_size(),
                    session.conn.scheduler.buffered_bytes - session.conn.scheduler.queued_bytes(),
                )

            wait_until(lambda: server.call(held)[0], "the transport pauses writing")
            paused, in_transport, in_flight = server.call(held)
            # The core's write window and budget see exactly what the transport holds.
            assert paused and in_transport > 0 and in_flight == in_transport
            # Reading again drains the transport, and the stream runs on to its end
            # (resume_writing runs the next step each time the transport drained). The
            # kernel holds little unsent (TCP_NOTSENT_LOWAT), so the rest must be read.
            sock.settimeout(0.05)

            def finished() -> bool:
                return all(g.finished for g in service.generations.live.values())

            def read_on() -> bool:
                until = time.monotonic() + 0.5
                with contextlib.suppress(TimeoutError):
                    while time.monotonic() < until and sock.recv(65536):
                        pass
                return server.call(finished)

            wait_until(read_on, "the generation ends")
            assert not server.call(held)[0]


@pytest.mark.parametrize("loop", LOOPS)
def test_after_stop_the_handle_says_the_loop_is_gone(loop: str) -> None:
    app = Echo()
    server = start(loop, app)
    assert server.stop(timeout=15.0), "the server thread did not end"
    assert app.shut_down
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{server.port}/healthz", trust_env=False)
    with pytest.raises(RuntimeError):
        server.call(lambda: None)  # the loop is gone: say so instead of hanging


@pytest.mark.parametrize("loop", LOOPS)
def test_shutdown_drops_a_client_that_neither_reads_nor_answers(loop: str) -> None:
    # The transport is full and the close frame can never go out: after the close timeout
    # (+1 s) the adapter aborts the transport; the application still hears the end.
    service = DiaService(fast_source())
    config = ConnectionConfig(timeouts=Timeouts(close_timeout=0.5))
    server = start(loop, service, config)
    sock, _client = open_and_stop_reading(server.port, long_text(12))
    with sock:
        wait_until(
            lambda: server.call(
                lambda: any(
                    listener.paused
                    for state in service._sessions.values()
                    for _, listener in state.listeners.values()
                )
            ),
            "the stream pauses",
        )
        assert server.stop(timeout=15.0), "the server thread did not end"
        assert service._sessions == {}  # ConnectionClosed reached the application
        assert all(generation.stopped for generation in service.generations.live.values())


def test_a_peer_that_pipelines_without_end_is_no_longer_read() -> None:
    # An SSE stream is being answered; every byte after its request is held by the core,
    # which asks (wants_data) to stop reading at max_buffered_inbound: pause_reading().
    config = ConnectionConfig(limits=Limits(max_buffered_inbound=256 * 1024))
    service = DiaService(fast_source())
    offered = 64 * 1024 * 1024
    with (
        serving("asyncio", service, config) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=LIMIT) as sock,
    ):
        target = "/v1/stream?text=" + long_text(30).replace(" ", "%20")
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        wait_until(lambda: server.call(lambda: bool(service._sessions)), "the stream starts")
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        chunk = request * (65536 // len(request))
        sock.setblocking(False)
        sent = 0
        while sent < offered:
            _, writable, _ = select.select([], [sock], [], 1.0)
            if not writable:
                break  # the server stopped taking bytes (bounded wait, not a timing claim)
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                continue
        assert sent < offered // 2  # kernel buffers take some megabytes; the rest is refused

        def not_reading() -> bool:
            session = only_session(server)
            return not session.conn.wants_data and session._read_paused

        assert server.call(not_reading)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_worker_call_returns_once_the_loop_ran_it(loop: str) -> None:
    with serving(loop, Echo()) as server:
        runtime = server.server.runtime
        loop_thread = server.call(threading.get_ident)
        seen: list[int] = []
        done = threading.Event()

        def worker() -> None:
            assert threading.get_ident() != loop_thread
            runtime.call_soon_threadsafe(lambda: seen.append(threading.get_ident()))
            assert seen == [loop_thread]  # it ran, on the loop, before the call returned
            done.set()

        server.call(lambda: runtime.start_worker(worker, name="probe"))
        assert done.wait(LIMIT)


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        (["--runtime", "asyncio", "--uvloop"], "runtime asyncio+uvloop"),
        (["--runtime", "anyio"], "runtime anyio"),
    ],
)
def test_command_line_serves_and_exits_on_sigint(options: list[str], shown: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "diaproto.apps.cli", "serve", *options]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        deadline = time.monotonic() + 20.0
        while True:
            try:
                health = httpx.get(url, trust_env=False, timeout=LIMIT)
                break
            except httpx.ConnectError:
                assert process.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.05)
        assert health.status_code == 200 and health.text == "ok\n"
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=15.0)
        text = output.decode(errors="replace")
        assert process.returncode == 0, text
        assert shown in text and "diaproto: stopped" in text
        assert "Traceback" not in text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
