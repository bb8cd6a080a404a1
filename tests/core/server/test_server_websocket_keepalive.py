"""WebSocket heartbeats and the idle timeout of a server connection: pings after silence,
an unanswered ping closing with 1011, and an idle connection closing with 1000."""

from __future__ import annotations

from core_support import QUIET, closed_events
from server_websocket_support import RawClient, state_of
from wsproto.events import CloseConnection, Ping, TextMessage

from diaproto.client import WebSocketClientConnection
from diaproto.config import ConnectionConfig, Timeouts
from diaproto.events import ConnectionClosed
from diaproto.server import State
from diaproto.testing import FakeClock, websocket_pair
from diaproto.wire import CancelStream

# --- heartbeat -----------------------------------------------------------------------------


def test_server_pings_after_silence_and_answering_client_stays() -> None:
    loop = websocket_pair(client_config=QUIET)
    loop.take_client_events()
    server = loop.server
    assert server.next_deadline() == 20.0
    loop.advance(19.0)
    assert server.next_deadline() == 20.0
    loop.advance(1.0)  # the ping goes at 20 and the client answers at once
    assert state_of(server) is State.WEBSOCKET
    assert server.next_deadline() == 40.0
    assert isinstance(loop.client, WebSocketClientConnection)
    loop.client.send_wire(CancelStream(9), loop.clock.now)  # a message: idle restarts at 20
    loop.pump()
    loop.advance(279.0)
    assert loop.clock.now == 299.0
    assert state_of(server) is State.WEBSOCKET  # pings alone would have idled out at 300
    assert loop.take_server_events() == [CancelStream(9)]
    assert server.next_deadline() == 300.0  # the next ping; idle is due at 320
    loop.advance(20.0)
    assert loop.clock.now == 319.0
    assert state_of(server) is State.WEBSOCKET
    loop.advance(1.0)
    assert closed_events(loop.take_server_events()) == [ConnectionClosed(1000, "idle timeout")]


def test_ping_seen_on_the_wire_and_unanswered_ping_closes_1011() -> None:
    clock = FakeClock()
    raw = RawClient(clock)
    server = raw.server
    assert server.next_deadline() == 20.0
    server.handle_timer(19.5)
    assert server.data_to_send(19.5) == b""
    clock.now = 20.0
    server.handle_timer(20.0)
    (ping,) = raw.read()
    assert isinstance(ping, Ping)
    assert server.next_deadline() == 40.0  # ping_sent + ping_timeout
    server.handle_timer(39.9)
    assert state_of(server) is State.WEBSOCKET
    clock.now = 40.0
    server.handle_timer(40.0)
    assert state_of(server) is State.CLOSING
    (close,) = raw.read()
    assert isinstance(close, CloseConnection)
    assert (close.code, close.reason) == (1011, "keepalive ping timeout")
    assert server.next_deadline() == 45.0
    server.handle_timer(45.0)
    assert raw.events() == [ConnectionClosed(1006, "close handshake timed out")]


def test_any_byte_answers_a_ping() -> None:
    clock = FakeClock()
    raw = RawClient(clock, offer=(), accept=None)
    clock.now = 20.0
    raw.server.handle_timer(20.0)
    raw.read()
    clock.now = 30.0
    raw.send(TextMessage(data="late but alive"))
    assert raw.server.next_deadline() == 50.0
    raw.server.handle_timer(40.0)
    assert state_of(raw.server) is State.WEBSOCKET


def test_idle_timeout_closes_with_1000() -> None:
    config = ConnectionConfig(timeouts=Timeouts(ping_interval=None, idle=30.0))
    loop = websocket_pair(server_config=config, client_config=QUIET)
    loop.take_client_events()
    assert loop.server.next_deadline() == 30.0
    loop.advance(29.0)
    assert state_of(loop.server) is State.WEBSOCKET
    loop.advance(1.0)
    assert closed_events(loop.take_server_events()) == [ConnectionClosed(1000, "idle timeout")]
    assert closed_events(loop.take_client_events()) == [ConnectionClosed(1000, "idle timeout")]


def test_heartbeat_pings_alone_do_not_prevent_idle_close() -> None:
    config = ConnectionConfig(timeouts=Timeouts(ping_interval=10.0, idle=35.0))
    loop = websocket_pair(server_config=config, client_config=QUIET)
    loop.advance(34.0)
    assert state_of(loop.server) is State.WEBSOCKET
    loop.advance(1.0)
    assert state_of(loop.server) is State.CLOSED


def test_no_timers_means_no_deadline() -> None:
    loop = websocket_pair(server_config=QUIET, client_config=QUIET)
    assert loop.server.next_deadline() is None
    assert loop.client.next_deadline() is None
