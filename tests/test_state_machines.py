"""Every state against every input (after h2's tests/test_state_machines.py).

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


# --- the server ----------------------------------------------------------------------------


@dataclass
class Ctx:
    server: ServerConnection
    now: float = 0.0
    events: list[Event] = field(default_factory=list)

    def tick(self) -> float:
        self.now += 0.5
        return self.now

    def settle(self) -> None:
        """The pump: none of it may raise, whatever state we are in."""
        while (event := self.server.next_event()) is not None:
            self.events.append(event)
        self.server.data_to_send(self.now)
        deadline = self.server.next_deadline()
        assert deadline is None or not math.isnan(deadline)
        assert isinstance(self.server.finished, bool)
        assert isinstance(self.server.wants_data, bool)


def _fresh() -> Ctx:
    return Ctx(ServerConnection(0.0))


def _fed(data: bytes) -> Ctx:
    ctx = _fresh()
    ctx.server.receive_data(data, 0.0)
    ctx.settle()
    return ctx


def awaiting() -> Ctx:
    return _fresh()


def awaiting_second_cycle() -> Ctx:
    ctx = _fed(PLAIN_REQUEST)
    ctx.server.respond(204, now=0.0)
    ctx.settle()
    return ctx


def awaiting_partial_request() -> Ctx:
    return _fed(PLAIN_REQUEST[:10])


def received_upgrade() -> Ctx:
    return _fed(upgrade_request())


def received_plain() -> Ctx:
    return _fed(PLAIN_REQUEST)


def received_sse() -> Ctx:
    return _fed(SSE_REQUEST)


def streaming_sse() -> Ctx:
    ctx = received_sse()
    ctx.server.accept_sse(now=0.0)
    ctx.server.open_stream(1, 0.0, replay=ReplayBuffer(1))
    ctx.settle()
    return ctx


def streaming_body() -> Ctx:
    ctx = received_plain()
    ctx.server.start_response(200, now=0.0)
    ctx.server.open_stream(1, 0.0)
    ctx.settle()
    return ctx


def websocket_wire() -> Ctx:
    ctx = received_upgrade()
    ctx.server.accept_websocket("diaproto.v1", now=0.0)
    ctx.server.open_stream(1, 0.0, replay=ReplayBuffer(1))
    ctx.settle()
    return ctx


def websocket_raw() -> Ctx:
    ctx = received_upgrade()
    ctx.server.accept_websocket(now=0.0)
    ctx.server.open_stream(1, 0.0)
    ctx.settle()
    return ctx


def websocket_eof_unread() -> Ctx:
    """WEBSOCKET with the peer's EOF received but not yet pulled through next_event."""
    ctx = websocket_wire()
    ctx.server.receive_eof(0.0)
    return ctx


def closing() -> Ctx:
    ctx = websocket_wire()
    ctx.server.close(0.0, 1001, "bye")
    ctx.settle()
    return ctx


def closed_http() -> Ctx:
    ctx = _fresh()
    ctx.server.close(0.0)
    ctx.settle()
    return ctx


def closed_websocket() -> Ctx:
    ctx = websocket_wire()
    ctx.server.receive_data(CLIENT_BYTES["ws-close"], 0.0)
    ctx.settle()
    return ctx


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


@dataclass(frozen=True)
class Action:
    name: str
    run: Callable[[Ctx], object]
    allowed: frozenset[State] | None  # None: peer input, must never raise


def api(name: str, allowed: set[State], run: Callable[[Ctx], object]) -> Action:
    return Action(name, run, frozenset(allowed))


def peer(name: str, run: Callable[[Ctx], object]) -> Action:
    return Action(name, run, None)


def _data(data: bytes) -> Callable[[Ctx], object]:
    return lambda c: c.server.receive_data(data, c.tick())


def _far_timer(c: Ctx) -> None:
    c.now += 1e6
    c.server.handle_timer(c.now)


SERVER_ACTIONS: list[Action] = [
    *(peer(f"receive_data({name})", _data(data)) for name, data in CLIENT_BYTES.items()),
    peer("receive_data(empty)", _data(b"")),
    peer("receive_eof", lambda c: c.server.receive_eof(c.tick())),
    peer("handle_timer(far future)", _far_timer),
    peer("handle_timer(now)", lambda c: c.server.handle_timer(c.now)),
    peer("data_to_send", lambda c: c.server.data_to_send(c.tick())),
    peer("set_transport_buffered", lambda c: c.server.set_transport_buffered(10**7)),
    api("respond", ANSWERING, lambda c: c.server.respond(200, body=b"ok", now=c.tick())),
    api(
        "respond(bad header)",
        set(),
        lambda c: c.server.respond(200, (("bad name", "x"),), now=c.tick()),
    ),
    api("start_response", ANSWERING, lambda c: c.server.start_response(200, now=c.tick())),
    api("accept_sse", ANSWERING, lambda c: c.server.accept_sse(now=c.tick())),
    api(
        "accept_websocket(diaproto.v1)",
        ANSWERING,
        lambda c: c.server.accept_websocket("diaproto.v1", now=c.tick()),
    ),
    api("accept_websocket(None)", ANSWERING, lambda c: c.server.accept_websocket(now=c.tick())),
    api(
        "accept_websocket(not offered)",
        set(),
        lambda c: c.server.accept_websocket("nope", now=c.tick()),
    ),
    api(
        "accept_websocket(bad header)",
        set(),
        lambda c: c.server.accept_websocket(headers=(("x", "a\r\nb"),), now=c.tick()),
    ),
    api(
        "accept_websocket(unencodable header)",
        set(),
        lambda c: c.server.accept_websocket(headers=(("x", "\u4e00"),), now=c.tick()),
    ),
    api("open_stream(1)", OUTPUT, lambda c: c.server.open_stream(1, c.tick())),
    api("open_stream(2)", OUTPUT, lambda c: c.server.open_stream(2, c.tick(), token="t")),
    api("open_stream(-1)", set(), lambda c: c.server.open_stream(-1, c.tick())),
    api("send(bytes)", OUTPUT, lambda c: c.server.send(1, b"chunk", c.tick())),
    api("send(str)", OUTPUT, lambda c: c.server.send(1, "text", c.tick())),
    api("send(SseEvent)", OUTPUT, lambda c: c.server.send(1, SseEvent("e"), c.tick())),
    api("send(huge)", OUTPUT, lambda c: c.server.send(1, b"x" * (5 << 20), c.tick())),
    api("end_stream", OUTPUT, lambda c: c.server.end_stream(1, c.tick())),
    api("fail_stream(1)", OUTPUT, lambda c: c.server.fail_stream(1, "internal", "x", c.tick())),
    api(
        "fail_stream(None)", OUTPUT, lambda c: c.server.fail_stream(None, "internal", "", c.tick())
    ),
    api("resume_stream", OUTPUT, lambda c: c.server.resume_stream(1, 0, c.tick())),
    api("end_response", {State.STREAMING}, lambda c: c.server.end_response(c.tick())),
    api("close", EVERY, lambda c: c.server.close(c.tick())),
    api("close(1011)", EVERY, lambda c: c.server.close(c.tick(), 1011, "x")),
]


def apply(ctx: Ctx, action: Action) -> None:
    state = ctx.server.state
    if action.allowed is None:
        action.run(ctx)
    elif state in action.allowed:
        with contextlib.suppress(LocalProtocolError):
            action.run(ctx)
    else:
        with pytest.raises(LocalProtocolError):
            action.run(ctx)
    ctx.settle()


@pytest.mark.parametrize("state_name", list(SERVER_STATES))
def test_server_factories_reach_their_state(state_name: str) -> None:
    factory, expected = SERVER_STATES[state_name]
    assert factory().server.state is expected


@pytest.mark.parametrize("action", SERVER_ACTIONS, ids=lambda a: a.name)
@pytest.mark.parametrize("state_name", list(SERVER_STATES))
def test_server_every_state_every_input(state_name: str, action: Action) -> None:
    factory, _ = SERVER_STATES[state_name]
    ctx = factory()
    apply(ctx, action)
    # ... and the connection is still usable for more input afterwards
    for name in ("garbage", "ws-ping"):
        ctx.server.receive_data(CLIENT_BYTES[name], ctx.tick())
        ctx.settle()
    ctx.server.receive_eof(ctx.tick())
    ctx.settle()
    _far_timer(ctx)
    ctx.settle()


@pytest.mark.parametrize("state_name", list(SERVER_STATES))
def test_server_closed_is_final(state_name: str) -> None:
    factory, _ = SERVER_STATES[state_name]
    ctx = factory()
    ctx.server.close(ctx.tick())
    ctx.settle()
    ctx.server.receive_eof(ctx.tick())
    ctx.settle()
    _far_timer(ctx)
    ctx.settle()
    assert ctx.server.finished
    assert ctx.server.next_deadline() is None
    assert not ctx.server.wants_data
    closes = [e for e in ctx.events if type(e).__name__ == "ConnectionClosed"]
    assert len(closes) == 1  # reported exactly once
    for action in SERVER_ACTIONS:
        if action.allowed is not None and action.name.startswith("close"):
            apply(ctx, action)
            assert ctx.server.state is State.CLOSED


def test_pending_request_events_are_of_the_right_kind() -> None:
    assert any(isinstance(e, WebSocketRequest) for e in received_upgrade().events)
    assert any(isinstance(e, Request) for e in received_plain().events)
    assert any(isinstance(e, SseRequest) for e in received_sse().events)


_HYPOTHESIS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@_HYPOTHESIS
@given(
    state_name=st.sampled_from(sorted(SERVER_STATES)),
    actions=st.lists(st.sampled_from(SERVER_ACTIONS), max_size=12),
)
def test_server_sequences_of_inputs(state_name: str, actions: list[Action]) -> None:
    ctx = SERVER_STATES[state_name][0]()
    for action in actions:
        apply(ctx, action)
    closes = [e for e in ctx.events if type(e).__name__ == "ConnectionClosed"]
    assert len(closes) <= 1
    assert (len(closes) == 1) == ctx.server.finished


# --- the WebSocket client ------------------------------------------------------------------


@dataclass
class ClientCtx:
    client: WebSocketClientConnection
    now: float = 0.0

    def tick(self) -> float:
        self.now += 0.5
        return self.now

    def settle(self) -> None:
        while self.client.next_event() is not None:
            pass
        self.client.data_to_send(self.now)
        self.client.next_deadline()
        assert isinstance(self.client.finished, bool)


def ws_connecting() -> ClientCtx:
    ctx = ClientCtx(WebSocketClientConnection(0.0, "h", subprotocols=("diaproto.v1",)))
    ctx.settle()
    return ctx


def _ws_open(accept: str | None) -> ClientCtx:
    loop = websocket_pair(FakeClock(), accept=accept)
    assert isinstance(loop.client, WebSocketClientConnection)
    return ClientCtx(loop.client)


def ws_open_wire() -> ClientCtx:
    return _ws_open("diaproto.v1")


def ws_open_raw() -> ClientCtx:
    return _ws_open(None)


def ws_rejecting() -> ClientCtx:
    """A rejection whose body has not all arrived."""
    ctx = ws_connecting()
    ctx.client.receive_data(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 10\r\n\r\nab", 0.0)
    ctx.settle()
    return ctx


def ws_closing() -> ClientCtx:
    ctx = ws_open_wire()
    ctx.client.close(0.0)
    ctx.settle()
    return ctx


def ws_closed() -> ClientCtx:
    ctx = ws_open_wire()
    ctx.client.receive_eof(0.0)
    ctx.settle()
    return ctx


def ws_closed_connecting() -> ClientCtx:
    ctx = ws_connecting()
    ctx.client.close(0.0)
    ctx.settle()
    return ctx


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

OPEN_ONLY = {ClientState.OPEN}


@dataclass(frozen=True)
class ClientAction:
    name: str
    run: Callable[[ClientCtx], object]
    allowed: frozenset[ClientState] | None


def _client_data(data: bytes) -> Callable[[ClientCtx], object]:
    return lambda c: c.client.receive_data(data, c.tick())


def _client_far_timer(c: ClientCtx) -> None:
    c.now += 1e6
    c.client.handle_timer(c.now)


CLIENT_ACTIONS: list[ClientAction] = [
    *(
        ClientAction(f"receive_data({name})", _client_data(data), None)
        for name, data in SERVER_BYTES.items()
    ),
    ClientAction("receive_data(empty)", lambda c: c.client.receive_data(b"", c.tick()), None),
    ClientAction("receive_eof", lambda c: c.client.receive_eof(c.tick()), None),
    ClientAction("handle_timer(far future)", _client_far_timer, None),
    ClientAction("data_to_send", lambda c: c.client.data_to_send(c.tick()), None),
    ClientAction(
        "send_message(str)",
        lambda c: c.client.send_message("hi", c.tick()),
        frozenset(OPEN_ONLY),
    ),
    ClientAction(
        "send_message(bytes)",
        lambda c: c.client.send_message(b"hi", c.tick()),
        frozenset(OPEN_ONLY),
    ),
    ClientAction(
        "send_wire",
        lambda c: c.client.send_wire(CancelStream(1), c.tick()),
        frozenset(OPEN_ONLY),
    ),
    ClientAction("close", lambda c: c.client.close(c.tick()), frozenset(ClientState)),
]


def apply_client(ctx: ClientCtx, action: ClientAction) -> None:
    state = ctx.client.state
    if action.allowed is None:
        action.run(ctx)
    elif state in action.allowed:
        with contextlib.suppress(LocalProtocolError):
            action.run(ctx)
    else:
        with pytest.raises(LocalProtocolError):
            action.run(ctx)
    ctx.settle()


@pytest.mark.parametrize("state_name", list(CLIENT_STATES))
def test_client_factories_reach_their_state(state_name: str) -> None:
    factory, expected = CLIENT_STATES[state_name]
    assert factory().client.state is expected


@pytest.mark.parametrize("action", CLIENT_ACTIONS, ids=lambda a: a.name)
@pytest.mark.parametrize("state_name", list(CLIENT_STATES))
def test_client_every_state_every_input(state_name: str, action: ClientAction) -> None:
    ctx = CLIENT_STATES[state_name][0]()
    apply_client(ctx, action)
    ctx.client.receive_data(GARBAGE, ctx.tick())
    ctx.settle()
    ctx.client.receive_eof(ctx.tick())
    ctx.settle()
    _client_far_timer(ctx)
    ctx.settle()
    assert ctx.client.finished  # EOF and the far-future timer end every state


@_HYPOTHESIS
@given(
    state_name=st.sampled_from(sorted(CLIENT_STATES)),
    actions=st.lists(st.sampled_from(CLIENT_ACTIONS), max_size=12),
)
def test_client_sequences_of_inputs(state_name: str, actions: list[ClientAction]) -> None:
    ctx = CLIENT_STATES[state_name][0]()
    for action in actions:
        apply_client(ctx, action)


# --- the SSE client ------------------------------------------------------------------------


@dataclass
class SseCtx:
    client: SseClientConnection
    now: float = 0.0

    def tick(self) -> float:
        self.now += 0.5
        return self.now

    def settle(self) -> None:
        while self.client.next_event() is not None:
            pass
        self.client.data_to_send(self.now)
        self.client.next_deadline()
        assert isinstance(self.client.finished, bool)
        assert self.client.last_event_id is None or isinstance(self.client.last_event_id, str)
        assert self.client.retry is None or isinstance(self.client.retry, int)


def sse_connecting() -> SseCtx:
    ctx = SseCtx(SseClientConnection(0.0, "h", last_event_id="3"))
    ctx.settle()
    return ctx


def sse_open() -> SseCtx:
    loop = sse_pair(FakeClock())
    assert isinstance(loop.client, SseClientConnection)
    return SseCtx(loop.client)


def sse_rejecting() -> SseCtx:
    ctx = sse_connecting()
    ctx.client.receive_data(b"HTTP/1.1 500 Oops\r\ncontent-length: 10\r\n\r\nab", 0.0)
    ctx.settle()
    return ctx


def sse_closed() -> SseCtx:
    ctx = sse_open()
    ctx.client.close(0.0)
    ctx.settle()
    return ctx


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


@dataclass(frozen=True)
class SseAction:
    name: str
    run: Callable[[SseCtx], object]


def _sse_data(data: bytes) -> Callable[[SseCtx], object]:
    return lambda c: c.client.receive_data(data, c.tick())


def _sse_far_timer(c: SseCtx) -> None:
    c.now += 1e6
    c.client.handle_timer(c.now)


SSE_ACTIONS: list[SseAction] = [
    *(
        SseAction(f"receive_data({name})", _sse_data(data))
        for name, data in SSE_SERVER_BYTES.items()
    ),
    SseAction("receive_data(empty)", lambda c: c.client.receive_data(b"", c.tick())),
    SseAction("receive_eof", lambda c: c.client.receive_eof(c.tick())),
    SseAction("handle_timer(now)", lambda c: c.client.handle_timer(c.now)),
    SseAction("handle_timer(far future)", _sse_far_timer),
    SseAction("data_to_send", lambda c: c.client.data_to_send(c.tick())),
    SseAction("close", lambda c: c.client.close(c.tick())),
]


@pytest.mark.parametrize("state_name", list(SSE_STATES))
def test_sse_factories_reach_their_state(state_name: str) -> None:
    factory, expected = SSE_STATES[state_name]
    assert factory().client.state is expected


@pytest.mark.parametrize("action", SSE_ACTIONS, ids=lambda a: a.name)
@pytest.mark.parametrize("state_name", list(SSE_STATES))
def test_sse_client_every_state_every_input(state_name: str, action: SseAction) -> None:
    ctx = SSE_STATES[state_name][0]()
    action.run(ctx)  # no SSE client input is API misuse: none may raise
    ctx.settle()
    ctx.client.receive_eof(ctx.tick())
    ctx.settle()
    _sse_far_timer(ctx)
    ctx.settle()
    assert ctx.client.finished


@_HYPOTHESIS
@given(
    state_name=st.sampled_from(sorted(SSE_STATES)),
    actions=st.lists(st.sampled_from(SSE_ACTIONS), max_size=12),
)
def test_sse_client_sequences_of_inputs(state_name: str, actions: list[SseAction]) -> None:
    ctx = SSE_STATES[state_name][0]()
    for action in actions:
        action.run(ctx)
        ctx.settle()
