"""MessageConnection: diaproto.v1 in whole messages, for a server that frames them (ASGI)."""

from __future__ import annotations

import json

import pytest

from diaproto.config import ConnectionConfig, Limits, SchedulerConfig, Timeouts
from diaproto.errors import CloseCode, LocalProtocolError
from diaproto.events import (
    ConnectionClosed,
    Event,
    RemoteError,
    SlowConsumer,
    StreamFinished,
    StreamPaused,
    StreamResumed,
)
from diaproto.replay import ReplayBuffer
from diaproto.scheduler import Policy, Priority
from diaproto.server import MessageConnection
from diaproto.server.framing import Payload
from diaproto.server.messages import choose_subprotocol
from diaproto.wire import (
    SUBPROTOCOL,
    CancelStream,
    DataChunk,
    GrantCredit,
    OpenStream,
    decode_records,
)


def events(conn: MessageConnection) -> list[Event]:
    out: list[Event] = []
    while (event := conn.next_event()) is not None:
        out.append(event)
    return out


def records(message: bytes | str) -> list[DataChunk]:
    assert isinstance(message, bytes)
    return decode_records(message)


def texts(messages: list[bytes | str]) -> list[dict[str, object]]:
    return [json.loads(m) for m in messages if isinstance(m, str)]


def test_choose_subprotocol() -> None:
    assert choose_subprotocol(["x", SUBPROTOCOL]) == SUBPROTOCOL
    assert choose_subprotocol(["x"]) is None


def test_open_send_end_batches_records_between_text_messages() -> None:
    conn = MessageConnection(0.0)
    conn.receive_message('{"type":"open","stream":1,"text":"hi"}', 0.0)
    [opened] = events(conn)
    assert isinstance(opened, OpenStream)
    conn.open_stream(1, 0.0, token="t")
    conn.open_stream(2, 0.0)
    conn.send(1, b"ab", 0.0)
    conn.send(1, b"cd", 0.0)
    conn.end_stream(1, 0.0)
    conn.send(2, b"x", 0.0)
    out = conn.messages_to_send(0.0)
    assert out[0] == '{"type":"open","stream":1,"token":"t"}'
    assert out[1] == '{"type":"open","stream":2}'
    assert [(c.stream_id, c.seq, c.data) for c in records(out[2])] == [
        (1, 1, b"ab"),
        (1, 2, b"cd"),
    ]
    assert out[3] == '{"type":"end","stream":1,"seq":2}'
    assert [(c.stream_id, c.data) for c in records(out[4])] == [(2, b"x")]
    assert conn.messages_to_send(0.0) == []
    assert any(isinstance(e, StreamFinished) and e.stream_id == 1 for e in events(conn))
    assert conn.scheduler.has_stream(2)
    assert conn.response_headers[0][0] == "content-type"


def test_credit_holds_data_until_granted_and_cancel_drops_it() -> None:
    conn = MessageConnection(0.0)
    conn.open_stream(1, 0.0, credit=2)
    conn.messages_to_send(0.0)
    for chunk in (b"aa", b"bb", b"cc"):
        conn.send(1, chunk, 0.0)
    [first] = conn.messages_to_send(1.0)
    assert [c.data for c in records(first)] == [b"aa"]
    assert conn.messages_to_send(2.0) == []
    conn.receive_message('{"type":"credit","stream":1,"bytes":2}', 3.0)
    assert isinstance(events(conn)[0], GrantCredit)
    [second] = conn.messages_to_send(3.0)
    assert [c.data for c in records(second)] == [b"bb"]
    conn.receive_message('{"type":"cancel","stream":1}', 4.0)
    assert isinstance(events(conn)[0], CancelStream)
    assert conn.messages_to_send(4.0) == []
    assert not conn.scheduler.has_stream(1)


def test_bad_messages_are_answered_and_the_connection_goes_on() -> None:
    conn = MessageConnection(0.0)
    conn.receive_message(b"\x00", 0.0)
    conn.receive_message('{"type":"nope","stream":3}', 0.0)
    found = events(conn)
    assert [type(e) for e in found] == [RemoteError, RemoteError]
    assert all(isinstance(e, RemoteError) and not e.fatal for e in found)
    answers = texts(conn.messages_to_send(0.0))
    assert [(a["stream"], a["code"]) for a in answers] == [
        (None, "bad_message"),
        (3, "unknown_type"),
    ]
    assert not conn.finished


def test_an_oversize_message_closes_with_1009() -> None:
    conn = MessageConnection(0.0, ConnectionConfig(limits=Limits(max_message_bytes=8)))
    conn.open_stream(1, 0.0)
    conn.send(1, b"queued", 0.0)
    conn.receive_message("é" * 5, 1.0)  # 10 bytes of UTF-8
    assert conn.finished and conn.graceful and conn.close_code == CloseCode.MESSAGE_TOO_BIG
    found = events(conn)
    assert isinstance(found[0], RemoteError) and found[0].fatal
    assert found[-1] == ConnectionClosed(CloseCode.MESSAGE_TOO_BIG, "message larger than 8")
    assert conn.unsent == ['{"type":"open","stream":1}', b"queued"]
    conn.receive_message("late", 2.0)  # ignored once finished
    conn.receive_close(2.0)
    conn.close(2.0)
    conn.handle_timer(2.0)
    assert events(conn) == []
    assert conn.messages_to_send(2.0) == []
    assert conn.next_deadline() is None
    with pytest.raises(LocalProtocolError):
        conn.send(1, b"x", 2.0)


def test_receive_close_and_close() -> None:
    conn = MessageConnection(0.0)
    conn.receive_close(1.0, 1005)
    assert conn.finished and not conn.graceful and conn.close_code is None
    assert events(conn) == [ConnectionClosed(1005, "the client went away")]
    conn = MessageConnection(0.0)
    conn.close(1.0, CloseCode.GOING_AWAY)
    assert conn.graceful and conn.close_code == CloseCode.GOING_AWAY


def test_stream_api_refusals() -> None:
    conn = MessageConnection(0.0)
    with pytest.raises(LocalProtocolError):
        conn.open_stream(-1, 0.0)
    conn.open_stream(1, 0.0)
    with pytest.raises(LocalProtocolError):
        conn.send(1, "text", 0.0)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        conn.end_response(0.0)
    with pytest.raises(LocalProtocolError):
        MessageConnection(0.0, sse=True, id_prefix="bad prefix")


def test_fail_and_resume_streams() -> None:
    replay: ReplayBuffer[Payload] = ReplayBuffer(1, max_messages=2)
    conn = MessageConnection(0.0)
    conn.open_stream(1, 0.0, replay=replay)
    for chunk in (b"a", b"b", b"c"):
        conn.send(1, chunk, 0.0)
    conn.messages_to_send(0.0)
    assert conn.resume_stream(1, 1, 1.0)
    [again] = conn.messages_to_send(1.0)
    assert [c.seq for c in records(again)] == [2, 3]
    assert not conn.resume_stream(1, 0, 2.0)  # record 1 left the window
    [gap] = texts(conn.messages_to_send(2.0))
    assert gap["code"] == "replay_gap"
    conn.open_stream(2, 2.0)
    conn.fail_stream(None, "stream_exists", "taken", 2.0)
    assert conn.scheduler.has_stream(2)


def test_pause_and_resume_reach_the_producer() -> None:
    config = ConnectionConfig(
        scheduler=SchedulerConfig(high_watermark=1000, low_watermark=100, write_window=600)
    )
    conn = MessageConnection(0.0, config)
    conn.open_stream(1, 0.0, priority=Priority.STREAM, policy=Policy.PAUSE)
    conn.messages_to_send(0.0)
    while not conn.scheduler.is_paused(1):
        conn.send(1, b"x" * 200, 0.0)
    assert StreamPaused(1) in events(conn)
    sent = conn.messages_to_send(1.0)
    conn.set_transport_buffered(sum(len(m) for m in sent), 1.0)
    assert conn.write_deadline == 31.0
    conn.set_transport_buffered(0, 1.1)
    assert conn.write_deadline is None
    while StreamResumed(1) not in events(conn):
        assert conn.messages_to_send(2.0)
    assert not conn.scheduler.is_paused(1)


def test_the_write_timeout_drops_a_client_that_stopped_reading() -> None:
    conn = MessageConnection(0.0, ConnectionConfig(timeouts=Timeouts(write_timeout=5.0)))
    conn.open_stream(1, 0.0)
    conn.send(1, b"x", 0.0)
    conn.messages_to_send(0.0)
    conn.set_transport_buffered(100, 1.0)
    conn.set_transport_buffered(100, 2.0)  # no progress: the clock runs on
    conn.set_transport_buffered(50, 3.0)  # progress: it restarts
    assert conn.next_deadline() == 8.0
    conn.handle_timer(7.0)
    assert not conn.finished
    conn.handle_timer(8.0)
    assert conn.finished and not conn.graceful
    assert events(conn)[-1] == ConnectionClosed(
        CloseCode.ABNORMAL_CLOSURE, "the peer stopped reading"
    )
    assert conn.write_deadline is None
    conn.set_transport_buffered(0, 9.0)


def test_a_slow_consumer_closes_with_1008() -> None:
    conn = MessageConnection(0.0, ConnectionConfig(scheduler=SchedulerConfig(write_window=10)))
    conn.open_stream(1, 0.0, policy=Policy.DISCONNECT, limit=400, grace=1.0)
    conn.messages_to_send(0.0)
    conn.set_transport_buffered(10, 0.0)
    conn.send(1, b"x" * 300, 0.0)
    assert conn.next_deadline() == 1.0
    conn.handle_timer(1.0)
    found = events(conn)
    assert any(isinstance(e, SlowConsumer) for e in found)
    assert conn.finished and conn.graceful and conn.close_code == CloseCode.POLICY_VIOLATION


def test_sse_retry_data_end_and_the_end_of_the_response() -> None:
    conn = MessageConnection(0.0, sse=True, id_prefix="ep.")
    conn.receive_message("ignored", 0.0)
    conn.open_stream(1, 0.0)
    conn.send(1, b"hi", 0.0)
    conn.end_stream(1, 0.0)
    conn.end_response(0.0)
    with pytest.raises(LocalProtocolError):
        conn.send(1, b"late", 0.0)
    out = b"".join(m for m in conn.messages_to_send(0.0) if isinstance(m, bytes))
    assert out == (
        b"retry: 2000\n\nid: ep.1\nevent: data\ndata: aGk=\n\n"
        b'event: end\ndata: {"type":"end","stream":1,"seq":1}\n\n'
    )
    assert conn.finished and conn.graceful


def test_sse_heartbeat_error_events_and_shutdown() -> None:
    config = ConnectionConfig(timeouts=Timeouts(sse_heartbeat=10.0), sse_retry_ms=None)
    conn = MessageConnection(0.0, config, sse=True)
    conn.open_stream(1, 0.0)
    assert conn.messages_to_send(0.0) == []
    assert conn.next_deadline() == 10.0
    conn.handle_timer(10.0)
    assert conn.messages_to_send(10.0) == [b":\n\n"]
    conn.set_transport_buffered(5, 20.0)
    conn.handle_timer(20.0)  # bytes in flight: no heartbeat piles up
    conn.set_transport_buffered(0, 20.0)
    assert conn.messages_to_send(20.0) == []
    conn.fail_stream(1, "internal", "boom", 21.0)
    [error] = conn.messages_to_send(21.0)
    assert b"event: error" in error and b'"code":"internal"' in error
    conn.close(22.0, CloseCode.GOING_AWAY)
    [going] = conn.messages_to_send(22.0)
    assert b'"code":"going_away"' in going and conn.graceful


def test_sse_close_cuts_and_a_slow_consumer_is_cut() -> None:
    conn = MessageConnection(0.0, sse=True)
    conn.close(1.0, CloseCode.INTERNAL_ERROR)
    assert conn.finished and not conn.graceful
    conn = MessageConnection(
        0.0, ConnectionConfig(scheduler=SchedulerConfig(write_window=10)), sse=True
    )
    conn.open_stream(1, 0.0, policy=Policy.DISCONNECT, limit=400, grace=0.0)
    conn.messages_to_send(0.0)
    conn.set_transport_buffered(10, 0.0)
    conn.send(1, b"x" * 300, 0.0)
    conn.handle_timer(0.0)
    events(conn)
    assert conn.finished and not conn.graceful
    conn.set_transport_buffered(5, 1.0)
    conn.handle_timer(100.0)  # finished: the write timeout no longer runs
