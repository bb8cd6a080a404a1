"""The tornado adapter (TCPServer + IOStream), driven by real clients over 127.0.0.1.

What every runtime must do (streams, shutdown with 1001, backpressure, timeouts) is in
tests/adapters; this file keeps what is particular to this adapter:

- an SSE stream runs to the end and the same connection serves the next request;
- an application that raises loses only that connection (1011);
- after ``stop()`` the handle says the loop is gone instead of hanging;
- shutdown drops, after the close timeout, a client that neither reads nor answers;
- inbound flow control (what tornado's own WebSocket code lacks, tornado #2341): a peer that
  pipelines without end is no longer read once the core holds its bound;
- the runtime's contract: a worker's ``call_soon_threadsafe`` returns once the loop ran it;
- ``diaproto serve --runtime tornado`` serves /healthz and exits 0 on SIGINT.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from diaproto.adapters._threaded import ThreadedServer
from diaproto.adapters.tornado import Server, start_in_thread
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


def long_text(sentences: int) -> str:
    return " ".join(
        f"Sentence number {n} goes on for quite a while indeed." for n in range(sentences)
    )


def fast_source() -> Source:
    return SyntheticSource(real_time_factor=0.02, first_chunk_latency=0.005)


@contextmanager
def serving(
    app: Application, config: ConnectionConfig | None = None
) -> Iterator[ThreadedServer[Server]]:
    handle = start_in_thread(app, config=config)
    try:
        yield handle
    finally:
        assert handle.stop(timeout=15.0), "the server thread did not end"


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LIMIT
    while not condition():
        assert time.monotonic() < deadline, f"not within {LIMIT} s: {what}"
        time.sleep(0.01)


def ws_connect(port: int, path: str = "/ws", *subprotocols: str) -> ClientConnection:
    return connect(
        f"ws://127.0.0.1:{port}{path}",
        subprotocols=[Subprotocol(p) for p in subprotocols] or None,
        proxy=None,
        open_timeout=5,
        close_timeout=5,
    )


def test_sse_stream_to_the_end() -> None:
    with (
        serving(DiaService(fast_source())) as server,
        httpx.Client(trust_env=False, timeout=LIMIT) as client,
    ):
        url = f"http://127.0.0.1:{server.port}/v1/stream"
        headers = {"accept": "text/event-stream"}
        ids: list[int] = []
        names: list[str] = []
        with client.stream("GET", url, params={"text": "Hi."}, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("event: "):
                    names.append(line.removeprefix("event: "))
                elif line.startswith("id: "):
                    ids.append(int(line.removeprefix("id: ")))
        assert names[-1] == "end" and names.count("data") == len(names) - 1 > 0
        assert ids == list(range(1, len(ids) + 1))
        # The same connection serves the next request (keep-alive after the stream ended).
        health = client.get(f"http://127.0.0.1:{server.port}/healthz")
        assert health.status_code == 200 and health.text == "ok\n"


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


def test_after_stop_the_handle_says_the_loop_is_gone() -> None:
    # Shutdown itself (1001 to a WebSocket mid-stream) is in tests/adapters; this is the
    # handle's side, which each adapter implements on its own loop.
    app = Echo()
    server = start_in_thread(app)
    assert server.stop(timeout=15.0), "the server thread did not end"
    assert app.shut_down
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{server.port}/healthz", trust_env=False)
    with pytest.raises(RuntimeError):
        server.call(lambda: None)  # the loop is gone: say so instead of hanging


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

    # (Draining megabytes through a 4 KiB window is too slow for a bounded test: the
    # kernel reports the socket writable only after a third of its buffer frees.)


def test_shutdown_drops_a_client_that_neither_reads_nor_answers() -> None:
    # A write is stuck in flight and the close frame can never go out: after the close
    # timeout (+1 s) the adapter drops the transport; the application still hears the end.
    service = DiaService(fast_source())
    config = ConnectionConfig(timeouts=Timeouts(close_timeout=0.5))
    server = start_in_thread(service, config=config)
    sock, _client = open_and_stop_reading(server.port, long_text(30))
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
    # which asks (wants_data) to stop reading at max_buffered_inbound.
    config = ConnectionConfig(limits=Limits(max_buffered_inbound=256 * 1024))
    service = DiaService(fast_source())
    offered = 64 * 1024 * 1024
    with (
        serving(service, config) as server,
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
        # Kernel buffers on both sides take some megabytes; the rest is refused.
        assert sent < offered // 2

        def not_reading() -> bool:
            (session,) = service._sessions
            return not session.conn.wants_data

        assert server.call(not_reading)


def test_a_worker_call_returns_once_the_loop_ran_it() -> None:
    with serving(Echo()) as server:
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


def test_command_line_serves_and_exits_on_sigint() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "diaproto.apps.cli", "serve", "--runtime", "tornado"]
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
        assert "runtime tornado" in text and "diaproto: stopped" in text
        assert "Traceback" not in text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
