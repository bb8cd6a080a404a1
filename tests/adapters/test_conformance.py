"""One behaviour suite for every runtime: each test runs on asyncio, anyio, trio, tornado and
sockets (the ``runtime`` fixture), starts the server through the adapter's ``start_in_thread`` and
checks what a peer sees over real sockets, with clients nobody here wrote (``websockets``,
``httpx``, ``httpx-sse``) or raw sockets for peers that misbehave on purpose. The server side
is inspected only through ``ServerHandle.call``. Waits are bounded polls, never timing
assertions.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import time
from typing import Any

import httpx
import pytest
from conformance_support import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    Probe,
    RawWebSocket,
    RecordingService,
    healthz,
    raw_http,
    ws_connect,
)
from httpx_sse import connect_sse
from support import (
    POLL_LIMIT,
    receive_stream,
    records,
    recv_json,
    serving,
    start,
    synthetic_audio,
    wait_until,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from diaproto.config import ConnectionConfig, SchedulerConfig, Timeouts

SUBPROTOCOL = Subprotocol("diaproto.v1")
TEXT = "Hello there. This is a short test of streaming speech."
MEDIUM_TEXT = " ".join(f"Sentence number {n} is here to make the stream last." for n in range(12))
LONG_TEXT = " ".join(f"Sentence number {n} is here to make the stream last." for n in range(40))
NO_PINGS = Timeouts(ping_interval=None, ping_timeout=None)


def raw_receive_stream(ws: RawWebSocket, stream: int) -> tuple[list[int], bytes]:
    """Like ``receive_stream`` on a raw client (skips the ack; fails on an error)."""
    seqs: list[int] = []
    data = bytearray()
    for _ in range(100_000):
        opcode, payload = ws.recv_frame()
        if opcode == OP_TEXT:
            control = json.loads(payload)
            assert control["type"] != "error", control
            if control["type"] == "end" and control["stream"] == stream:
                assert control["seq"] == len(seqs)
                return seqs, bytes(data)
        elif opcode == OP_BINARY:
            for record_stream, seq, chunk in records(payload):
                assert record_stream == stream
                seqs.append(seq)
                data += chunk
    raise AssertionError("the stream did not end")


# --- handshake ----------------------------------------------------------------------------


def test_handshake_selects_the_subprotocol(runtime: str) -> None:
    with serving(runtime, RecordingService()) as handle:
        with ws_connect(handle.port, "x-other", "diaproto.v1") as ws:
            assert ws.subprotocol == SUBPROTOCOL
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(handle.port)
        assert refused.value.response.status_code == 400
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(handle.port, "x-other")
        assert refused.value.response.status_code == 400
        assert healthz(handle.port) == 200


# --- streaming, priorities, batching, backpressure ----------------------------------------


def test_stream_runs_to_the_end(runtime: str) -> None:
    with serving(runtime, RecordingService()) as handle, ws_connect(handle.port, SUBPROTOCOL) as ws:
        ws.send(json.dumps({"type": "open", "stream": 3, "text": TEXT, "voice": "S1"}))
        ack = recv_json(ws)
        assert ack["type"] == "open" and ack["stream"] == 3 and ack["token"]
        seqs, audio, end = receive_stream(ws, 3)
    assert seqs == list(range(1, len(seqs) + 1)) and seqs
    assert end["seq"] == len(seqs)
    assert audio == synthetic_audio(TEXT)


def test_control_overtakes_queued_data(runtime: str) -> None:
    """An ``error`` for a second stream overtakes bulk data of the first stream that was
    queued (not yet written) when the error was produced: the client sees at most the bulk
    bytes that had already left the scheduler then. FIFO output would put every queued
    byte first, so the test fails for a FIFO server."""
    probe = Probe()
    # Room for more than the kernel's socket buffers can take (tcp_wmem's max is 4 MiB).
    big = SchedulerConfig(high_watermark=16 << 20, low_watermark=1 << 20, max_buffered=32 << 20)
    config = ConnectionConfig(scheduler=big)
    with serving(runtime, probe, config) as handle, RawWebSocket(handle.port, rcvbuf=4096) as ws:
        assert ws.status == 101
        ws.send_json({"type": "open", "stream": 1, "text": "bulk"})
        opcode, payload = ws.recv_frame()
        assert opcode == OP_TEXT and json.loads(payload)["type"] == "open"
        # Fill until the transport is blocked (we do not read) and the scheduler itself
        # holds a lot of stream 1.
        target = 8 << 20
        for _ in range(200):
            handle.call(lambda: probe.top_up(0, 1, target))
            time.sleep(0.02)
            if handle.call(lambda: probe.queued(0, 1)) >= target // 2:
                break
        else:
            raise AssertionError("the transport never blocked")
        handle.call(lambda: probe.top_up(0, 1, target))
        ws.send_json({"type": "open", "stream": 2, "text": "nope"})  # refused: invalid_request
        data_before_error = 0
        seqs: list[int] = []
        for _ in range(100_000):
            opcode, payload = ws.recv_frame()
            if opcode == OP_BINARY:
                for stream, seq, chunk in records(payload):
                    assert stream == 1
                    seqs.append(seq)
                    data_before_error += len(chunk)
                continue
            assert opcode == OP_TEXT, opcode
            error = json.loads(payload)
            assert error["type"] == "error" and error["stream"] == 2, error
            assert error["code"] == "invalid_request"
            break
        else:
            raise AssertionError("no error answer")
        ((released, queued),) = handle.call(lambda: list(probe.refusals))
        assert queued > 0, "nothing was queued when the error was produced: no evidence"
        assert data_before_error <= released, (data_before_error, released, queued)
        assert seqs == list(range(1, len(seqs) + 1))


def test_records_are_batched(runtime: str) -> None:
    count = 64
    probe = Probe()
    with serving(runtime, probe) as handle, ws_connect(handle.port, SUBPROTOCOL) as ws:
        ws.send(json.dumps({"type": "open", "stream": 5, "text": f"burst:{count}:200"}))
        assert recv_json(ws)["type"] == "open"
        per_message: list[int] = []
        seqs: list[int] = []
        for _ in range(count + 1):
            message = ws.recv(timeout=POLL_LIMIT)
            if isinstance(message, str):
                end = json.loads(message)
                assert end == {"type": "end", "stream": 5, "seq": count}
                break
            batch = records(message)
            per_message.append(len(batch))
            seqs += [seq for _, seq, _ in batch]
        else:
            raise AssertionError("no end")
    assert seqs == list(range(1, count + 1))
    assert max(per_message) > 1, per_message  # several records in one binary message
    assert len(per_message) < count


def test_backpressure_pauses_a_stalled_reader(runtime: str) -> None:
    scheduler = SchedulerConfig(
        high_watermark=128 * 1024, low_watermark=32 * 1024, max_buffered=512 * 1024
    )
    config = ConnectionConfig(scheduler=scheduler)
    service = RecordingService()
    with (
        serving(runtime, service, config) as handle,
        RawWebSocket(handle.port, rcvbuf=4096) as ws,
    ):
        # ~10 MB of audio: more than the kernel's send buffer can ever absorb (it
        # autotunes up to 4 MB), so the core must hold the rest and pause the producer.
        ws.send_json({"type": "open", "stream": 1, "text": LONG_TEXT})
        # Generating the megabytes the kernel absorbs first takes seconds of CPU: on a loaded
        # machine, many (bounded all the same).
        wait_until(
            lambda: handle.call(lambda: 1 in service.paused), "the stream paused", limit=90.0
        )
        generation = handle.call(service.only_generation)
        wait_until(
            lambda: handle.call(lambda: bool(generation.listeners[0].paused)),
            "the producer is held",
        )
        for _ in range(10):  # bounded: the budget holds while the reader stalls
            buffered = handle.call(
                lambda: max(s.conn.scheduler.buffered_bytes for s in service.sessions())
            )
            assert buffered <= scheduler.max_buffered, buffered
            time.sleep(0.02)
        assert not generation.finished
        # Draining 10 MB through a 4 KiB window would take minutes; lossless resumption
        # after a stall is proved by the adapters' stop-reading tests and the interop resume.


# --- heartbeats and timeouts --------------------------------------------------------------


def test_dead_peer_is_detected(runtime: str) -> None:
    """A peer that never answers pings gets a 1011 close; the server reports 1011."""
    timeouts = Timeouts(ping_interval=0.2, ping_timeout=0.2, close_timeout=2.0, idle=None)
    probe = Probe()
    config = ConnectionConfig(timeouts=timeouts)
    with serving(runtime, probe, config) as handle, RawWebSocket(handle.port) as ws:
        code, seen = ws.recv_until_close()
        assert OP_PING in seen  # the heartbeat went out first
        assert code == 1011
        ws.send_frame(OP_CLOSE, struct.pack("!H", 1011))
        wait_until(lambda: handle.call(lambda: bool(probe.closed)), "the server noticed")
        assert handle.call(lambda: probe.closed[0][0]) == 1011
        ws.wait_eof()


def test_live_peer_survives_heartbeats(runtime: str) -> None:
    timeouts = Timeouts(ping_interval=0.1, ping_timeout=0.5, idle=None)
    probe = Probe()
    with serving(runtime, probe, ConnectionConfig(timeouts=timeouts)) as handle:
        with ws_connect(handle.port, SUBPROTOCOL) as ws:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=1.0)  # ten ping intervals of quiet: pongs keep it open
            ws.send(json.dumps({"type": "open", "stream": 1, "text": "burst:3:10"}))
            assert recv_json(ws)["type"] == "open"
            assert receive_stream(ws, 1)[0] == [1, 2, 3]
        assert handle.call(lambda: probe.closed[0][0] if probe.closed else None) != 1011


def test_idle_timeout(runtime: str) -> None:
    timeouts = Timeouts(idle=0.3, ping_interval=0.1, ping_timeout=1.0)
    probe = Probe()
    with serving(runtime, probe, ConnectionConfig(timeouts=timeouts)) as handle:
        # A WebSocket with no messages either way is closed (pongs are not activity).
        with ws_connect(handle.port, SUBPROTOCOL) as ws:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=POLL_LIMIT)
            assert ws.close_code == 1000
        wait_until(lambda: handle.call(lambda: bool(probe.closed)), "the server noticed")
        # An HTTP keep-alive connection with no next request is closed too.
        answer = raw_http(handle.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")


def test_close_timeout(runtime: str) -> None:
    """Our close frame goes unanswered: the server drops the transport itself."""
    timeouts = Timeouts(idle=0.2, ping_interval=None, ping_timeout=None, close_timeout=0.3)
    probe = Probe()
    with serving(runtime, probe, ConnectionConfig(timeouts=timeouts)) as handle:
        with RawWebSocket(handle.port) as ws:
            code, _ = ws.recv_until_close()
            assert code == 1000
            assert ws.wait_eof() == b""  # never answered: the server hangs up anyway
        wait_until(lambda: handle.call(lambda: bool(probe.closed)), "the server noticed")
        assert handle.call(lambda: probe.closed[0][0]) == 1006


# --- SSE resume ---------------------------------------------------------------------------


def test_sse_resume_with_last_event_id(runtime: str) -> None:
    url = "/v1/stream"
    params = {"text": TEXT, "id": "conformance-1"}
    seqs: list[int] = []
    epochs: list[str] = []
    audio = bytearray()
    end: dict[str, Any] | None = None
    with (
        serving(runtime, RecordingService()) as handle,
        httpx.Client(
            base_url=f"http://127.0.0.1:{handle.port}", trust_env=False, timeout=POLL_LIMIT
        ) as client,
    ):
        for attempt in range(2):
            headers = {"Last-Event-ID": f"{epochs[-1]}.{seqs[-1]}"} if attempt else {}
            with connect_sse(client, "GET", url, params=params, headers=headers) as source:
                for event in source.iter_sse():
                    if event.event == "data":
                        epoch, _, seq = event.id.partition(".")  # <epoch>.<seq>
                        epochs.append(epoch)
                        seqs.append(int(seq))
                        audio += base64.b64decode(event.data)
                        if attempt == 0 and len(seqs) == 5:
                            break  # drop the connection mid-stream
                    elif event.event == "end":
                        end = json.loads(event.data)
                        break
                    else:
                        assert event.event != "error", event.data
    assert end is not None and end["seq"] == len(seqs)
    assert seqs == list(range(1, len(seqs) + 1))  # nothing lost, nothing repeated
    assert len(set(epochs)) == 1  # one history, resumed
    assert bytes(audio) == synthetic_audio(TEXT)


# --- shutdown, resets, half-open ----------------------------------------------------------


def test_graceful_shutdown_sends_1001(runtime: str) -> None:
    handle = start(runtime, RecordingService())
    try:
        with ws_connect(handle.port, SUBPROTOCOL) as ws:
            ws.send(json.dumps({"type": "open", "stream": 1, "text": LONG_TEXT}))
            assert recv_json(ws)["type"] == "open"
            assert isinstance(ws.recv(timeout=POLL_LIMIT), bytes)
            assert handle.stop(POLL_LIMIT), "the server did not stop"
            with pytest.raises(ConnectionClosed):
                for _ in range(100_000):
                    ws.recv(timeout=POLL_LIMIT)
            assert ws.close_code == 1001
    finally:
        handle.stop(POLL_LIMIT)


def test_abrupt_reset_mid_stream(runtime: str) -> None:
    service = RecordingService(resume_grace=0.3)
    with serving(runtime, service) as handle:
        ws = RawWebSocket(handle.port)
        ws.send_json({"type": "open", "stream": 1, "text": LONG_TEXT})
        for _ in range(3):
            ws.recv_frame()  # the ack, then data
        generation = handle.call(service.only_generation)
        ws.reset()
        wait_until(lambda: handle.call(lambda: bool(service.closed)), "the server noticed")
        wait_until(lambda: not generation.running, "the generation stopped after the grace")
        assert not generation.finished
        assert healthz(handle.port) == 200
        with ws_connect(handle.port, SUBPROTOCOL) as fresh:
            fresh.send(json.dumps({"type": "open", "stream": 1, "text": TEXT}))
            assert recv_json(fresh)["type"] == "open"
            assert receive_stream(fresh, 1)[0]


def test_half_open_connection_is_noticed(runtime: str) -> None:
    service = RecordingService(resume_grace=0.3)
    with serving(runtime, service) as handle:
        with RawWebSocket(handle.port) as ws:
            ws.send_json({"type": "open", "stream": 1, "text": LONG_TEXT})
            ws.recv_frame()
            ws.sock.shutdown(socket.SHUT_WR)
            wait_until(lambda: handle.call(lambda: bool(service.closed)), "the server noticed")
            ws.wait_eof()  # and it closed its side
        # HTTP: a whole request, then the write side shut: answered, then closed.
        with socket.create_connection(("127.0.0.1", handle.port), timeout=POLL_LIMIT) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            answer = bytearray()
            while data := sock.recv(65536):
                answer += data
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
