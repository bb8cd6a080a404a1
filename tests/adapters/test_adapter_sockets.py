"""The raw-socket adapter (socket + selectors), driven by real clients over 127.0.0.1.

What every runtime must do (streams, shutdown with 1001, backpressure, timeouts, descriptor
leaks) is in tests/adapters; this file keeps what is particular to this adapter:

- 50 SSE streams at once on the one selector loop;
- an application that raises loses only that connection (1011);
- after ``stop()`` the handle says the loop is gone instead of hanging;
- the timer heap: a connection's handshake deadline closes it; call_later runs, or not once
  cancelled;
- the runtime's contract: a worker's ``call_soon_threadsafe`` returns once the loop ran it;
- ``diaproto serve --runtime sockets`` serves /healthz and exits 0 on SIGINT.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from diaproto.adapters._threaded import ThreadedServer
from diaproto.adapters.sockets import Server, start_in_thread
from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.limits import ServiceLimits
from diaproto.apps.serve.sources import Source, SyntheticSource
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from diaproto.config import ConnectionConfig, Timeouts
from diaproto.events import Event, Request, WebSocketMessage, WebSocketRequest
from diaproto.runtime import Application, Session

SUBPROTOCOL = Subprotocol("diaproto.v1")
LIMIT = 10.0  # bound on every wait (never a timing assertion)
LONG_TEXT = " ".join(f"Sentence number {n} goes on for quite a while indeed." for n in range(60))


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


def sse_stream(port: int, text: str) -> list[str]:
    """The SSE event names of one /v1/stream response, read to its end."""
    events: list[str] = []
    url = f"http://127.0.0.1:{port}/v1/stream"
    headers = {"accept": "text/event-stream"}
    with (
        httpx.Client(trust_env=False, timeout=LIMIT) as client,
        client.stream("GET", url, params={"text": text}, headers=headers) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
    return events


def test_fifty_sse_streams_at_once() -> None:
    # Fifty streams from one address: past the default per-peer bound of 16.
    service = DiaService(fast_source(), limits=ServiceLimits(max_generations_per_peer=50))
    with serving(service) as server, ThreadPoolExecutor(50) as pool:
        texts = [f"Hi {n}." for n in range(50)]
        results = list(pool.map(lambda text: sse_stream(server.port, text), texts))
        assert all(events and events[-1] == "end" for events in results)
        assert server.call(lambda: len(server.server.sessions)) <= 50


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


def test_the_timer_heap_drives_the_cores_deadlines() -> None:
    # A silent connection meets the handshake timeout; only the loop's timers can end it.
    config = ConnectionConfig(timeouts=Timeouts(handshake=0.2))
    with (
        serving(Echo(), config) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=LIMIT) as sock,
    ):
        assert sock.recv(1) == b""  # closed by the server
        runtime, fired = server.server.runtime, list[bool]()

        def arm() -> None:  # on the loop: the cancelled timer was due first
            runtime.call_later(0.01, lambda: fired.append(False)).cancel()
            runtime.call_later(0.05, lambda: fired.append(True))

        server.call(arm)
        wait_until(lambda: server.call(lambda: bool(fired)), "call_later ran")
        assert server.call(lambda: fired) == [True]


def test_a_worker_call_returns_once_the_loop_ran_it() -> None:
    with serving(Echo()) as server:
        runtime = server.server.runtime
        loop_thread = server.call(threading.get_ident)
        seen: list[int] = []
        done = threading.Event()

        def worker() -> None:
            runtime.call_soon_threadsafe(lambda: seen.append(threading.get_ident()))
            assert seen == [loop_thread]  # it ran, on the loop, before the call returned
            done.set()

        server.call(lambda: runtime.start_worker(worker, name="probe"))
        assert done.wait(LIMIT)


def test_command_line_serves_and_exits_on_sigint() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "diaproto.apps.cli", "serve", "--runtime", "sockets"]
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
        assert health.status_code == 200
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=15.0)
        text = output.decode(errors="replace")
        assert process.returncode == 0, text
        assert "runtime sockets" in text and "diaproto: stopped" in text
        assert "Traceback" not in text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
