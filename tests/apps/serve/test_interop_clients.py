"""The service against real clients nobody here wrote: websockets, httpx-sse, openai.

Every test runs the real service (anyio adapter, synthetic voice paced 50x faster than real
time) on 127.0.0.1 and talks to it over real sockets. Waits are bounded polls, never timing
assertions.
"""

from __future__ import annotations

import base64
import json
import re
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from httpx_sse import connect_sse
from prometheus_client.parser import text_string_to_metric_families
from server_fixture import SUBPROTOCOL, RunningServer, running_server, ws_connect
from support import (
    POLL_LIMIT,
    receive_stream,
    records,
    recv_json,
    synthetic_audio,
    wait_until,
)
from websockets.sync.client import ClientConnection

from diaproto.apps.serve.generation import Generation
from diaproto.apps.serve.listeners import StreamListener

SAMPLE_RATE = 44100
FRAME_BYTES = 1024  # the service's chunk size (the last chunk of a sentence may be shorter)
TEXT = "Hello there. This is a short test of streaming speech."
LONG_TEXT = " ".join(f"Sentence number {n} is here to make the stream last." for n in range(40))


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


def assert_speech(audio: bytes, text: str = TEXT) -> None:
    """Non-empty, whole s16le samples, a plausible duration for the text, not silence."""
    assert len(audio) > 0
    assert len(audio) % 2 == 0
    seconds = len(audio) / 2 / SAMPLE_RATE
    words = len(text.split())
    assert words * 0.1 < seconds < words * 1.5, (seconds, words)
    samples = memoryview(audio).cast("h")
    assert max(abs(s) for s in samples[:: max(len(samples) // 20000, 1)]) > 1000


def generation_of(server: RunningServer, token: str) -> Generation:
    generation = server.call(server.service.generations.get, token)
    assert isinstance(generation, Generation), f"no generation {token}"
    return generation


# --- WebSocket: the websockets client ---------------------------------------------------------


def test_websocket_stream_complete(server: RunningServer) -> None:
    with ws_connect(server) as ws:
        assert ws.subprotocol == SUBPROTOCOL
        ws.send(
            json.dumps(
                {
                    "type": "open",
                    "stream": 1,
                    "text": TEXT,
                    "voice": "S1",
                    "options": {"speed": 1.0},
                }
            )
        )
        ack = recv_json(ws)
        assert ack["type"] == "open" and ack["stream"] == 1 and ack["token"]
        seqs, audio, end = receive_stream(ws, 1)
    assert seqs == list(range(1, len(seqs) + 1))
    assert end["seq"] == len(seqs)
    assert_speech(audio)


def test_websocket_credit_paces_the_stream(server: RunningServer) -> None:
    initial = 2 * FRAME_BYTES
    granted = initial
    received = 0
    worst_overshoot = -initial

    with ws_connect(server) as ws:

        def on_record(payload: bytes) -> None:
            nonlocal granted, received, worst_overshoot
            received += len(payload)
            # The server has seen at most what we granted so far (grants cross on the wire,
            # never run ahead): credit is a soft bound of one message (§8).
            worst_overshoot = max(worst_overshoot, received - granted)
            assert received <= granted + FRAME_BYTES, (received, granted)
            ws.send(json.dumps({"type": "credit", "stream": 7, "bytes": len(payload)}))
            granted += len(payload)

        ws.send(json.dumps({"type": "open", "stream": 7, "text": TEXT, "credit": initial}))
        assert recv_json(ws)["type"] == "open"
        seqs, audio, end = receive_stream(ws, 7, on_record)
    assert seqs == list(range(1, len(seqs) + 1)) and end["seq"] == len(seqs)
    assert_speech(audio)
    assert worst_overshoot <= FRAME_BYTES


def test_websocket_credit_starved_stream_waits(server: RunningServer) -> None:
    """With no more credit granted, at most one message beyond the credit arrives."""
    with ws_connect(server) as ws:
        ws.send(json.dumps({"type": "open", "stream": 1, "text": LONG_TEXT, "credit": 100}))
        ack = recv_json(ws)
        generation = generation_of(server, ack["token"])
        message = ws.recv(timeout=POLL_LIMIT)
        assert isinstance(message, bytes)
        (record,) = records(message)
        assert record[1] == 1 and len(record[2]) <= FRAME_BYTES
        # The worker is held at the gate: it stops making chunks while no credit comes.
        wait_until(lambda: server.call(lambda: generation.listeners[0].paused), "paused")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
        ws.send(json.dumps({"type": "credit", "stream": 1, "bytes": 3 * FRAME_BYTES}))
        extra = 0
        while extra <= 3 * FRAME_BYTES - 100:
            message = ws.recv(timeout=POLL_LIMIT)
            assert isinstance(message, bytes)
            extra += sum(len(r[2]) for r in records(message))
        assert extra <= 3 * FRAME_BYTES - 100 + FRAME_BYTES + FRAME_BYTES
        ws.send(json.dumps({"type": "cancel", "stream": 1}))


@pytest.mark.parametrize("credit", [2 * FRAME_BYTES, None])
def test_a_websocket_resume_keeps_the_stream_credit_based_or_not(
    server: RunningServer, credit: int | None
) -> None:
    """Protocol §10: a credit-based stream resumes credit-based, at 0 (what was granted on
    the lost connection may have been spent on records that never arrived); a stream that
    was not credit-based resumes as it was."""
    opened: dict[str, Any] = {"type": "open", "stream": 3, "text": LONG_TEXT}
    if credit is not None:
        opened["credit"] = credit
    with ws_connect(server) as ws:
        ws.send(json.dumps(opened))
        token = recv_json(ws)["token"]
        generation = generation_of(server, token)
        message = ws.recv(timeout=POLL_LIMIT)
        assert isinstance(message, bytes)
        last = records(message)[-1][1]
    wait_until(lambda: server.call(lambda: not generation.listeners), "the listener left")
    with ws_connect(server) as ws:
        ws.send(json.dumps({"type": "resume", "stream": 3, "after": last, "token": token}))
        assert recv_json(ws) == {"type": "open", "stream": 3, "token": token}

        def credit_now() -> int | None:
            (listener,) = generation.listeners
            assert isinstance(listener, StreamListener)
            value: int | None = listener.session.conn.scheduler.credit(3)
            return value

        if credit is None:
            assert server.call(credit_now) is None
        else:
            assert server.call(credit_now) == 0  # nothing is sent before the client grants
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.3)
            ws.send(json.dumps({"type": "credit", "stream": 3, "bytes": FRAME_BYTES}))
            message = ws.recv(timeout=POLL_LIMIT)
            assert isinstance(message, bytes)
            assert records(message)[0][1] == last + 1, "continued after the last record held"
        ws.send(json.dumps({"type": "cancel", "stream": 3}))


def test_a_player_asks_for_its_stream_at_real_time(server: RunningServer) -> None:
    """``options.pace = "realtime"``: half the credit window at once, then the audio's
    own pace, by the server's clock (the player's credit follows playback in bunches)."""
    credit = 8 * FRAME_BYTES
    with ws_connect(server) as ws:
        options = {"pace": "realtime"}
        ws.send(json.dumps({"type": "open", "stream": 5, "text": "Hi.", "options": {"pace": 1}}))
        error = recv_json(ws)
        assert (error["type"], error["code"]) == ("error", "invalid_request")
        assert "realtime" in error["message"]
        opened = {"type": "open", "stream": 5, "text": TEXT, "credit": credit, "options": options}
        ws.send(json.dumps(opened))
        token = recv_json(ws)["token"]
        generation = generation_of(server, token)

        def pacing() -> tuple[float | None, int | None, int | None]:
            (listener,) = generation.listeners
            assert isinstance(listener, StreamListener)
            stream_options = listener.session.conn.scheduler.options(5)
            return stream_options.pace, stream_options.lead, stream_options.burst

        assert server.call(pacing) == (88_200.0, credit // 2, credit // 2)
        started = time.monotonic()

        def grant(payload: bytes) -> None:  # as played: at once here (a fast player)
            ws.send(json.dumps({"type": "credit", "stream": 5, "bytes": len(payload)}))

        seqs, audio, _ = receive_stream(ws, 5, grant)
        took = time.monotonic() - started
    assert audio == synthetic_audio(TEXT)
    assert seqs == list(range(1, len(seqs) + 1))
    # Paced, it cannot come sooner than its audio less the lead plays (a lower bound: a
    # loaded machine only makes it later; the 50x test voice alone is far faster).
    assert took >= (len(audio) - credit // 2 - FRAME_BYTES) / 88_200


def test_websocket_cancel_stops_the_worker(server: RunningServer) -> None:
    with ws_connect(server) as ws:
        ws.send(json.dumps({"type": "open", "stream": 3, "text": LONG_TEXT}))
        ack = recv_json(ws)
        generation = generation_of(server, ack["token"])
        got = 0
        while got < 5:
            message = ws.recv(timeout=POLL_LIMIT)
            if isinstance(message, bytes):
                got += len(records(message))
        assert generation.running
        ws.send(json.dumps({"type": "cancel", "stream": 3}))
        wait_until(lambda: generation.stopped and not generation.running, "the worker stopped")
        assert not generation.finished
        # The connection is still good: another stream on it completes.
        ws.send(json.dumps({"type": "open", "stream": 4, "text": "Still here."}))
        for _ in range(10_000):
            control = recv_json_skipping_data(ws)
            if control.get("stream") == 4 and control["type"] == "end":
                break
        else:
            raise AssertionError("stream 4 did not end")
    wait_until(
        lambda: server.call(lambda: server.service.generations.running_workers) == 0,
        "no worker runs",
    )


def recv_json_skipping_data(ws: ClientConnection) -> dict[str, Any]:
    for _ in range(100_000):
        message = ws.recv(timeout=POLL_LIMIT)
        if isinstance(message, str):
            value = json.loads(message)
            assert isinstance(value, dict)
            return value
    raise AssertionError("no control message")


# --- SSE: httpx-sse ---------------------------------------------------------------------------


#: A data event's id: the stream's epoch, a dot, the sequence number.
EVENT_ID = re.compile(r"([0-9a-f]{8})\.([0-9]+)")


def read_sse(
    events: Iterator[Any], limit: int | None = None
) -> tuple[list[int], bytes, str, set[str]]:
    """(sequence numbers, audio, last event type, epochs) of the data events, up to
    ``limit`` of them."""
    epochs: set[str] = set()
    ids: list[int] = []
    audio = bytearray()
    last = ""
    for sse in events:
        last = sse.event
        if sse.event == "data":
            match = EVENT_ID.fullmatch(sse.id)
            assert match is not None, sse.id
            epochs.add(match[1])
            ids.append(int(match[2]))
            audio += base64.b64decode(sse.data)
            if limit is not None and len(ids) >= limit:
                break
        elif sse.event in ("end", "error"):
            assert sse.event == "end", sse.data
            end = json.loads(sse.data)
            assert end["seq"] == (ids[-1] if ids else end["seq"])
            break
    return ids, bytes(audio), last, epochs


def test_sse_get(server: RunningServer) -> None:
    with (
        httpx.Client(trust_env=False, timeout=POLL_LIMIT) as client,
        connect_sse(
            client,
            "GET",
            server.url + "/v1/stream",
            params={"text": TEXT, "voice": "S1", "speed": "1"},
        ) as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        ids, audio, last, _ = read_sse(source.iter_sse())
    assert last == "end"
    assert ids == list(range(1, len(ids) + 1))
    assert_speech(audio)
    assert audio == synthetic_audio(TEXT)


def test_sse_post(server: RunningServer) -> None:
    body = {"text": TEXT, "voice": "S2", "speed": 1.0}
    with (
        httpx.Client(trust_env=False, timeout=POLL_LIMIT) as client,
        connect_sse(client, "POST", server.url + "/v1/stream", json=body) as source,
    ):
        assert source.response.status_code == 200
        ids, audio, last, _ = read_sse(source.iter_sse())
    assert last == "end"
    assert ids == list(range(1, len(ids) + 1))
    assert_speech(audio)
    assert audio == synthetic_audio(TEXT, "S2")


def test_sse_resume_with_last_event_id(server: RunningServer) -> None:
    params = {"text": LONG_TEXT[:200], "voice": "S1", "speed": "1", "id": "resume-me"}
    url = server.url + "/v1/stream"
    with httpx.Client(trust_env=False, timeout=POLL_LIMIT) as client:
        with connect_sse(client, "GET", url, params=params) as source:
            first_ids, first_audio, _, epochs = read_sse(source.iter_sse(), limit=5)
            (generation,) = server.call(lambda: list(server.service.generations.live.values()))
        # Dropped mid-stream: the server notices (the generation loses its only listener and
        # waits, held, for a resume); then we reconnect as an EventSource does.
        wait_until(lambda: server.call(lambda: not generation.listeners), "the listener left")
        (epoch,) = epochs  # one history
        headers = {"Last-Event-ID": f"{epoch}.{first_ids[-1]}"}
        with connect_sse(client, "GET", url, params=params, headers=headers) as source:
            rest_ids, rest_audio, last, rest_epochs = read_sse(source.iter_sse())
    assert last == "end"
    assert rest_epochs == {epoch}, "the resumed stream is the same history"
    ids = first_ids + rest_ids
    assert ids == list(range(1, len(ids) + 1)), "lost or repeated events"
    assert first_audio + rest_audio == synthetic_audio(params["text"])
    assert generation.finished


# --- the official openai client ---------------------------------------------------------------


@pytest.fixture
def openai_client(server: RunningServer) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(
        base_url=server.url + "/v1", api_key="test", max_retries=0, timeout=POLL_LIMIT
    )
    with client:
        yield client


def test_openai_wav_to_file(openai_client: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "speech.wav"
    with openai_client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="alloy",
        input=TEXT,
        response_format="wav",
        extra_body={"sample_rate": SAMPLE_RATE},  # the model's own rate (OpenAI's is 24 kHz)
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        response.stream_to_file(path)
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == SAMPLE_RATE
        frames = wav.readframes(wav.getnframes())
        assert wav.getnframes() > 0
    assert_speech(frames)


def test_openai_pcm(openai_client: openai.OpenAI) -> None:
    with openai_client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="onyx",
        input=TEXT,
        response_format="pcm",
        extra_body={"sample_rate": SAMPLE_RATE},
    ) as response:
        assert response.headers["content-type"] == "audio/pcm"
        audio = b"".join(response.iter_bytes())
    assert_speech(audio)
    assert audio == synthetic_audio(TEXT, "S1")


def test_openai_stream_format_sse(openai_client: openai.OpenAI) -> None:
    """The client sends stream_format="sse"; it has no parser for speech events (it returns
    the raw body), so we read its lines as SSE ourselves."""
    deltas = bytearray()
    done: dict[str, Any] | None = None
    with openai_client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts",
        voice="nova",
        input=TEXT,
        response_format="pcm",
        stream_format="sse",
        extra_body={"sample_rate": SAMPLE_RATE},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line.removeprefix("data:").strip())
            if event["type"] == "speech.audio.delta":
                assert done is None
                deltas += base64.b64decode(event["audio"])
            elif event["type"] == "speech.audio.done":
                done = event
    assert done is not None
    assert done["usage"]["input_tokens"] == len(TEXT)
    assert_speech(bytes(deltas))
    assert bytes(deltas) == synthetic_audio(TEXT, "S2")


# --- /metrics and /healthz --------------------------------------------------------------------


def scrape(server: RunningServer) -> dict[str, float]:
    """Every sample of /metrics, by name and labels."""
    response = httpx.get(server.url + "/metrics", trust_env=False, timeout=POLL_LIMIT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_metrics_after_a_stream(server: RunningServer) -> None:
    before = scrape(server)
    ttfb_count = "diaproto_time_to_first_byte_seconds_count{}"
    assert before[ttfb_count] == 0
    with ws_connect(server) as ws:
        ws.send(json.dumps({"type": "open", "stream": 1, "text": TEXT}))
        assert recv_json(ws)["type"] == "open"
        receive_stream(ws, 1)
    wait_until(lambda: scrape(server)["diaproto_active_streams{}"] == 0, "no active stream")
    after = scrape(server)
    assert after[ttfb_count] == before[ttfb_count] + 1
    assert after["diaproto_stream_bytes_sent_total{}"] > 0
    assert after["diaproto_requests_total{endpoint=ws,status=101}"] >= 1
    wait_until(lambda: scrape(server)["diaproto_active_generations{}"] == 0, "no generation")


def test_healthz(server: RunningServer) -> None:
    response = httpx.get(server.url + "/healthz", trust_env=False, timeout=POLL_LIMIT)
    assert response.status_code == 200
    assert response.text == "ok\n"
