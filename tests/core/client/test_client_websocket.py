"""The WebSocket client connection against a server connection: rejections, its handshake
timeout, keepalive, close and the messages it refuses."""

from __future__ import annotations

import pytest
from core_support import QUIET, client_frame, closed_events, drain

from diaproto.client import ClientState, WebSocketClientConnection
from diaproto.config import ConnectionConfig, Limits, Timeouts
from diaproto.errors import LocalProtocolError
from diaproto.events import ConnectionClosed, Rejected, RemoteError
from diaproto.server import ServerConnection
from diaproto.testing import FakeClock, Loopback, websocket_pair
from diaproto.wire import CancelStream
from diaproto.wsframes import encode_frame

# --- client side ---------------------------------------------------------------------------


def test_client_rejected_with_body() -> None:
    clock = FakeClock()
    server = ServerConnection(clock.now)
    client = WebSocketClientConnection(clock.now, "localhost", subprotocols=("diaproto.v1",))
    loop = Loopback(server, client, clock)
    loop.pump()
    loop.take_server_events()
    server.respond(403, (("content-type", "text/plain"),), b"forbidden", now=clock.now)
    loop.pump()
    events = loop.take_client_events()
    assert len(events) == 2
    rejected, closed = events
    assert isinstance(rejected, Rejected)
    assert (rejected.status, rejected.body) == (403, b"forbidden")
    assert ("content-type", "text/plain") in rejected.headers
    assert closed == ConnectionClosed(None, "rejected with 403")
    assert client.finished


def test_client_rejected_without_body() -> None:
    client = WebSocketClientConnection(0.0, "localhost")
    client.data_to_send(0.0)
    client.receive_data(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", 0.0)
    events = drain(client)
    assert events[0] == Rejected(404, (("content-length", "0"),), b"")
    assert events[1] == ConnectionClosed(None, "rejected with 404")


def test_client_rejected_with_informational_status() -> None:
    client = WebSocketClientConnection(0.0, "localhost")
    client.receive_data(b"HTTP/1.1 100 Continue\r\n\r\n", 0.0)
    events = drain(client)
    assert isinstance(events[0], Rejected)
    assert events[0].status == 100
    assert client.state is ClientState.CLOSED


def test_client_rejected_body_in_pieces() -> None:
    client = WebSocketClientConnection(0.0, "localhost")
    client.receive_data(b"HTTP/1.1 500 Oops\r\ncontent-length: 6\r\n\r\nabc", 0.0)
    assert drain(client) == []
    client.receive_data(b"def", 0.0)
    events = drain(client)
    assert isinstance(events[0], Rejected)
    assert events[0].body == b"abcdef"


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
        b"sec-websocket-accept: wrong\r\n\r\n",
    ],
    ids=["not-http", "bad-accept"],
)
def test_client_invalid_handshake_answer_is_remote_error(answer: bytes) -> None:
    client = WebSocketClientConnection(0.0, "localhost")
    client.receive_data(answer, 0.0)  # must not raise
    events = drain(client)
    assert len(events) == 2
    assert isinstance(events[0], RemoteError)
    assert events[0].fatal
    assert isinstance(events[1], ConnectionClosed)
    assert client.finished
    client.receive_data(b"more", 0.0)
    assert drain(client) == []


def test_client_eof_before_answer() -> None:
    client = WebSocketClientConnection(0.0, "localhost")
    client.receive_eof(0.0)  # must not raise
    events = drain(client)
    assert isinstance(events[-1], ConnectionClosed)
    assert client.finished


def test_client_handshake_timeout() -> None:
    client = WebSocketClientConnection(0.0, "localhost")
    assert client.next_deadline() == 10.0
    client.handle_timer(9.99)
    assert drain(client) == []
    client.handle_timer(10.0)
    events = drain(client)
    assert isinstance(events[0], RemoteError)
    assert events[1] == ConnectionClosed(None, "no handshake answer in time")
    assert client.next_deadline() is None
    client.handle_timer(100.0)
    assert drain(client) == []


def test_client_without_handshake_timeout() -> None:
    config = ConnectionConfig(timeouts=Timeouts(handshake=None))
    client = WebSocketClientConnection(0.0, "localhost", config=config)
    assert client.next_deadline() is None
    client.handle_timer(1e9)
    assert client.state is ClientState.CONNECTING
    client.close(1e9)
    assert drain(client) == [ConnectionClosed(None, "closed before the handshake completed")]
    client.close(1e9)  # already closed
    assert drain(client) == []


def test_client_keepalive_ping_answered() -> None:
    loop = websocket_pair(server_config=QUIET)
    loop.take_client_events()
    assert loop.client.next_deadline() == 20.0
    loop.advance(20.0)
    assert loop.client.next_deadline() == 40.0
    assert not loop.client.finished


def test_client_ping_timeout_then_close_timeout() -> None:
    loop = websocket_pair(server_config=QUIET)
    client = loop.client
    assert isinstance(client, WebSocketClientConnection)
    loop.take_client_events()
    client.handle_timer(20.0)
    ping = client.data_to_send(20.0)
    assert ping[0] == 0x89  # a final ping frame
    assert client.next_deadline() == 40.0
    client.handle_timer(40.0)
    assert client.state is ClientState.CLOSING
    close = client.data_to_send(40.0)
    assert close[0] == 0x88
    assert client.next_deadline() == 45.0
    client.handle_timer(45.0)
    assert drain(client) == [ConnectionClosed(1006, "close handshake timed out")]
    loop.server.receive_data(ping + close, 45.0)
    server_events = drain(loop.server)
    assert closed_events(server_events) == [ConnectionClosed(1011, "keepalive ping timeout")]


def test_client_idle_timeout() -> None:
    config = ConnectionConfig(timeouts=Timeouts(ping_interval=None, idle=30.0))
    loop = websocket_pair(server_config=QUIET, client_config=config)
    loop.advance(30.0)
    assert closed_events(loop.take_client_events()) == [ConnectionClosed(1000, "idle timeout")]
    assert loop.client.finished


def test_client_answers_server_close_and_ping() -> None:
    loop = websocket_pair(offer=(), accept=None)
    loop.take_client_events()
    client = loop.client
    assert isinstance(client, WebSocketClientConnection)
    client.receive_data(bytes((0x89, 2)) + b"hi", 0.0)
    assert drain(client) == []
    pong = client.data_to_send(0.0)
    loop.server.receive_data(pong, 0.0)
    assert drain(loop.server) == []
    loop.server.close(0.0, 1001)
    loop.pump()
    assert closed_events(loop.take_client_events()) == [ConnectionClosed(1001, "")]
    assert loop.server.finished


def test_client_refuses_oversize_message() -> None:
    config = ConnectionConfig(limits=Limits(max_message_bytes=4))
    loop = websocket_pair(offer=(), accept=None, client_config=config)
    loop.take_client_events()
    loop.server.open_stream(1, 0.0)
    loop.server.send(1, b"12345", 0.0)
    loop.pump()
    events = loop.take_client_events()
    assert [e.code for e in closed_events(events)] == [1009]
    assert [e.code for e in closed_events(loop.take_server_events())] == [1009]


def test_client_refuses_masked_server_frame() -> None:
    loop = websocket_pair()
    loop.take_client_events()
    loop.client.receive_data(client_frame(0x1, b"x"), 0.0)
    events = drain(loop.client)
    assert isinstance(events[0], RemoteError)
    assert [e.code for e in closed_events(events)] == [1002]


def test_client_garbage_while_closing_is_error_without_close_frame() -> None:
    loop = websocket_pair()
    client = loop.client
    assert isinstance(client, WebSocketClientConnection)
    client.close(0.0)
    client.data_to_send(0.0)
    client.receive_data(bytes((0x83, 0)), 0.0)
    events = drain(client)
    assert [e.code for e in closed_events(events)] == [1002]
    assert client.data_to_send(0.0) == b""


def test_client_ping_during_closing_is_not_answered() -> None:
    loop = websocket_pair()
    client = loop.client
    assert isinstance(client, WebSocketClientConnection)
    client.close(0.0)
    client.data_to_send(0.0)
    client.receive_data(bytes((0x89, 0)), 0.0)
    assert drain(client) == []
    assert client.data_to_send(0.0) == b""
    client.close(0.0)  # already closing
    assert client.state is ClientState.CLOSING


def test_client_wire_decoding_errors_are_not_fatal() -> None:
    loop = websocket_pair()
    loop.take_client_events()
    client = loop.client
    assert isinstance(client, WebSocketClientConnection)
    client.receive_data(encode_frame(0x1, b'{"type":"what"}'), 0.0)
    client.receive_data(encode_frame(0x2, b"\x00\x00"), 0.0)
    events = drain(client)
    assert len(events) == 2
    assert all(isinstance(e, RemoteError) and not e.fatal for e in events)
    assert client.state is ClientState.OPEN


def test_client_eof_when_open() -> None:
    loop = websocket_pair()
    loop.take_client_events()
    loop.client.receive_eof(0.0)
    loop.client.receive_eof(0.0)
    assert drain(loop.client) == [ConnectionClosed(1006, "")]
    loop.client.receive_eof(0.0)
    loop.client.receive_data(b"x", 0.0)
    assert loop.client.next_deadline() is None
    loop.client.handle_timer(1e9)
    assert loop.client.next_event() is None


def test_client_send_before_open_is_local_error() -> None:
    client = WebSocketClientConnection(0.0, "localhost")
    with pytest.raises(LocalProtocolError):
        client.send_message("early", 0.0)
    with pytest.raises(LocalProtocolError):
        client.send_wire(CancelStream(1), 0.0)


def test_client_data_after_unread_eof_is_ignored() -> None:
    loop = websocket_pair()
    loop.take_client_events()
    client = loop.client
    client.receive_eof(0.0)
    client.receive_data(encode_frame(0x1, b'{"type":"open","stream":1}'), 0.0)  # must not raise
    assert drain(client) == [ConnectionClosed(1006, "")]
