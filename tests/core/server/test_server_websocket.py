"""The WebSocket session of a server connection, end to end against a client: the upgrade
request, subprotocol negotiation, raw mode, and the limits and framing violations that close
the connection."""

from __future__ import annotations

import pytest
from core_support import QUIET, client_frame, closed_events, drain
from server_websocket_support import RawClient, state_of
from wsproto import ConnectionType, WSConnection
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.events import Request as WsRequest

from diaproto.client import ClientState, WebSocketClientConnection
from diaproto.config import ConnectionConfig, Limits
from diaproto.errors import LocalProtocolError
from diaproto.events import (
    Event,
    RemoteError,
    StreamFinished,
    WebSocketAccepted,
    WebSocketMessage,
    WebSocketRequest,
)
from diaproto.server import ServerConnection, State
from diaproto.testing import FakeClock, Loopback, websocket_pair
from diaproto.wire import CancelStream, StreamOpened

# --- helpers -------------------------------------------------------------------------------


def remote_errors(events: list[Event]) -> list[RemoteError]:
    return [e for e in events if isinstance(e, RemoteError)]


# --- subprotocol negotiation ---------------------------------------------------------------


def test_accepted_subprotocol_is_seen_by_client() -> None:
    loop = websocket_pair(offer=("mcp", "diaproto.v1"), accept="mcp")
    assert loop.take_client_events() == [WebSocketAccepted("mcp")]
    assert loop.server.subprotocol == "mcp"
    assert isinstance(loop.client, WebSocketClientConnection)
    assert loop.client.subprotocol == "mcp"
    assert loop.client.state is ClientState.OPEN


def test_an_idle_websocket_holds_no_stream_until_a_control_message() -> None:
    loop = websocket_pair()
    server = loop.server
    assert not hasattr(server, "__dict__")  # slotted: no per-connection attribute dict
    assert server.scheduler.stream_ids == []  # the control stream opens on first use
    server.open_stream(1, loop.clock.now)  # diaproto.v1 says "open" on the control stream
    loop.advance(0.01)
    assert any(isinstance(e, StreamOpened) for e in loop.take_client_events())
    assert server.scheduler.stream_ids == [1, -1]


def test_no_subprotocol_when_none_accepted() -> None:
    loop = websocket_pair(offer=("diaproto.v1",), accept=None)
    assert loop.take_client_events() == [WebSocketAccepted(None)]
    assert loop.server.subprotocol is None


def test_no_subprotocol_when_none_offered() -> None:
    clock = FakeClock()
    server = ServerConnection(clock.now)
    client = WebSocketClientConnection(clock.now, "localhost", "/ws")
    loop = Loopback(server, client, clock)
    loop.pump()
    (request,) = loop.take_server_events()
    assert isinstance(request, WebSocketRequest)
    assert request.subprotocols == ()
    assert request.target == "/ws"
    server.accept_websocket(headers=(("x-extra", "1"),), now=clock.now)
    loop.pump()
    assert loop.take_client_events() == [WebSocketAccepted(None, (("x-extra", "1"),))]


def test_accepting_a_subprotocol_not_offered_is_local_error() -> None:
    clock = FakeClock()
    server = ServerConnection(clock.now)
    client = WebSocketClientConnection(clock.now, "localhost", subprotocols=("a", "b"))
    loop = Loopback(server, client, clock)
    loop.pump()
    (request,) = loop.take_server_events()
    assert isinstance(request, WebSocketRequest)
    assert request.subprotocols == ("a", "b")
    with pytest.raises(LocalProtocolError, match="did not offer"):
        server.accept_websocket("c", now=clock.now)
    assert state_of(server) is State.REQUEST_RECEIVED  # still the application's to answer
    server.accept_websocket("b", now=clock.now)
    loop.pump()
    assert loop.take_client_events() == [WebSocketAccepted("b")]


# --- raw mode ------------------------------------------------------------------------------


def test_raw_mode_messages_both_ways() -> None:
    loop = websocket_pair(offer=(), accept=None, server_config=QUIET, client_config=QUIET)
    loop.take_client_events()
    now = loop.clock.now
    loop.server.open_stream(1, now)
    assert loop.server.send(1, b"\x00\x01binary", now) == 1
    assert loop.server.send(1, "text \u00e9", now) == 2
    loop.advance(0.01)
    assert loop.take_client_events() == [
        WebSocketMessage(b"\x00\x01binary"),
        WebSocketMessage("text \u00e9"),
    ]
    assert isinstance(loop.client, WebSocketClientConnection)
    loop.client.send_message("hi", loop.clock.now)
    loop.client.send_message(b"\xff", loop.clock.now)
    loop.pump()
    assert loop.take_server_events() == [WebSocketMessage("hi"), WebSocketMessage(b"\xff")]


def test_raw_mode_frames_on_the_wire() -> None:
    raw = RawClient(FakeClock(), offer=(), accept=None)
    raw.server.open_stream(3, 0.0)
    raw.server.send(3, b"ab", 0.0)
    raw.server.send(3, "cd", 0.0)
    received = raw.read()
    binary, text = received
    assert isinstance(binary, BytesMessage)
    assert binary.data == b"ab"
    assert isinstance(text, TextMessage)
    assert text.data == "cd"
    raw.send(TextMessage(data="x"))
    raw.send(BytesMessage(data=b"y"))
    assert raw.events() == [WebSocketMessage("x"), WebSocketMessage(b"y")]


def test_raw_mode_has_no_open_message() -> None:
    raw = RawClient(FakeClock(), offer=(), accept=None)
    raw.server.open_stream(1, 0.0)
    raw.server.end_stream(1, 0.0)
    assert raw.read() == []
    assert [type(e) for e in raw.events()] == [StreamFinished]


# --- limits and framing violations ---------------------------------------------------------


def test_message_too_big_closes_1009() -> None:
    config = ConnectionConfig(limits=Limits(max_message_bytes=100))
    loop = websocket_pair(offer=(), accept=None, server_config=config)
    loop.take_client_events()
    assert isinstance(loop.client, WebSocketClientConnection)
    loop.client.send_message("x" * 100, 0.0)
    loop.pump()
    assert loop.take_server_events() == [WebSocketMessage("x" * 100)]
    loop.client.send_message("x" * 101, 0.0)
    loop.pump()
    events = loop.take_server_events()
    (error,) = remote_errors(events)
    assert error.fatal
    assert error.error.close_code == 1009
    assert [e.code for e in closed_events(events)] == [1009]
    assert [e.code for e in closed_events(loop.take_client_events())] == [1009]


def test_fragmented_message_over_the_limit_closes_1009() -> None:
    raw = RawClient(
        FakeClock(),
        offer=(),
        accept=None,
        config=ConnectionConfig(limits=Limits(max_message_bytes=10)),
    )
    raw.send(BytesMessage(data=b"x" * 6, message_finished=False))
    assert raw.events() == []
    raw.send(BytesMessage(data=b"x" * 6, message_finished=True))
    events = raw.events()
    assert [e.code for e in closed_events(events)] == [1009]
    (close,) = raw.read()
    assert isinstance(close, CloseConnection)
    assert close.code == 1009


def test_invalid_utf8_closes_1007() -> None:
    raw = RawClient(FakeClock(), offer=(), accept=None)
    raw.send_raw(client_frame(0x1, b"\xff\xfe"))
    events = raw.events()
    (error,) = remote_errors(events)
    assert error.error.close_code == 1007
    assert [e.code for e in closed_events(events)] == [1007]
    (close,) = raw.read()
    assert isinstance(close, CloseConnection)
    assert close.code == 1007
    assert raw.server.finished


@pytest.mark.parametrize(
    "frame",
    [
        client_frame(0x1, b"hi", masked=False),  # a client must mask
        client_frame(0x3, b""),  # reserved opcode
        client_frame(0x1, b"hi", rsv=0x40),  # RSV1 without an extension
        client_frame(0x9, b"x", fin=False),  # fragmented control frame
        client_frame(0x0, b"x"),  # continuation with nothing to continue
    ],
    ids=["unmasked", "bad-opcode", "rsv1", "fragmented-ping", "orphan-continuation"],
)
def test_framing_violation_closes_1002(frame: bytes) -> None:
    raw = RawClient(FakeClock(), offer=(), accept=None)
    raw.send_raw(frame)
    events = raw.events()
    assert len(remote_errors(events)) == 1
    assert [e.code for e in closed_events(events)] == [1002]
    (close,) = raw.read()
    assert isinstance(close, CloseConnection)
    assert close.code == 1002
    raw.send_raw(b"more garbage")  # nothing is read after the close
    assert raw.events() == []


def test_fragmented_messages_are_reassembled() -> None:
    raw = RawClient(FakeClock(), offer=(), accept=None)
    raw.send(TextMessage(data="hel", message_finished=False))
    raw.send(Ping(payload=b"between"))  # control frames may come between fragments
    raw.send(TextMessage(data="lo", message_finished=True))
    raw.send(BytesMessage(data=b"\x01", message_finished=False))
    raw.send(BytesMessage(data=b"\x02", message_finished=False))
    raw.send(BytesMessage(data=b"\x03", message_finished=True))
    assert raw.events() == [WebSocketMessage("hello"), WebSocketMessage(b"\x01\x02\x03")]
    assert raw.read() == [Pong(payload=b"between")]


def test_fragmented_wire_control_message() -> None:
    raw = RawClient(FakeClock())
    raw.send(TextMessage(data='{"type":"can', message_finished=False))
    raw.send(TextMessage(data='cel","stream":9}', message_finished=True))
    assert raw.events() == [CancelStream(9)]


def test_ping_is_answered_with_pong() -> None:
    raw = RawClient(FakeClock())
    raw.send(Ping(payload=b"are you there"))
    assert raw.events() == []
    assert raw.read() == [Pong(payload=b"are you there")]


def test_pong_needs_no_answer() -> None:
    raw = RawClient(FakeClock())
    raw.send(Pong(payload=b"unsolicited"))
    assert raw.events() == []
    assert raw.read() == []


# --- the upgrade request -------------------------------------------------------------------

_KEY_HEADER = "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (
            "POST / HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            f"sec-websocket-version: 13\r\n{_KEY_HEADER}content-length: 0\r\n\r\n",
            400,
        ),
        (
            "GET / HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: keep-alive\r\n"
            f"sec-websocket-version: 13\r\n{_KEY_HEADER}\r\n",
            400,
        ),
        (
            "GET / HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            f"sec-websocket-version: 8\r\n{_KEY_HEADER}\r\n",
            426,
        ),
        (
            "GET / HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            "sec-websocket-version: 13\r\nsec-websocket-key: c2hvcnQ=\r\n\r\n",
            400,
        ),
        (
            "GET / HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            "sec-websocket-version: 13\r\nsec-websocket-key: !!not base64!!\r\n\r\n",
            400,
        ),
        (
            "GET / HTTP/1.1\r\nhost: h\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            "sec-websocket-version: 13\r\n\r\n",
            400,
        ),
    ],
    ids=["post", "no-connection-upgrade", "version-8", "short-key", "bad-base64", "no-key"],
)
def test_invalid_upgrade_is_refused(request_head: str, status: int) -> None:
    server = ServerConnection(0.0)
    server.receive_data(request_head.encode(), 0.0)
    events = drain(server)
    (error,) = remote_errors(events)
    assert error.fatal
    assert error.error.http_status == status
    answer = server.data_to_send(0.0)
    assert answer.startswith(b"HTTP/1.1 %d " % status)
    assert (b"sec-websocket-version: 13" in answer) == (status == 426)
    assert server.finished


def test_upgrade_with_frames_in_the_same_packet() -> None:
    """Frames sent right behind the upgrade request are kept for the WebSocket."""
    ws = WSConnection(ConnectionType.CLIENT)
    request = ws.send(WsRequest(host="h", target="/", subprotocols=[]))
    server = ServerConnection(0.0)
    server.receive_data(request + client_frame(0x1, b"early"), 0.0)
    (upgrade,) = drain(server)
    assert isinstance(upgrade, WebSocketRequest)
    server.accept_websocket(now=0.0)
    assert drain(server) == [WebSocketMessage("early")]


def test_accept_websocket_with_invalid_header_is_local_error() -> None:
    clock = FakeClock()
    server = ServerConnection(clock.now)
    server.receive_data(upgrade_bytes(), clock.now)
    drain(server)
    for headers in ((("bad name", "x"),), (("x", "a\r\nb"),), (("x", "\u4e00"),)):
        with pytest.raises(LocalProtocolError, match="invalid response"):
            server.accept_websocket(headers=headers, now=clock.now)
    assert state_of(server) is State.REQUEST_RECEIVED
    assert server.data_to_send(clock.now) == b""


def upgrade_bytes() -> bytes:
    return WSConnection(ConnectionType.CLIENT).send(WsRequest(host="h", target="/"))
