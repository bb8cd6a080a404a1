"""Bad input and bad clients: each gets a clear error or a defined close, and a healthy
stream running alongside on the same server is unaffected.

Raw sockets stand in for clients that misbehave (vanish, stop reading); every socket is
closed at the end and every wait is a bounded poll.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from server_fixture import RunningServer, running_server, ws_connect
from support import POLL_LIMIT, receive_stream, wait_for, wait_until
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from diaproto.apps.serve.app import AUDIO_STREAM_LIMIT
from diaproto.apps.serve.generation import Generation
from diaproto.config import ConnectionConfig, SchedulerConfig

HEALTHY_TEXT = "A healthy stream. It keeps going while others misbehave. And it ends well."
LONG_TEXT = " ".join(f"Sentence number {n} is here to make the stream last." for n in range(40))
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage")


def stream_to_end(ws: ClientConnection, stream: int) -> tuple[int, int]:
    """(records, audio bytes) of a stream read to its end; fails on an error."""
    seqs, audio, end = receive_stream(ws, stream)
    assert seqs == list(range(1, len(seqs) + 1))
    assert end["seq"] == len(seqs)
    return len(seqs), len(audio)


@contextmanager
def healthy_stream_alongside(server: RunningServer) -> Iterator[None]:
    """A well-behaved client streams (slowly: credit-paced) for the whole block, then must
    have received its complete stream."""
    result: list[tuple[int, int]] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def client() -> None:
        try:
            with ws_connect(server) as ws:
                ws.send(json.dumps({"type": "open", "stream": 1, "text": HEALTHY_TEXT}))
                assert json.loads(ws.recv(timeout=POLL_LIMIT))["type"] == "open"
                result.append(stream_to_end(ws, 1))
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=client, name="healthy-client", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=2 * POLL_LIMIT)
    assert not thread.is_alive(), "the healthy client hung"
    assert not failure, failure
    (records, nbytes) = result[0]
    assert records > 0 and nbytes > 0


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with running_server(resume_grace=0.2) as running:
        yield running


def post(
    server: RunningServer,
    path: str,
    body: Any = None,
    content: bytes | None = None,
    method: str = "POST",
    **kwargs: Any,
) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=POLL_LIMIT) as client:
        return client.request(method, server.url + path, json=body, content=content, **kwargs)


def error_message(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    message = error["message"]
    assert isinstance(message, str)
    return message


# --- HTTP: clear 4xx answers ------------------------------------------------------------------


def test_unknown_voice(server: RunningServer) -> None:
    with healthy_stream_alongside(server):
        speech = post(server, "/v1/audio/speech", {"model": "tts-1", "input": "Hi.", "voice": "x"})
        assert speech.status_code == 400
        message = error_message(speech)
        assert "S1" in message and "S2" in message
        for voice in OPENAI_VOICES:
            assert voice in message
        assert speech.json()["error"]["param"] in ("voice", None)
        sse = post(
            server,
            "/v1/stream",
            method="GET",
            params={"text": "Hi.", "voice": "S3"},
            headers={"accept": "text/event-stream"},
        )
        assert sse.status_code == 400
        assert "S1" in error_message(sse) and "alloy" in error_message(sse)
        sse_post = post(server, "/v1/stream", {"text": "Hi.", "voice": "nobody"})
        assert sse_post.status_code == 400


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text(server: RunningServer, text: str) -> None:
    with healthy_stream_alongside(server):
        speech = post(server, "/v1/audio/speech", {"model": "dia", "input": text, "voice": "S1"})
        assert speech.status_code == 400
        assert "input" in error_message(speech) and "empty" in error_message(speech)
        sse = post(server, "/v1/stream", {"text": text})
        assert sse.status_code == 400
        assert "text" in error_message(sse)
        get = post(
            server,
            "/v1/stream",
            method="GET",
            params={"text": text},
            headers={"accept": "text/event-stream"},
        )
        assert get.status_code == 400


def test_huge_text(server: RunningServer) -> None:
    huge = "word " * 1000  # 5000 characters
    with healthy_stream_alongside(server):
        speech = post(server, "/v1/audio/speech", {"model": "dia", "input": huge, "voice": "S1"})
        assert speech.status_code == 400
        assert "4096" in error_message(speech)
        sse = post(server, "/v1/stream", {"text": huge})
        assert sse.status_code == 400
        assert "4096" in error_message(sse)


@pytest.mark.parametrize("body", [b"{", b"not json", b"[1, 2]", b"\xff\xfe", b""])
def test_invalid_json(server: RunningServer, body: bytes) -> None:
    headers = {"content-type": "application/json"}
    with healthy_stream_alongside(server):
        for path in ("/v1/audio/speech", "/v1/stream"):
            response = post(server, path, content=body, headers=headers)
            assert response.status_code == 400, path
            assert "JSON object" in error_message(response)


def test_wrong_method(server: RunningServer) -> None:
    with healthy_stream_alongside(server):
        for method in ("GET", "PUT", "DELETE"):
            response = post(server, "/v1/audio/speech", method=method)
            assert response.status_code == 405
            assert response.headers["allow"] == "POST"
            error_message(response)
        for method in ("PUT", "DELETE"):
            response = post(
                server, "/v1/stream", method=method, headers={"accept": "text/event-stream"}
            )
            assert response.status_code == 405
            assert "GET" in response.headers["allow"] and "POST" in response.headers["allow"]


def test_unknown_path(server: RunningServer) -> None:
    with healthy_stream_alongside(server):
        for path in ("/nope", "/v1/audio/speechx", "/static/missing.js", "/v2/stream"):
            response = post(server, path, method="GET")
            assert response.status_code == 404, path
            error_message(response)


# --- WebSocket --------------------------------------------------------------------------------


def test_websocket_without_subprotocol(server: RunningServer) -> None:
    with healthy_stream_alongside(server):
        with pytest.raises(InvalidStatus) as refused:
            connect(server.ws_url, proxy=None, open_timeout=5)
        assert refused.value.response.status_code == 400
        assert b"diaproto.v1" in refused.value.response.body
        with pytest.raises(InvalidStatus) as other:
            connect(server.ws_url, subprotocols=[Subprotocol("chat")], proxy=None, open_timeout=5)
        assert other.value.response.status_code == 400


@pytest.mark.parametrize(
    ("voice", "options"),
    [("S1", {"speed": "fast"}), ("S1", {"speed": 99}), ("S9", {}), ("S1", {"speed": True})],
)
def test_websocket_open_with_bad_options(
    server: RunningServer, voice: str, options: dict[str, Any]
) -> None:
    with healthy_stream_alongside(server), ws_connect(server) as ws:
        ws.send(
            json.dumps(
                {"type": "open", "stream": 5, "text": "Hi.", "voice": voice, "options": options}
            )
        )
        error = json.loads(ws.recv(timeout=POLL_LIMIT))
        assert error["type"] == "error"
        assert error["stream"] == 5
        assert error["code"] == "invalid_request"
        assert error["message"]
        # The connection stays open and works; the refused id may even be used again.
        ws.send(json.dumps({"type": "open", "stream": 5, "text": "Hi there."}))
        assert json.loads(ws.recv(timeout=POLL_LIMIT))["type"] == "open"
        records, _ = stream_to_end(ws, 5)
        assert records > 0


def test_websocket_empty_and_huge_text(server: RunningServer) -> None:
    with ws_connect(server) as ws:
        for stream, text in ((1, ""), (2, "x" * 5000)):
            ws.send(json.dumps({"type": "open", "stream": stream, "text": text}))
            error = json.loads(ws.recv(timeout=POLL_LIMIT))
            assert (error["type"], error["stream"], error["code"]) == (
                "error",
                stream,
                "invalid_request",
            )
        assert server.call(lambda: len(server.service.generations.live)) == 0


# --- raw sockets: clients that vanish or stop reading -----------------------------------------


def raw_websocket(server: RunningServer, *, rcvbuf: int | None = None) -> socket.socket:
    """A WebSocket (diaproto.v1) upgrade sent by hand; the response is not read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(POLL_LIMIT)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: diaproto.v1\r\n\r\n"
        ).encode()
    )
    return sock


def text_frame(message: dict[str, Any]) -> bytes:
    """One masked client text frame (RFC 6455 §5.2)."""
    payload = json.dumps(message).encode()
    mask = os.urandom(4)
    if len(payload) < 126:
        header = struct.pack("!BB", 0x81, 0x80 | len(payload))
    else:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def generation_for(server: RunningServer, text: str) -> Generation:
    def find() -> Generation | None:
        for generation in server.service.generations.live.values():
            if generation.request.text == text:
                return generation
        return None

    generation = wait_for(lambda: server.call(find), "the generation started")
    assert isinstance(generation, Generation)
    return generation


def test_client_vanishes_mid_stream(server: RunningServer) -> None:
    text = "The vanishing client. " + LONG_TEXT
    with healthy_stream_alongside(server):
        sock = raw_websocket(server)
        try:
            sock.sendall(text_frame({"type": "open", "stream": 1, "text": text}))
            received = 0
            while received < 64 * 1024:  # the 101, the open ack and some audio
                chunk = sock.recv(65536)
                assert chunk, "the server closed first"
                received += len(chunk)
            generation = generation_for(server, text)
            assert generation.running
        finally:
            # Abruptly: a reset, no close frame, no FIN handshake.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        wait_until(
            lambda: generation.stopped and not generation.running,
            "the generation stopped after the resume grace",
        )
        assert not generation.finished
    wait_until(lambda: server.call(lambda: len(server.server.sessions)) == 0, "sessions closed")


SLOW_CONFIG = ConnectionConfig(
    scheduler=SchedulerConfig(
        high_watermark=256 * 1024, low_watermark=64 * 1024, max_buffered=512 * 1024
    )
)


def test_client_stops_reading() -> None:
    text = "The client that never reads. " + LONG_TEXT
    budget = SLOW_CONFIG.scheduler.max_buffered
    with running_server(config=SLOW_CONFIG, resume_grace=0.2) as server:
        sock = raw_websocket(server, rcvbuf=4096)
        try:
            sock.sendall(text_frame({"type": "open", "stream": 1, "text": text}))
            generation = generation_for(server, text)

            def listener_paused() -> bool:
                return bool(generation.listeners) and all(
                    listener.paused for listener in generation.listeners
                )

            wait_until(lambda: server.call(listener_paused), "the slow stream paused")

            def memory() -> list[tuple[int, int]]:
                return [
                    (s.conn.scheduler.buffered_bytes, s.conn.scheduler.queued_bytes())
                    for s in server.server.sessions
                ]

            held_at = server.call(lambda: generation.chunks)
            with healthy_stream_alongside(server):
                for _ in range(20):  # sampled while the healthy client streams
                    for buffered, queued in server.call(memory):
                        assert buffered <= budget
                        assert queued <= AUDIO_STREAM_LIMIT + 4096
                    time.sleep(0.02)
            # The worker is held at the gate: alive, paused, producing nothing more.
            assert generation.running and not generation.finished
            assert server.call(listener_paused)
            # (at most one chunk was past the gate when it closed)
            assert server.call(lambda: generation.chunks) <= held_at + 1
        finally:
            sock.close()
        wait_until(
            lambda: generation.stopped and not generation.running,
            "the generation stopped once the client left",
        )


def test_health_and_metrics_answer_only_get_and_head() -> None:
    with running_server() as running:
        for path in ("/healthz", "/metrics"):
            response = httpx.delete(running.url + path)
            assert response.status_code == 405
            assert response.headers["allow"] == "GET, HEAD"
            assert httpx.head(running.url + path).status_code == 200
