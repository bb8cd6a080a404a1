"""The anyio adapter on asyncio and on trio, driven by real clients over 127.0.0.1.

Streams, shutdown with 1001 and the rest of what every runtime must do are in
tests/conformance (which runs asyncio and trio); this file keeps:

- an application that raises in handle_event loses only that connection (1011); the server
  keeps serving the others, and its shutdown() is called when the server stops.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from server_fixture import RunningApp, running_app
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from diaproto.app import Session
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
