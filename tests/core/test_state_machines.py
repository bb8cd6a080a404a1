"""Every state against every input (after h2's tests/core/test_state_machines.py).

Each connection is driven into each of its states; then every public input is tried. An API
call either works or raises LocalProtocolError (and must raise it where the state forbids the
call); peer input and the pump (receive_data, receive_eof, next_event, data_to_send,
next_deadline, handle_timer) never raise. Hypothesis then tries sequences of inputs from
every state under the same rule."""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request as WsRequest

from diaproto.client import ClientState, SseClientConnection, WebSocketClientConnection
from diaproto.errors import LocalProtocolError
from diaproto.events import Event, Request, SseRequest, WebSocketRequest
from diaproto.replay import ReplayBuffer
from diaproto.server import ServerConnection, State
from diaproto.sse import SseEvent
from diaproto.testing import FakeClock, sse_pair, websocket_pair
from diaproto.wire import CancelStream, encode_records
from diaproto.wsframes import encode_frame

# --- bytes a peer may send ------------------------------------------------------------------

_KEY = b"\x01\x02\x03\x04"


def masked(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    return (
        bytes((0x80 | opcode, 0x80 | len(payload)))
        + _KEY
        + bytes(b ^ _KEY[i % 4] for i, b in enumerate(payload))
    )


def upgrade_request(subprotocols: tuple[str, ...] = ("diaproto.v1",)) -> bytes:
    client = WSConnection(ConnectionType.CLIENT)
    return client.send(WsRequest(host="h", target="/ws", subprotocols=list(subprotocols)))


PLAIN_REQUEST = b"GET / HTTP/1.1\r\nhost: h\r\n\r\n"
SSE_REQUEST = b"GET /e HTTP/1.1\r\nhost: h\r\naccept: text/event-stream\r\n\r\n"
GARBAGE = b"\x00\xff\x81garbage \r\n\r\n\x88\x02"

CLIENT_BYTES: dict[str, bytes] = {
    "garbage": GARBAGE,
    "http-upgrade": upgrade_request(),
    "http-plain": PLAIN_REQUEST,
    "http-sse": SSE_REQUEST,
    "ws-text": masked(0x1, b'{"type":"cancel","stream":1}'),
    "ws-bad-json": masked(0x1, b"{nope"),
    "ws-binary": masked(0x2, b"\x00\x01"),
    "ws-ping": masked(0x9, b"p"),
    "ws-pong": masked(0xA, b"p"),
    "ws-close": masked(0x8, struct.pack("!H", 1000)),
}


# --- driving a connection -----------------------------------------------------------------


class Endpoint(Protocol):
    """What every connection under test takes: peer bytes, EOF and the time."""

    @property
    def state(self) -> Enum: ...

    def receive_data(self, data: bytes, now: float) -> None: ...

    def receive_eof(self, now: float) -> None: ...

    def handle_timer(self, now: float) -> None: ...


E = TypeVar("E", bound=Endpoint)


@dataclass
class Driver(Generic[E]):
    """One connection on a clock that only the test moves; ``settle`` runs its pump."""

    conn: E
    now: float = 0.0

    def tick(self) -> float:
        self.now += 0.5
        return self.now

    def settle(self) -> None:
        raise NotImplementedError

    def far_timer(self) -> None:
        self.now += 1e6
        self.conn.handle_timer(self.now)

    def wind_down(self) -> None:
        """EOF, then a timer far in the future: together they end every state."""
        self.conn.receive_eof(self.tick())
        self.settle()
        self.far_timer()
        self.settle()


D = TypeVar("D", bound=Driver[Any])


def after(base: Callable[[], D], *steps: Callable[[D], object]) -> Callable[[], D]:
    """A factory: ``base``, then the steps, then the pump."""

    def factory() -> D:
        ctx = base()
        for step in steps:
            step(ctx)
        ctx.settle()
        return ctx

    return factory


@dataclass(frozen=True)
class Action(Generic[D]):
    name: str
    run: Callable[[D], object]
    allowed: frozenset[Enum] | None  # None: peer input, must never raise


def feed(name: str, data: bytes) -> Action[Any]:
    return Action(f"receive_data({name})", lambda c: c.conn.receive_data(data, c.tick()), None)


def peer(name: str, run: Callable[[D], object]) -> Action[D]:
    return Action(name, run, None)


def apply(ctx: D, action: Action[D]) -> None:
    state = ctx.conn.state
    if action.allowed is None:
        action.run(ctx)
    elif state in action.allowed:
        with contextlib.suppress(LocalProtocolError):
            action.run(ctx)
    else:
        with pytest.raises(LocalProtocolError):
            action.run(ctx)
    ctx.settle()


# --- the server ----------------------------------------------------------------------------


@dataclass
class Ctx(Driver[ServerConnection]):
    events: list[Event] = field(default_factory=list)

    def settle(self) -> None:
        """The pump: none of it may raise, whatever state we are in."""
        while (event := self.conn.next_event()) is not None:
            self.events.append(event)
        self.conn.data_to_send(self.now)
        deadline = self.conn.next_deadline()
        assert deadline is None or not math.isnan(deadline)
        assert isinstance(self.conn.finished, bool)
        assert isinstance(self.conn.wants_data, bool)


def awaiting() -> Ctx:
    return Ctx(ServerConnection(0.0))


def _fed(data: bytes) -> Callable[[], Ctx]:
    return after(awaiting, lambda c: c.conn.receive_data(data, 0.0))


awaiting_second_cycle = after(_fed(PLAIN_REQUEST), lambda c: c.conn.respond(204, now=0.0))
awaiting_partial_request = _fed(PLAIN_REQUEST[:10])
received_upgrade = _fed(upgrade_request())
received_plain = _fed(PLAIN_REQUEST)
received_sse = _fed(SSE_REQUEST)


def _then_open(**options: Any) -> Callable[[Ctx], object]:
    return lambda c: c.conn.open_stream(1, 0.0, **options)


streaming_sse = after(
    received_sse, lambda c: c.conn.accept_sse(now=0.0), _then_open(replay=ReplayBuffer(1))
)
streaming_body = after(received_plain, lambda c: c.conn.start_response(200, now=0.0), _then_open())
websocket_wire = after(
    received_upgrade,
    lambda c: c.conn.accept_websocket("diaproto.v1", now=0.0),
    _then_open(replay=ReplayBuffer(1)),
)
websocket_raw = after(received_upgrade, lambda c: c.conn.accept_websocket(now=0.0), _then_open())


def websocket_eof_unread() -> Ctx:
    """WEBSOCKET with the peer's EOF received but not yet pulled through next_event."""
    ctx = websocket_wire()
    ctx.conn.receive_eof(0.0)
    return ctx


closing = after(websocket_wire, lambda c: c.conn.close(0.0, 1001, "bye"))
closed_http = after(awaiting, lambda c: c.conn.close(0.0))
closed_websocket = after(
    websocket_wire, lambda c: c.conn.receive_data(CLIENT_BYTES["ws-close"], 0.0)
)

SERVER_STATES: dict[str, tuple[Callable[[], Ctx], State]] = {
    "awaiting": (awaiting, State.AWAITING_REQUEST),
    "awaiting-second-cycle": (awaiting_second_cycle, State.AWAITING_REQUEST),
    "awaiting-partial": (awaiting_partial_request, State.AWAITING_REQUEST),
    "received-upgrade": (received_upgrade, State.REQUEST_RECEIVED),
    "received-plain": (received_plain, State.REQUEST_RECEIVED),
    "received-sse": (received_sse, State.REQUEST_RECEIVED),
    "streaming-sse": (streaming_sse, State.STREAMING),
    "streaming-body": (streaming_body, State.STREAMING),
    "websocket-wire": (websocket_wire, State.WEBSOCKET),
    "websocket-raw": (websocket_raw, State.WEBSOCKET),
    "websocket-eof-unread": (websocket_eof_unread, State.WEBSOCKET),
    "closing": (closing, State.CLOSING),
    "closed-http": (closed_http, State.CLOSED),
    "closed-websocket": (closed_websocket, State.CLOSED),
}

ANSWERING = {State.REQUEST_RECEIVED}
OUTPUT = {State.STREAMING, State.WEBSOCKET}
EVERY = set(State)


def api(name: str, allowed: set[State], run: Callable[[Ctx], object]) -> Action[Ctx]:
    return Action(name, run, frozenset(allowed))


SERVER_ACTIONS: list[Action[Ctx]] = [
    *(feed(name, data) for name, data in CLIENT_BYTES.items()),
    feed("empty", b""),
    peer("receive_eof", lambda c: c.conn.receive_eof(c.tick())),
    peer("handle_timer(far future)", Ctx.far_timer),
    peer("handle_timer(now)", lambda c: c.conn.handle_timer(c.now)),
    peer("data_to_send", lambda c: c.conn.data_to_send(c.tick())),
    peer("set_transport_buffered", lambda c: c.conn.set_transport_buffered(10**7)),
    api("respond", ANSWERING, lambda c: c.conn.respond(200, body=b"ok", now=c.tick())),
    api(
        "respond(bad header)",
        set(),
        lambda c: c.conn.respond(200, (("bad name", "x"),), now=c.tick()),
    ),
    api("start_response", ANSWERING, lambda c: c.conn.start_response(200, now=c.tick())),
    api("accept_sse", ANSWERING, lambda c: c.conn.accept_sse(now=c.tick())),
    api(
        "accept_websocket(diaproto.v1)",
        ANSWERING,
        lambda c: c.conn.accept_websocket("diaproto.v1", now=c.tick()),
    ),
    api("accept_websocket(None)", ANSWERING, lambda c: c.conn.accept_websocket(now=c.tick())),
    api(
        "accept_websocket(not offered)",
        set(),
        lambda c: c.conn.accept_websocket("nope", now=c.tick()),
    ),
    api(
        "accept_websocket(bad header)",
        set(),
        lambda c: c.conn.accept_websocket(headers=(("x", "a\r\nb"),), now=c.tick()),
    ),
    api(
        "accept_websocket(unencodable header)",
        set(),
        lambda c: c.conn.accept_websocket(headers=(("x", "\u4e00"),), now=c.tick()),
    ),
    api("open_stream(1)", OUTPUT, lambda c: c.conn.open_stream(1, c.tick())),
    api("open_stream(2)", OUTPUT, lambda c: c.conn.open_stream(2, c.tick(), token="t")),
    api("open_stream(-1)", set(), lambda c: c.conn.open_stream(-1, c.tick())),
    api("send(bytes)", OUTPUT, lambda c: c.conn.send(1, b"chunk", c.tick())),
    api("send(str)", OUTPUT, lambda c: c.conn.send(1, "text", c.tick())),
    api("send(SseEvent)", OUTPUT, lambda c: c.conn.send(1, SseEvent("e"), c.tick())),
    api("send(huge)", OUTPUT, lambda c: c.conn.send(1, b"x" * (5 << 20), c.tick())),
    api("end_stream", OUTPUT, lambda c: c.conn.end_stream(1, c.tick())),
    api("fail_stream(1)", OUTPUT, lambda c: c.conn.fail_stream(1, "internal", "x", c.tick())),
    api("fail_stream(None)", OUTPUT, lambda c: c.conn.fail_stream(None, "internal", "", c.tick())),
    api("resume_stream", OUTPUT, lambda c: c.conn.resume_stream(1, 0, c.tick())),
    api("end_response", {State.STREAMING}, lambda c: c.conn.end_response(c.tick())),
    api("close", EVERY, lambda c: c.conn.close(c.tick())),
    api("close(1011)", EVERY, lambda c: c.conn.close(c.tick(), 1011, "x")),
]


@pytest.mark.parametrize("state_name", list(SERVER_STATES))
def test_server_factories_reach_their_state(state_name: str) -> None:
    factory, expected = SERVER_STATES[state_name]
    assert factory().conn.state is expected


@pytest.mark.parametrize("action", SERVER_ACTIONS, ids=lambda a: a.name)
@pytest.mark.parametrize("state_name", list(SERVER_STATES))
def test_server_every_state_every_input(state_name: str, action: Action[Ctx]) -> None:
    factory, _ = SERVER_STATES[state_name]
    ctx = factory()
    apply(ctx, action)
    # ... and the connection is still usable for more input afterwards
    for name in ("garbage", "ws-ping"):
        ctx.conn.receive_data(CLIENT_BYTES[name], ctx.tick())
        ctx.settle()
    ctx.wind_down()


@pytest.mark.parametrize("state_name", list(SERVER_STATES))
def test_server_closed_is_final(state_name: str) -> None:
    factory, _ = SERVER_STATES[state_name]
    ctx = factory()
    ctx.conn.close(ctx.tick())
    ctx.settle()
    ctx.wind_down()
    assert ctx.conn.finished
    assert ctx.conn.next_deadline() is None
    assert not ctx.conn.wants_data
    closes = [e for e in ctx.events if type(e).__name__ == "ConnectionClosed"]
    assert len(closes) == 1  # reported exactly once
    for action in SERVER_ACTIONS:
        if action.allowed is not None and action.name.startswith("close"):
            apply(ctx, action)
            assert ctx.conn.state is State.CLOSED


def test_pending_request_events_are_of_the_right_kind() -> None:
    assert any(isinstance(e, WebSocketRequest) for e in received_upgrade().events)
    assert any(isinstance(e, Request) for e in received_plain().events)
    assert any(isinstance(e, SseRequest) for e in received_sse().events)


_HYPOTHESIS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def run_sequence(factory: Callable[[], D], actions: list[Action[D]]) -> D:
    ctx = factory()
    for action in actions:
        apply(ctx, action)
    return ctx


@_HYPOTHESIS
@given(
    state_name=st.sampled_from(sorted(SERVER_STATES)),
    actions=st.lists(st.sampled_from(SERVER_ACTIONS), max_size=12),
)
def test_server_sequences_of_inputs(state_name: str, actions: list[Action[Ctx]]) -> None:
    ctx = run_sequence(SERVER_STATES[state_name][0], actions)
    closes = [e for e in ctx.events if type(e).__name__ == "ConnectionClosed"]
    assert len(closes) <= 1
    assert (len(closes) == 1) == ctx.conn.finished


# --- the WebSocket client ------------------------------------------------------------------


class ClientCtx(Driver[WebSocketClientConnection]):
    def settle(self) -> None:
        while self.conn.next_event() is not None:
            pass
        self.conn.data_to_send(self.now)
        self.conn.next_deadline()
        assert isinstance(self.conn.finished, bool)


def ws_connecting() -> ClientCtx:
    ctx = ClientCtx(WebSocketClientConnection(0.0, "h", subprotocols=("diaproto.v1",)))
    ctx.settle()
    return ctx


def _ws_open(accept: str | None) -> Callable[[], ClientCtx]:
    def factory() -> ClientCtx:
        loop = websocket_pair(FakeClock(), accept=accept)
        assert isinstance(loop.client, WebSocketClientConnection)
        return ClientCtx(loop.client)

    return factory


ws_open_wire = _ws_open("diaproto.v1")
ws_open_raw = _ws_open(None)
# A rejection whose body has not all arrived.
ws_rejecting = after(
    ws_connecting,
    lambda c: c.conn.receive_data(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 10\r\n\r\nab", 0.0),
)
ws_closing = after(ws_open_wire, lambda c: c.conn.close(0.0))
ws_closed = after(ws_open_wire, lambda c: c.conn.receive_eof(0.0))
ws_closed_connecting = after(ws_connecting, lambda c: c.conn.close(0.0))

CLIENT_STATES: dict[str, tuple[Callable[[], ClientCtx], ClientState]] = {
    "connecting": (ws_connecting, ClientState.CONNECTING),
    "rejecting": (ws_rejecting, ClientState.CONNECTING),
    "open-wire": (ws_open_wire, ClientState.OPEN),
    "open-raw": (ws_open_raw, ClientState.OPEN),
    "closing": (ws_closing, ClientState.CLOSING),
    "closed": (ws_closed, ClientState.CLOSED),
    "closed-before-open": (ws_closed_connecting, ClientState.CLOSED),
}

SERVER_BYTES: dict[str, bytes] = {
    "garbage": GARBAGE,
    "http-101-bad": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
    "http-404": b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
    "ws-text": encode_frame(0x1, b'{"type":"open","stream":1}'),
    "ws-bad-json": encode_frame(0x1, b"{"),
    "ws-records": encode_frame(0x2, encode_records([(1, 1, b"x")])),
    "ws-bad-records": encode_frame(0x2, b"\x00"),
    "ws-ping": encode_frame(0x9, b"p"),
    "ws-close": encode_frame(0x8, struct.pack("!H", 1000)),
    "ws-masked": masked(0x1, b"x"),
}

OPEN_ONLY: frozenset[Enum] = frozenset({ClientState.OPEN})

CLIENT_ACTIONS: list[Action[ClientCtx]] = [
    *(feed(name, data) for name, data in SERVER_BYTES.items()),
    feed("empty", b""),
    peer("receive_eof", lambda c: c.conn.receive_eof(c.tick())),
    peer("handle_timer(far future)", ClientCtx.far_timer),
    peer("data_to_send", lambda c: c.conn.data_to_send(c.tick())),
    Action("send_message(str)", lambda c: c.conn.send_message("hi", c.tick()), OPEN_ONLY),
    Action("send_message(bytes)", lambda c: c.conn.send_message(b"hi", c.tick()), OPEN_ONLY),
    Action("send_wire", lambda c: c.conn.send_wire(CancelStream(1), c.tick()), OPEN_ONLY),
    Action("close", lambda c: c.conn.close(c.tick()), frozenset(ClientState)),
]


@pytest.mark.parametrize("state_name", list(CLIENT_STATES))
def test_client_factories_reach_their_state(state_name: str) -> None:
    factory, expected = CLIENT_STATES[state_name]
    assert factory().conn.state is expected


@pytest.mark.parametrize("action", CLIENT_ACTIONS, ids=lambda a: a.name)
@pytest.mark.parametrize("state_name", list(CLIENT_STATES))
def test_client_every_state_every_input(state_name: str, action: Action[ClientCtx]) -> None:
    ctx = CLIENT_STATES[state_name][0]()
    apply(ctx, action)
    ctx.conn.receive_data(GARBAGE, ctx.tick())
    ctx.settle()
    ctx.wind_down()
    assert ctx.conn.finished  # EOF and the far-future timer end every state


@_HYPOTHESIS
@given(
    state_name=st.sampled_from(sorted(CLIENT_STATES)),
    actions=st.lists(st.sampled_from(CLIENT_ACTIONS), max_size=12),
)
def test_client_sequences_of_inputs(state_name: str, actions: list[Action[ClientCtx]]) -> None:
    run_sequence(CLIENT_STATES[state_name][0], actions)


# --- the SSE client ------------------------------------------------------------------------


class SseCtx(Driver[SseClientConnection]):
    def settle(self) -> None:
        while self.conn.next_event() is not None:
            pass
        self.conn.data_to_send(self.now)
        self.conn.next_deadline()
        assert isinstance(self.conn.finished, bool)
        assert self.conn.last_event_id is None or isinstance(self.conn.last_event_id, str)
        assert self.conn.retry is None or isinstance(self.conn.retry, int)


def sse_connecting() -> SseCtx:
    ctx = SseCtx(SseClientConnection(0.0, "h", last_event_id="3"))
    ctx.settle()
    return ctx


def sse_open() -> SseCtx:
    loop = sse_pair(FakeClock())
    assert isinstance(loop.client, SseClientConnection)
    return SseCtx(loop.client)


sse_rejecting = after(
    sse_connecting,
    lambda c: c.conn.receive_data(b"HTTP/1.1 500 Oops\r\ncontent-length: 10\r\n\r\nab", 0.0),
)
sse_closed = after(sse_open, lambda c: c.conn.close(0.0))

SSE_STATES: dict[str, tuple[Callable[[], SseCtx], ClientState]] = {
    "connecting": (sse_connecting, ClientState.CONNECTING),
    "rejecting": (sse_rejecting, ClientState.CONNECTING),
    "open": (sse_open, ClientState.OPEN),
    "closed": (sse_closed, ClientState.CLOSED),
}

SSE_SERVER_BYTES: dict[str, bytes] = {
    "garbage": GARBAGE,
    "http-200-sse": b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\n\r\n",
    "http-404": b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno",
    "chunk-event": b"10\r\nid: 4\ndata: hi\n\n\r\n",
    "chunk-end": b"0\r\n\r\n",
    "chunk-bad": b"zz\r\n",
    "sse-line": b"data: x\n\n",
}

# No SSE client input is API misuse: every action is peer input, and none may raise.
SSE_ACTIONS: list[Action[SseCtx]] = [
    *(feed(name, data) for name, data in SSE_SERVER_BYTES.items()),
    feed("empty", b""),
    peer("receive_eof", lambda c: c.conn.receive_eof(c.tick())),
    peer("handle_timer(now)", lambda c: c.conn.handle_timer(c.now)),
    peer("handle_timer(far future)", SseCtx.far_timer),
    peer("data_to_send", lambda c: c.conn.data_to_send(c.tick())),
    peer("close", lambda c: c.conn.close(c.tick())),
]


@pytest.mark.parametrize("state_name", list(SSE_STATES))
def test_sse_factories_reach_their_state(state_name: str) -> None:
    factory, expected = SSE_STATES[state_name]
    assert factory().conn.state is expected


@pytest.mark.parametrize("action", SSE_ACTIONS, ids=lambda a: a.name)
@pytest.mark.parametrize("state_name", list(SSE_STATES))
def test_sse_client_every_state_every_input(state_name: str, action: Action[SseCtx]) -> None:
    ctx = SSE_STATES[state_name][0]()
    apply(ctx, action)
    ctx.wind_down()
    assert ctx.conn.finished


@_HYPOTHESIS
@given(
    state_name=st.sampled_from(sorted(SSE_STATES)),
    actions=st.lists(st.sampled_from(SSE_ACTIONS), max_size=12),
)
def test_sse_client_sequences_of_inputs(state_name: str, actions: list[Action[SseCtx]]) -> None:
    run_sequence(SSE_STATES[state_name][0], actions)
