"""What the service's endpoints refuse, on every runtime, and how: a ``Last-Event-ID`` that
is not ours is a 400 (it used to be a traceback); a resume that cannot be honoured is said
so (404 ``unknown_stream``, 410 ``replay_gap`` for an id from an expired stream of the same
name, 400, or the wire's ``invalid_request``), never a fresh stream that looks
continuous; a web page from elsewhere gets 403 on ``/ws`` and ``/v1/*``; and curl's plain
``GET /v1/stream`` (``Accept: */*``) is answered with the stream.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from conformance_support import RawWebSocket, RecordingService
from httpx_sse import connect_sse
from support import POLL_LIMIT, serving, wait_until

from diaproto.apps.serve.generation import GenerationRegistry
from diaproto.runtime import ServerHandle

TEXT = "Hello there. This is a short test of streaming speech."
LONG_TEXT = " ".join(f"Sentence number {n} is here to make the stream last." for n in range(40))


def raw_get(port: int, target: str, *headers: bytes) -> tuple[int, bytes]:
    """A GET with header bytes as given (httpx refuses non-ASCII values); (status, head)."""
    request = b"\r\n".join(
        [f"GET {target} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close", *headers]
    )
    with socket.create_connection(("127.0.0.1", port), timeout=POLL_LIMIT) as sock:
        sock.sendall(request + b"\r\n\r\n")
        answer = bytearray()
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    head = bytes(answer).partition(b"\r\n\r\n")[0]
    return int(head.split(b" ", 2)[1]), head


def client(handle: ServerHandle) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{handle.port}", trust_env=False, timeout=POLL_LIMIT
    )


@pytest.mark.parametrize(
    "value",
    [b"\xb2", b"9" * 5000, b"-1", b"12a", b"\xef\xbc\x91", b"12", b"0a1b2c3d.", b"0A1B2C3D.1"],
    ids=repr,
)
def test_a_last_event_id_that_is_not_ours_is_a_400(runtime: str, value: bytes) -> None:
    service = RecordingService()
    with serving(runtime, service) as handle:
        status, head = raw_get(
            handle.port,
            "/v1/stream?text=Hi.&id=a",
            b"Accept: text/event-stream",
            b"Last-Event-ID: " + value,
        )
        assert status == 400, head
        assert handle.call(lambda: len(service.generations.live)) == 0
        assert raw_get(handle.port, "/healthz")[0] == 200  # and the server carries on


def test_an_sse_resume_that_cannot_be_honoured_is_refused(runtime: str) -> None:
    with serving(runtime, RecordingService()) as handle, client(handle) as http:
        # Unknown id: 404, not a new stream numbered from 1.
        answer = http.get(
            "/v1/stream",
            params={"text": TEXT, "id": "never-started"},
            headers={"Accept": "text/event-stream", "Last-Event-ID": "0a1b2c3d.500"},
        )
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "unknown_stream"
        # A stream started without an id cannot be resumed either.
        answer = http.get(
            "/v1/stream",
            params={"text": TEXT},
            headers={"Accept": "text/event-stream", "Last-Event-ID": "0a1b2c3d.3"},
        )
        assert answer.status_code == 404
        # A known stream, but an id past anything it sent.
        params = {"text": TEXT, "id": "known"}
        epoch, last = stream_to_the_end(http, params)
        answer = http.get(
            "/v1/stream",
            params=params,
            headers={"Accept": "text/event-stream", "Last-Event-ID": f"{epoch}.{last + 1000}"},
        )
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "invalid_request"
        # ... while the honest resume of that stream still works (nothing after the end).
        with connect_sse(
            http, "GET", "/v1/stream", params=params, headers={"Last-Event-ID": f"{epoch}.{last}"}
        ) as events:
            kinds = [e.event for e in events.iter_sse() if e.data]  # not the lone retry:
        assert kinds == ["end"]


def stream_to_the_end(http: httpx.Client, params: dict[str, str]) -> tuple[str, int]:
    """Listen to a whole stream; the epoch and the last sequence number of its data ids."""
    with connect_sse(http, "GET", "/v1/stream", params=params) as events:
        ids = [e.id.split(".") for e in events.iter_sse() if e.event == "data"]
    assert len({epoch for epoch, _ in ids}) == 1  # one history: one epoch
    return ids[-1][0], int(ids[-1][1])


def test_a_resume_from_an_expired_stream_under_the_same_id_is_an_explicit_gap(
    runtime: str,
) -> None:
    """The same ``id`` and request name a new stream once the earlier one has expired; a
    reconnect that had the earlier one must not continue the new one as if it were."""
    service = RecordingService()
    service.generations = GenerationRegistry(keep_finished=1)
    with serving(runtime, service) as handle, client(handle) as http:
        params = {"text": TEXT, "id": "reused"}

        def retired() -> bool:
            return handle.call(lambda: not service.generations.live)

        first_epoch, first_last = stream_to_the_end(http, params)
        wait_until(retired, "the first stream retired")
        stream_to_the_end(http, {"text": TEXT, "id": "another"})
        wait_until(retired, "the other stream retired, pushing the first one out")
        second_epoch, second_last = stream_to_the_end(http, params)  # new, under the same id
        assert second_epoch != first_epoch
        answer = http.get(
            "/v1/stream",
            params=params,
            headers={
                "Accept": "text/event-stream",
                "Last-Event-ID": f"{first_epoch}.{first_last // 2}",
            },
        )
        assert answer.status_code == 410
        assert answer.json()["error"]["code"] == "replay_gap"
        # The new stream's own ids still resume it.
        with connect_sse(
            http,
            "GET",
            "/v1/stream",
            params=params,
            headers={"Last-Event-ID": f"{second_epoch}.{second_last}"},
        ) as events:
            assert [e.event for e in events.iter_sse() if e.data] == ["end"]


def test_a_websocket_resume_past_what_was_sent_is_refused(runtime: str) -> None:
    service = RecordingService()
    with serving(runtime, service) as handle:
        with RawWebSocket(handle.port) as ws:
            ws.send_json({"type": "open", "stream": 1, "text": LONG_TEXT})
            ack = json.loads(ws.recv_frame()[1])
            assert ack["type"] == "open"
            token = ack["token"]
        generation = handle.call(service.only_generation)
        wait_until(lambda: not handle.call(lambda: bool(generation.listeners)), "detached")
        with RawWebSocket(handle.port) as ws:
            ws.send_json({"type": "resume", "stream": 1, "token": token, "after": 10**9})
            error = json.loads(ws.recv_frame()[1])
        assert error["type"] == "error" and error["code"] == "invalid_request", error
        assert error["stream"] == 1 and "past the last record" in error["message"]


@pytest.mark.parametrize("path", ["/ws", "/v1/stream", "/v1/audio/speech"])
def test_a_page_from_another_origin_is_refused(runtime: str, path: str) -> None:
    service = RecordingService()
    with serving(runtime, service) as handle:
        if path == "/ws":
            with RawWebSocket(handle.port, origin="https://evil.example") as ws:
                assert ws.status == 403
            with RawWebSocket(handle.port, origin=f"http://127.0.0.1:{handle.port}") as ws:
                assert ws.status == 101  # the page this server serves
        else:
            with client(handle) as http:
                body = {"text": "Hi.", "input": "Hi.", "model": "dia", "voice": "alloy"}
                answer = http.post(path, json=body, headers={"Origin": "https://evil.example"})
                assert answer.status_code == 403
                assert "evil.example" in answer.json()["error"]["message"]
                answer = http.post(path, json=body, headers={"Origin": "http://localhost:1"})
                assert answer.status_code == 200  # a page on a loopback name
        sample = lambda: service.metrics.registry.get_sample_value(  # noqa: E731
            "diaproto_refused_total", {"reason": "origin"}
        )
        assert handle.call(sample) == 1
        assert handle.call(lambda: len(service.generations.live)) <= 1


def test_curl_gets_the_stream_without_asking_for_event_stream(runtime: str) -> None:
    with serving(runtime, RecordingService()) as handle, client(handle) as http:
        answer = http.get("/v1/stream", params={"text": "Hi."}, headers={"Accept": "*/*"})
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert "event: end" in answer.text
        refused = http.get("/v1/stream", params={"text": "Hi."}, headers={"Accept": "image/png"})
        assert refused.status_code == 406
