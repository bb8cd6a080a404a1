"""The anyio adapter on asyncio and on trio, driven by real clients over 127.0.0.1.

- the service round-trips a stream over WebSocket;
- graceful shutdown: a connected WebSocket with a stream in progress is closed with 1001 and
  the server thread ends (nothing hangs);
- an application that raises in handle_event loses only that connection (1011); the server
  keeps serving the others.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator

import httpx
import pytest
from server_fixture import RunningApp, running_app, running_server
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from diaproto.app import Session
from diaproto.apps.serve.sources import SyntheticSource
from diaproto.events import ConnectionClosed as CoreConnectionClosed
from diaproto.events import Event, Request, WebSocketMessage, WebSocketRequest

SUBPROTOCOL = Subprotocol("diaproto.v1")
POLL_LIMIT = 10.0
BACKENDS = ["asyncio", "trio"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    value = request.param
    assert isinstance(value, str)
    return value


def ws_connect(url: str, *subprotocols: str) -> ClientConnection:
    return connect(
        url,
        subprotocols=[Subprotocol(p) for p in subprotocols] or None,
        proxy=None,
        open_timeout=5,
        close_timeout=5,
    )


def test_service_round_trip(backend: str) -> None:
    with running_server(backend=backend) as server, ws_connect(server.ws_url, SUBPROTOCOL) as ws:
        ws.send(json.dumps({"type": "open", "stream": 9, "text": "Round trip."}))
        ack = json.loads(ws.recv(timeout=POLL_LIMIT))
        assert ack["type"] == "open" and ack["stream"] == 9
        seqs: list[int] = []
        for _ in range(10_000):
            message = ws.recv(timeout=POLL_LIMIT)
            if isinstance(message, str):
                end = json.loads(message)
                assert end == {"type": "end", "stream": 9, "seq": len(seqs)}
                break
            offset = 0
            while offset < len(message):
                stream, seq, length = struct.unpack_from("!III", message, offset)
                assert stream == 9
                seqs.append(seq)
                offset += 12 + length
        assert seqs == list(range(1, len(seqs) + 1)) and seqs
        health = httpx.get(server.url + "/healthz", trust_env=False, timeout=POLL_LIMIT)
        assert health.status_code == 200


def test_graceful_shutdown_closes_websockets_with_1001(backend: str) -> None:
    # Paced at Dia's speed: the stream is still in progress when the server stops.
    source = SyntheticSource(real_time_factor=0.4, first_chunk_latency=0.01)
    with running_server(source, backend=backend) as server:
        with ws_connect(server.ws_url, SUBPROTOCOL) as ws:
            text = " ".join(f"Sentence {n} takes a while to say out loud." for n in range(30))
            ws.send(json.dumps({"type": "open", "stream": 1, "text": text}))
            assert json.loads(ws.recv(timeout=POLL_LIMIT))["type"] == "open"
            first = ws.recv(timeout=POLL_LIMIT)
            assert isinstance(first, bytes)  # audio is flowing
            (generation,) = server.call(lambda: list(server.service.generations.live.values()))
            assert generation.running

            assert server.stop(timeout=POLL_LIMIT), "the server thread did not end"
            with pytest.raises(ConnectionClosed):
                for _ in range(100_000):
                    ws.recv(timeout=POLL_LIMIT)
            assert ws.close_code == 1001
            assert generation.stopped
            for _ in range(500):  # the worker thread ends at its next chunk or gate check
                if not generation.running:
                    break
                time.sleep(0.02)
            assert not generation.running
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/healthz", trust_env=False, timeout=POLL_LIMIT)


class Echo:
    """A tiny application: plain WebSocket (no subprotocol) that echoes text messages, and
    raises on "boom". HTTP requests get 200 "ok"."""

    def __init__(self) -> None:
        self.closed = 0
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
            case CoreConnectionClosed():
                self.closed += 1
            case _:
                pass

    def shutdown(self) -> None:
        self.shut_down = True


@pytest.fixture
def echo_server(backend: str) -> Iterator[tuple[RunningApp, Echo]]:
    app = Echo()
    with running_app(app, backend=backend) as running:
        yield running, app
    assert app.shut_down


def test_application_exception_closes_only_that_connection(
    echo_server: tuple[RunningApp, Echo],
) -> None:
    server, _app = echo_server
    ws_url = f"ws://127.0.0.1:{server.port}/echo"
    with ws_connect(ws_url) as healthy, ws_connect(ws_url) as doomed:
        healthy.send("one")
        assert healthy.recv(timeout=POLL_LIMIT) == "echo: one"
        doomed.send("boom")
        with pytest.raises(ConnectionClosed):
            doomed.recv(timeout=POLL_LIMIT)
        assert doomed.close_code == 1011
        # The other connection, and new ones, are served as before.
        healthy.send("two")
        assert healthy.recv(timeout=POLL_LIMIT) == "echo: two"
        with ws_connect(ws_url) as fresh:
            fresh.send("three")
            assert fresh.recv(timeout=POLL_LIMIT) == "echo: three"
        response = httpx.get(server.url + "/", trust_env=False, timeout=POLL_LIMIT)
        assert response.status_code == 200 and response.text == "ok"
    assert server.thread.is_alive()
