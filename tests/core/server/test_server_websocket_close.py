"""The WebSocket close handshake, from either side: the CLOSING state, what is still
delivered in it, the close timeout, and an end of file without a close frame."""

from __future__ import annotations

import struct

from core_support import client_frame, closed_events, drain
from server_websocket_support import RawClient, state_of
from wsproto.events import CloseConnection, TextMessage

from diaproto.client import ClientState, WebSocketClientConnection
from diaproto.config import ConnectionConfig, Timeouts
from diaproto.events import ConnectionClosed, RemoteError, WebSocketMessage
from diaproto.server import State
from diaproto.testing import FakeClock, websocket_pair

# --- close handshake -----------------------------------------------------------------------


def test_client_initiated_close() -> None:
    loop = websocket_pair()
    loop.take_client_events()
    assert isinstance(loop.client, WebSocketClientConnection)
    loop.client.close(0.0, 1000, "bye")
    assert loop.client.state is ClientState.CLOSING
    loop.pump()
    assert closed_events(loop.take_server_events()) == [ConnectionClosed(1000, "bye")]
    assert closed_events(loop.take_client_events()) == [ConnectionClosed(1000, "bye")]
    assert loop.server.finished
    assert loop.client.finished


def test_raw_client_close_is_echoed() -> None:
    raw = RawClient(FakeClock())
    raw.send(CloseConnection(code=1001, reason="going"))
    assert raw.events() == [ConnectionClosed(1001, "going")]
    (echo,) = raw.read()
    assert isinstance(echo, CloseConnection)
    assert echo.code == 1001
    assert state_of(raw.server) is State.CLOSED


def test_server_close_goes_through_closing() -> None:
    raw = RawClient(FakeClock())
    raw.server.open_stream(1, 0.0)
    raw.server.set_transport_buffered(10**6)
    raw.read()
    raw.server.send(1, b"dropped", 0.0)
    raw.server.close(0.0, 1001, "shutting down")
    assert state_of(raw.server) is State.CLOSING
    assert not raw.server.finished
    (close,) = raw.read()  # queued data is dropped; the close frame goes
    assert isinstance(close, CloseConnection)
    assert (close.code, close.reason) == (1001, "shutting down")
    raw.server.close(0.0)  # closing already: nothing more
    assert raw.read() == []
    raw.send_raw(encode_close_reply(1001))
    events = raw.events()
    assert closed_events(events) == [ConnectionClosed(1001, "")]
    assert state_of(raw.server) is State.CLOSED
    raw.server.close(1.0)  # closed: a no-op
    assert raw.server.data_to_send(1.0) == b""


def encode_close_reply(code: int) -> bytes:
    return client_frame(0x8, struct.pack("!H", code))


def test_close_timeout_drops_at_exactly_close_sent_plus_timeout() -> None:
    clock = FakeClock()
    raw = RawClient(clock, config=ConnectionConfig(timeouts=Timeouts(close_timeout=5.0)))
    clock.advance(7.0)
    raw.server.close(clock.now)
    assert raw.server.next_deadline() == 12.0
    raw.server.handle_timer(11.999)
    assert state_of(raw.server) is State.CLOSING
    raw.server.handle_timer(12.0)
    assert state_of(raw.server) is State.CLOSED
    assert raw.events() == [ConnectionClosed(1006, "close handshake timed out")]
    assert raw.server.next_deadline() is None


def test_close_timeout_none_waits_forever() -> None:
    raw = RawClient(FakeClock(), config=ConnectionConfig(timeouts=Timeouts(close_timeout=None)))
    raw.server.close(0.0)
    assert raw.server.next_deadline() is None
    raw.server.handle_timer(1e9)
    assert state_of(raw.server) is State.CLOSING


def test_messages_during_closing_are_still_delivered() -> None:
    raw = RawClient(FakeClock(), offer=(), accept=None)
    raw.server.close(0.0)
    raw.send(TextMessage(data="late"))
    assert raw.events() == [WebSocketMessage("late")]


def test_ping_during_closing_is_not_answered() -> None:
    raw = RawClient(FakeClock())
    raw.server.close(0.0)
    raw.read()
    raw.send_raw(client_frame(0x9, b"p"))
    assert raw.events() == []
    assert raw.server.data_to_send(0.0) == b""
    assert state_of(raw.server) is State.CLOSING


def test_bad_wire_message_during_closing_is_reported_only() -> None:
    raw = RawClient(FakeClock())
    raw.server.close(0.0)
    raw.read()
    raw.send_raw(client_frame(0x1, b"not json"))
    (error,) = raw.events()
    assert isinstance(error, RemoteError)
    assert not error.fatal
    assert raw.server.data_to_send(0.0) == b""


def test_garbage_during_closing_closes_without_a_second_close_frame() -> None:
    raw = RawClient(FakeClock())
    raw.server.close(0.0)
    raw.read()
    raw.send_raw(client_frame(0x3, b""))
    events = raw.events()
    assert [e.code for e in closed_events(events)] == [1002]
    assert raw.server.data_to_send(0.0) == b""


def test_client_eof_is_1006() -> None:
    loop = websocket_pair()
    loop.server.receive_eof(0.0)
    loop.server.receive_eof(0.0)  # twice is harmless
    assert closed_events(loop.take_server_events() + drain(loop.server)) == [
        ConnectionClosed(1006, "")
    ]
    assert loop.server.finished
    loop.server.receive_data(b"after eof", 0.0)
    assert loop.server.next_event() is None
