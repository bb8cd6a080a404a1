"""The raw-socket adapter (socket + selectors), driven by real clients over 127.0.0.1.

What every runtime must do (streams, shutdown with 1001, backpressure, timeouts, descriptor
leaks, workers, the command line) is in the conformance suite of tests/adapters; this file
keeps what is particular to this adapter:

- 50 SSE streams at once on the one selector loop;
- the timer heap: a connection's handshake deadline closes it; call_later runs, or not once
  cancelled.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import cast

import httpx
from conformance_support import fast_source
from diaproto.adapters._threaded import ThreadedServer
from diaproto.adapters.sockets import Server
from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.limits import ServiceLimits
from support import POLL_LIMIT, Echo, serving, wait_until

from diaproto.config import ConnectionConfig, Timeouts
from diaproto.runtime import Application


@contextmanager
def serving_sockets(
    app: Application, config: ConnectionConfig | None = None
) -> Iterator[ThreadedServer[Server]]:
    """``support.serving`` on the sockets adapter, with its server object at hand."""
    with serving("sockets", app, config) as handle:
        assert isinstance(handle, ThreadedServer)
        yield cast("ThreadedServer[Server]", handle)


def sse_stream(port: int, text: str) -> list[str]:
    """The SSE event names of one /v1/stream response, read to its end."""
    events: list[str] = []
    url = f"http://127.0.0.1:{port}/v1/stream"
    headers = {"accept": "text/event-stream"}
    with (
        httpx.Client(trust_env=False, timeout=POLL_LIMIT) as client,
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
    with serving_sockets(service) as server, ThreadPoolExecutor(50) as pool:
        texts = [f"Hi {n}." for n in range(50)]
        results = list(pool.map(lambda text: sse_stream(server.port, text), texts))
        assert all(events and events[-1] == "end" for events in results)
        assert server.call(lambda: len(server.server.sessions)) <= 50


def test_the_timer_heap_drives_the_cores_deadlines() -> None:
    # A silent connection meets the handshake timeout; only the loop's timers can end it.
    config = ConnectionConfig(timeouts=Timeouts(handshake=0.2))
    with (
        serving_sockets(Echo(), config) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=POLL_LIMIT) as sock,
    ):
        assert sock.recv(1) == b""  # closed by the server
        runtime, fired = server.server.runtime, list[bool]()

        def arm() -> None:  # on the loop: the cancelled timer was due first
            runtime.call_later(0.01, lambda: fired.append(False)).cancel()
            runtime.call_later(0.05, lambda: fired.append(True))

        server.call(arm)
        wait_until(lambda: server.call(lambda: bool(fired)), "call_later ran")
        assert server.call(lambda: fired) == [True]
