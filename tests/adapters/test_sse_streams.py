"""Server-sent event streams on every runtime (the ``runtime`` fixture), read with httpx over
real sockets: a stream runs to its ``end`` event and its connection then serves the next
request, fifty streams run at once on the one loop, and a paced stream (its lead spent,
the rest let through by the runtime's timers) arrives whole.
"""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from conformance_support import RecordingService
from support import POLL_LIMIT, serving, synthetic_audio

from diaproto.apps.serve.limits import MAX_SSE_LEAD, ServiceLimits

STREAM_HEADERS = {"accept": "text/event-stream"}


def sse_stream(port: int, text: str) -> list[str]:
    """The SSE event names of one /v1/stream response, read to its end."""
    events: list[str] = []
    url = f"http://127.0.0.1:{port}/v1/stream"
    with (
        httpx.Client(trust_env=False, timeout=POLL_LIMIT) as client,
        client.stream("GET", url, params={"text": text}, headers=STREAM_HEADERS) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
    return events


def client_address(response: httpx.Response) -> tuple[str, int]:
    """The local end of the connection that carries ``response`` (read while it is open)."""
    address: tuple[str, int] = response.extensions["network_stream"].get_extra_info("client_addr")
    return address


def test_sse_stream_to_the_end_then_keep_alive(runtime: str) -> None:
    with (
        serving(runtime, RecordingService()) as server,
        httpx.Client(trust_env=False, timeout=POLL_LIMIT) as client,
    ):
        url = f"http://127.0.0.1:{server.port}/v1/stream"
        ids: list[int] = []
        epochs: set[str] = set()
        names: list[str] = []
        with client.stream("GET", url, params={"text": "Hi."}, headers=STREAM_HEADERS) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream_from = client_address(response)
            for line in response.iter_lines():
                if line.startswith("event: "):
                    names.append(line.removeprefix("event: "))
                elif line.startswith("id: "):
                    epoch, _, seq = line.removeprefix("id: ").partition(".")
                    epochs.add(epoch)
                    ids.append(int(seq))
        assert names[-1] == "end" and names.count("data") == len(names) - 1 > 0
        assert ids == list(range(1, len(ids) + 1))
        assert len(epochs) == 1 and len(epochs.pop()) == 8  # <epoch>.<seq>, one epoch
        # The same connection serves the next request (keep-alive after the stream ended).
        with client.stream("GET", f"http://127.0.0.1:{server.port}/healthz") as health:
            assert client_address(health) == stream_from
            assert health.status_code == 200 and health.read() == b"ok\n"


def test_fifty_sse_streams_at_once(runtime: str) -> None:
    # Fifty streams from one address: past the default per-peer bound of 16.
    service = RecordingService(
        limits=ServiceLimits(max_generations_per_peer=50, sse_lead=MAX_SSE_LEAD)
    )
    with serving(runtime, service) as server, ThreadPoolExecutor(50) as pool:
        texts = [f"Hi {n}." for n in range(50)]
        results = list(pool.map(lambda text: sse_stream(server.port, text), texts))
        assert all(events and events[-1] == "end" for events in results)
        assert server.call(lambda: len(service.sessions())) <= 50


def test_a_paced_sse_stream_arrives_whole(runtime: str) -> None:
    # A lead of 50 ms: nearly all of it waits for the clock, woken by the runtime's timers
    # (a timer that never fired would leave the stream unfinished: POLL_LIMIT fails it).
    service = RecordingService(limits=ServiceLimits(sse_lead=0.05))
    text = "Paced now."
    audio = bytearray()
    names: list[str] = []
    with (
        serving(runtime, service) as server,
        httpx.Client(trust_env=False, timeout=POLL_LIMIT) as client,
    ):
        url = f"http://127.0.0.1:{server.port}/v1/stream"
        with client.stream("GET", url, params={"text": text}, headers=STREAM_HEADERS) as response:
            event, started = "", time.monotonic()
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                    names.append(event)
                elif line.startswith("data: ") and event == "data":
                    audio += base64.b64decode(line.removeprefix("data: "))
            took = time.monotonic() - started
    expected = synthetic_audio(text)
    assert len(expected) > 4 * int(0.05 * 88_200), "most of the audio must wait for the clock"
    assert names[-1] == "end"
    assert bytes(audio) == expected
    # Paced, it cannot arrive sooner than its audio less the lead and one chunk plays (a
    # lower bound: a loaded machine only makes it later; the 50x test voice alone is faster).
    assert took >= (len(expected) - 0.05 * 88_200 - 1024) / 88_200
