"""McpChannel on a real ServerConnection over the in-memory loopback (WebSocket subprotocol
``mcp`` and SSE), time from a FakeClock. A lagging client is a transport that reports bytes
it has not written yet (``set_transport_buffered``): bulk output then stays queued in the
scheduler, where control messages can overtake it."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial as bind
from typing import Any

from diaproto.config import ConnectionConfig, SchedulerConfig, Timeouts
from diaproto.events import (
    ConnectionClosed,
    SseMessage,
    StreamPaused,
    StreamResumed,
    WebSocketMessage,
)
from diaproto.mcp import McpSession, Outbound, ServerInfo, Tool
from diaproto.mcp.channel import BULK, LOG, LOG_LIMIT, PROGRESS, McpChannel
from diaproto.mcp.eventstore import MemoryEventStore
from diaproto.mcp.jsonrpc import (
    JsonRpcNotification,
    JsonRpcRequest,
    JsonRpcResponse,
    RequestId,
    encode_message,
)
from diaproto.mcp.protocol import Kind
from diaproto.sse import SseEvent, SseParser
from diaproto.testing import Loopback, sse_pair, websocket_pair

QUIET = Timeouts(ping_interval=None, ping_timeout=None, idle=None, sse_heartbeat=None)
CONFIG = ConnectionConfig(timeouts=QUIET)


def ws(config: ConnectionConfig = CONFIG) -> tuple[Loopback, McpChannel]:
    loop = websocket_pair(offer=("mcp",), accept="mcp", server_config=config)
    return loop, McpChannel(loop.server, loop.clock.now, sse=False)


def texts(loop: Loopback) -> list[dict[str, Any]]:
    """What the client received, as JSON, once the low classes' linger has passed."""
    loop.advance(0.01)
    return [
        json.loads(event.data)
        for event in loop.take_client_events()
        if isinstance(event, WebSocketMessage) and isinstance(event.data, str)
    ]


def lag(loop: Loopback) -> None:
    """The transport is a full write window behind: only control messages leave."""
    loop.server.set_transport_buffered(loop.server.config.scheduler.write_window)


def catch_up(loop: Loopback) -> None:
    loop.server.set_transport_buffered(0)


def response(request_id: RequestId, token: str | int | None = None) -> Outbound:
    text = encode_message(JsonRpcResponse(request_id, {"done": request_id}))
    return Outbound(text, Kind.RESPONSE, request_id, token, final=True)


def partial(request_id: RequestId, seq: int, size: int = 10) -> Outbound:
    params = {"partialResultToken": request_id, "seq": seq, "content": "x" * size}
    text = encode_message(JsonRpcNotification("notifications/tools/partial_result", params))
    return Outbound(text, Kind.PARTIAL, request_id)


def progress(request_id: RequestId, token: str | int, value: float) -> Outbound:
    params = {"progressToken": token, "progress": value}
    text = encode_message(JsonRpcNotification("notifications/progress", params))
    return Outbound(text, Kind.PROGRESS, request_id, token)


def log(data: str) -> Outbound:
    params = {"level": "info", "data": data}
    return Outbound(encode_message(JsonRpcNotification("notifications/message", params)), Kind.LOG)


def summary(body: dict[str, Any]) -> tuple[str, object]:
    if "method" in body:
        params = body.get("params", {})
        return body["method"].rsplit("/", 1)[-1], params.get("seq", params.get("progress"))
    return "response", body["id"]


# --- ordering ------------------------------------------------------------------------------


def test_a_response_overtakes_queued_bulk_of_another_request() -> None:
    loop, channel = ws()
    lag(loop)
    for seq in range(3):
        assert channel.send(partial("a", seq), loop.clock.now)
    assert channel.send(response("b"), loop.clock.now)
    assert [summary(b) for b in texts(loop)] == [("response", "b")]
    catch_up(loop)
    assert [summary(b) for b in texts(loop)] == [("partial_result", n) for n in range(3)]


def test_a_response_follows_its_own_queued_partial_results() -> None:
    loop, channel = ws()
    lag(loop)
    for seq in range(3):
        channel.send(partial("a", seq), loop.clock.now)
    channel.send(response("a"), loop.clock.now)
    assert texts(loop) == []  # the response waits behind the output it completes
    catch_up(loop)
    assert [summary(b) for b in texts(loop)] == [
        ("partial_result", 0),
        ("partial_result", 1),
        ("partial_result", 2),
        ("response", "a"),
    ]


def test_a_response_after_its_partial_results_were_sent_goes_at_once() -> None:
    loop, channel = ws()
    channel.send(partial("a", 0), loop.clock.now)
    assert [summary(b) for b in texts(loop)] == [("partial_result", 0)]
    lag(loop)
    channel.send(response("a"), loop.clock.now)
    assert [summary(b) for b in texts(loop)] == [("response", "a")]


def test_queued_progress_is_withdrawn_by_the_response() -> None:
    loop, channel = ws()
    lag(loop)
    channel.send(progress(1, "t", 0.5), loop.clock.now)
    channel.send(progress(2, "u", 0.5), loop.clock.now)  # another request's report stays
    channel.send(response(1, "t"), loop.clock.now)
    assert [summary(b) for b in texts(loop)] == [("response", 1)]
    catch_up(loop)
    assert [summary(b) for b in texts(loop)] == [("progress", 0.5)]
    assert loop.server.scheduler.metrics(PROGRESS).coalesced == 1


def test_session_responses_withdraw_their_progress_end_to_end() -> None:
    """The session labels a call's response with its progress token, so on the wire nothing
    about the call follows the response."""
    loop, channel = ws()
    session = McpSession.ready(ServerInfo("s", "1"), (Tool("speak", "", {}),), "2026-07-28", {})
    params = {"name": "speak", "_meta": {"progressToken": "tok"}}
    session.receive(JsonRpcRequest(7, "tools/call", params))
    lag(loop)
    session.progress(7, 0.1)
    session.progress(7, 0.2)
    session.respond(7, {"content": []})
    while (message := session.next_outbound()) is not None:
        channel.send(message, loop.clock.now)
    catch_up(loop)
    assert [summary(b) for b in texts(loop)] == [("response", 7)]


def test_progress_coalesces_to_the_latest_per_token() -> None:
    loop, channel = ws()
    lag(loop)
    for value in (0.1, 0.2, 0.3):
        channel.send(progress(1, "t", value), loop.clock.now)
    channel.send(progress(2, "u", 0.9), loop.clock.now)
    catch_up(loop)
    assert [summary(b) for b in texts(loop)] == [("progress", 0.3), ("progress", 0.9)]
    assert loop.server.scheduler.metrics(PROGRESS).coalesced == 2


def test_logs_are_dropped_oldest_first_when_the_client_lags() -> None:
    loop, channel = ws()
    lag(loop)
    line = "l" * 1000
    count = LOG_LIMIT // 1000 + 20
    for n in range(count):
        assert channel.send(log(f"{n:04d}{line}"), loop.clock.now)
    drops = loop.server.scheduler.metrics(LOG).drops
    assert drops > 0
    catch_up(loop)
    received = [b["params"]["data"][:4] for b in texts(loop)]
    assert received == [f"{n:04d}" for n in range(drops, count)]  # the newest survive


def test_control_kinds_go_first() -> None:
    loop, channel = ws()
    lag(loop)
    channel.send(log("bg"), loop.clock.now)
    note = encode_message(JsonRpcNotification("notifications/tools/list_changed"))
    channel.send(Outbound(note, Kind.CONTROL), loop.clock.now)
    assert [b["method"] for b in texts(loop)] == ["notifications/tools/list_changed"]


# --- backpressure --------------------------------------------------------------------------


def test_bulk_pauses_and_resumes() -> None:
    scheduler = SchedulerConfig(
        write_window=4096, high_watermark=8192, low_watermark=2048, max_buffered=1 << 20
    )
    loop, channel = ws(ConnectionConfig(timeouts=QUIET, scheduler=scheduler))
    lag(loop)
    seq = 0
    while not channel.paused:
        assert channel.send(partial("a", seq, 1000), loop.clock.now)
        seq += 1
    loop.pump()
    assert StreamPaused(BULK) in loop.take_server_events()
    catch_up(loop)
    received = texts(loop)
    assert [b["params"]["seq"] for b in received] == list(range(seq))
    assert not channel.paused
    assert StreamResumed(BULK) in loop.take_server_events()


def test_past_the_hard_budget_the_connection_is_closed() -> None:
    scheduler = SchedulerConfig(
        write_window=1024, high_watermark=4096, low_watermark=1024, max_buffered=16384
    )
    loop, channel = ws(ConnectionConfig(timeouts=QUIET, scheduler=scheduler))
    lag(loop)
    sent = 0
    while channel.send(partial("a", sent, 1000), loop.clock.now):
        sent += 1
        assert sent < 100
    assert channel.closed
    assert not channel.send(response("b"), loop.clock.now)
    catch_up(loop)
    loop.pump()
    closed = [e for e in loop.take_client_events() if isinstance(e, ConnectionClosed)]
    assert [e.code for e in closed] == [1008]


# --- SSE -----------------------------------------------------------------------------------


def sse(store: MemoryEventStore | None = None) -> tuple[Loopback, McpChannel]:
    """An SSE channel; with ``store``, its events get ids as they leave (stream ``r1``)."""
    stamp = None if store is None else bind(_stamp, store)
    loop = sse_pair(server_config=CONFIG, stamp=stamp)
    loop.client_reading = False  # read the raw bytes: the priming event has no data
    return loop, McpChannel(loop.server, loop.clock.now, sse=True)


def _stamp(store: MemoryEventStore, event: SseEvent) -> SseEvent:
    return event if event.id is not None else replace(event, id=store.store("r1", event.data))


def events(loop: Loopback) -> list[SseMessage]:
    loop.advance(0.01)
    parser = SseParser()
    parser.feed(bytes(loop.held))
    loop.held.clear()
    out: list[SseMessage] = []
    while (event := parser.next_event()) is not None:
        out.append(event)
    return out


def test_ids_follow_the_order_events_leave() -> None:
    """Progress overtakes queued partial results; ids given as events leave still make
    "everything after id X" exact, and the store holds exactly the wire order."""
    store = MemoryEventStore()
    loop, channel = sse(store)
    now = loop.clock.now
    loop.server.set_transport_buffered(loop.server.config.scheduler.write_window)  # held
    channel.send(partial(1, 0), now)
    channel.send(partial(1, 1), now)
    channel.send(progress(1, "t", 0.5), now)
    channel.send(log("x"), now)
    loop.server.set_transport_buffered(0)
    sent = [(e.id, summary(json.loads(e.data))) for e in events(loop)]
    assert sent == [
        ("r1.1", ("progress", 0.5)),
        ("r1.2", ("partial_result", 0)),
        ("r1.3", ("partial_result", 1)),
        ("r1.4", ("message", None)),
    ]
    assert [(i, summary(json.loads(t))) for i, t in store.replay_after("r1.1")[1]] == sent[1:]


def test_what_never_left_is_kept_at_close() -> None:
    loop, channel = sse(MemoryEventStore())
    now = loop.clock.now
    loop.server.set_transport_buffered(loop.server.config.scheduler.write_window)
    channel.send(partial(1, 0), now)
    channel.send(response(1), now)
    loop.server.close(now)
    unsent = [summary(json.loads(p.data)) for p in loop.server.unsent if isinstance(p, SseEvent)]
    assert unsent == [("partial_result", 0), ("response", 1)]


def test_sse_without_a_store_sends_no_ids() -> None:
    loop, channel = sse()
    channel.send(response(1), loop.clock.now)
    [event] = events(loop)
    assert (event.event, event.id) == ("message", None)
    assert json.loads(event.data)["id"] == 1


def test_replay_keeps_order_with_the_response() -> None:
    store = MemoryEventStore()
    for text in (
        "",
        encode_message(JsonRpcNotification("a")),
        encode_message(JsonRpcNotification("b")),
    ):
        store.store("r1", text)  # what the lost connection sent: priming event, a, b
    loop, channel = sse(store)
    loop.server.set_transport_buffered(loop.server.config.scheduler.write_window)
    for event_id, text in store.replay_after("r1.1")[1]:
        channel.replay(event_id, text, 5, loop.clock.now)
    channel.send(response(5), loop.clock.now)
    loop.server.set_transport_buffered(0)
    sent = events(loop)
    assert [(e.id, summary(json.loads(e.data))) for e in sent] == [
        ("r1.2", ("a", None)),
        ("r1.3", ("b", None)),
        ("r1.4", ("response", 5)),
    ]


def test_nothing_new_overtakes_a_replay() -> None:
    """A resumed stream sends what it replays first, then anything new (progress and control
    messages included): ids on the wire only increase, so progress never goes back and a
    second resume from the last id seen replays nothing twice."""
    store = MemoryEventStore()
    for text in ("", partial(1, 0).text, progress(1, "t", 0.5).text):
        store.store("r1", text)  # what the lost connection recorded: priming, a partial, 0.5
    loop, channel = sse(store)
    now = loop.clock.now
    lag(loop)  # the replay is still queued when the call reports again
    for event_id, text in store.replay_after("r1.1")[1]:
        channel.replay(event_id, text, 1, now)
    channel.send(progress(1, "t", 0.6), now)
    channel.send(Outbound(encode_message(JsonRpcRequest(9, "ping")), Kind.CONTROL), now)
    channel.send(partial(1, 1), now)
    loop.server.set_transport_buffered(0)
    sent = [(e.id, summary(json.loads(e.data))) for e in events(loop)]
    assert sent == [
        ("r1.2", ("partial_result", 0)),
        ("r1.3", ("progress", 0.5)),
        ("r1.4", ("progress", 0.6)),
        ("r1.5", ("ping", None)),
        ("r1.6", ("partial_result", 1)),
    ]
    # Once the replay has left, priorities apply again: progress overtakes queued output.
    lag(loop)
    channel.send(partial(1, 2), now)
    channel.send(progress(1, "t", 0.7), now)
    loop.server.set_transport_buffered(0)
    assert [summary(json.loads(e.data)) for e in events(loop)] == [
        ("progress", 0.7),
        ("partial_result", 2),
    ]


def test_a_replay_cut_short_by_the_client_leaving() -> None:
    loop, channel = sse(MemoryEventStore())
    lag(loop)
    channel.replay("r1.2", partial(1, 0).text, 1, loop.clock.now)
    assert channel.replaying
    loop.server.close(loop.clock.now)
    assert not channel.replaying
    assert not channel.send(progress(1, "t", 0.6), loop.clock.now)


def test_replay_of_the_standing_stream() -> None:
    loop, channel = sse(MemoryEventStore())
    channel.replay("g1.1", encode_message(JsonRpcNotification("n")), None, loop.clock.now)
    [event] = events(loop)
    assert event.id == "g1.1"


def test_endpoint_and_finish() -> None:
    loop, channel = sse()
    channel.endpoint("/messages?session_id=abc", loop.clock.now)
    [event] = events(loop)
    assert (event.event, event.data) == ("endpoint", "/messages?session_id=abc")
    channel.finish(loop.clock.now)
    assert channel.closed
    assert not channel.send(response(1), loop.clock.now)
    assert loop.server.data_to_send(loop.clock.now).endswith(b"0\r\n\r\n")  # body ended


def test_send_after_the_client_left_returns_false() -> None:
    loop, channel = ws()
    loop.server.receive_eof(loop.clock.now)  # the transport is gone, no close frame
    loop.pump()
    assert any(isinstance(e, ConnectionClosed) for e in loop.take_server_events())
    assert not channel.send(response(1), loop.clock.now)
    assert channel.closed
    assert not channel.send(log("x"), loop.clock.now)
