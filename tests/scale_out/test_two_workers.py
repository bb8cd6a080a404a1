"""Two workers of the service sharing one real Valkey: a client that moves to the other
worker mid-stream continues without loss (WebSocket ``resume``, SSE ``Last-Event-ID``), or is
told exactly why it cannot; listeners on both workers hear one generation; the generation
goes on while its only listener is on the other worker, and pauses with it."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis
from httpx_sse import connect_sse
from server_fixture import ws_connect
from support import POLL_LIMIT, records, synthetic_audio, wait_until
from valkey_server import ValkeyServer, valkey_server
from websockets.sync.client import ClientConnection
from worker_support import GRACE, Worker, shared_workers

from diaproto.apps.serve.mirror import MirroredGeneration
from diaproto.apps.serve.publication import Elsewhere
from diaproto.cluster import keys

# About 4 s of the test voice (paced 50x real time) on this machine.
LONG_TEXT = " ".join(f"Sentence number {n} is here to make the stream last." for n in range(10))
# Long enough to outlast any wait below (the owner pauses with its listener long before).
LONGEST_TEXT = " ".join(f"Sentence {n} makes this one long." for n in range(100))
EVENT_ID = re.compile(r"([0-9a-f]{8})\.([0-9]+)")


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    with valkey_server(tmp_path) as server:
        yield server


@pytest.fixture
def workers(valkey: ValkeyServer) -> Iterator[tuple[Worker, Worker]]:
    with shared_workers(valkey.url, "worker-a", "worker-b") as (a, b):
        yield a, b


def read_records(
    ws: ClientConnection, count: int | None = None
) -> tuple[list[int], bytes, dict[str, Any]]:
    """Records of stream 1 until ``count`` of them, or the stream's end or error."""
    seqs: list[int] = []
    audio = bytearray()
    for _ in range(100_000):
        message = ws.recv(timeout=POLL_LIMIT)
        if isinstance(message, str):
            control = json.loads(message)
            if control["type"] in ("end", "error"):
                return seqs, bytes(audio), control
            continue
        for _, seq, payload in records(message):
            seqs.append(seq)
            audio += payload
        if count is not None and len(seqs) >= count:
            return seqs, bytes(audio), {}
    raise AssertionError("the stream did not end")


def open_stream(ws: ClientConnection, text: str) -> str:
    ws.send(json.dumps({"type": "open", "stream": 1, "text": text, "voice": "S1"}))
    ack = json.loads(ws.recv(timeout=POLL_LIMIT))
    assert ack["type"] == "open", ack
    return str(ack["token"])


def test_a_websocket_stream_moves_to_the_other_worker_without_loss(
    workers: tuple[Worker, Worker],
) -> None:
    a, b = workers
    with ws_connect(a.app) as ws:
        token = open_stream(ws, LONG_TEXT)
        first_seqs, first_audio, _ = read_records(ws, count=5)
    (generation,) = a.generations()
    wait_until(lambda: a.call(lambda: not generation.listeners), "worker a saw the client go")
    with ws_connect(b.app) as ws:
        after = first_seqs[-1]
        ws.send(json.dumps({"type": "resume", "stream": 1, "token": token, "after": after}))
        rest_seqs, rest_audio, end = read_records(ws)
    assert end["type"] == "end", end
    seqs = first_seqs + rest_seqs
    assert seqs == list(range(1, len(seqs) + 1)), "lost or repeated records"
    assert first_audio + rest_audio == synthetic_audio(LONG_TEXT)
    # The generation ran on worker a throughout: worker b only mirrored it.
    assert a.call(lambda: generation.finished and generation.failed is None)
    assert b.generations() == []


def test_an_sse_stream_resumes_on_the_other_worker_with_last_event_id(
    workers: tuple[Worker, Worker],
) -> None:
    a, b = workers
    params = {"text": LONG_TEXT, "voice": "S1", "id": "moving"}
    with httpx.Client(trust_env=False, timeout=POLL_LIMIT) as http:
        with connect_sse(http, "GET", f"{a.app.url}/v1/stream", params=params) as source:
            first = read_events(source.iter_sse(), limit=5)
        (generation,) = a.generations()
        wait_until(lambda: a.call(lambda: not generation.listeners), "worker a saw it go")
        epoch, last = first.epoch, first.ids[-1]
        headers = {"Last-Event-ID": f"{epoch}.{last}"}
        url = f"{b.app.url}/v1/stream"
        with connect_sse(http, "GET", url, params=params, headers=headers) as source:
            rest = read_events(source.iter_sse())
    assert rest.last == "end", rest.last
    assert rest.epoch == epoch, "the same history"
    ids = first.ids + rest.ids
    assert ids == list(range(1, len(ids) + 1)), "lost or repeated events"
    assert first.audio + rest.audio == synthetic_audio(LONG_TEXT)


def test_listeners_on_both_workers_hear_one_generation(workers: tuple[Worker, Worker]) -> None:
    a, b = workers
    params = {"text": LONG_TEXT, "voice": "S2", "id": "shared"}
    with (
        httpx.Client(trust_env=False, timeout=POLL_LIMIT) as http_a,
        httpx.Client(trust_env=False, timeout=POLL_LIMIT) as http_b,
        connect_sse(http_a, "GET", f"{a.app.url}/v1/stream", params=params) as on_a,
    ):
        events_a = on_a.iter_sse()
        head = read_events(events_a, limit=3)  # the generation runs on a
        # Both read at once: a generation goes at the pace of its slowest listener.
        with ThreadPoolExecutor(1) as pool:
            rest_on_a = pool.submit(read_events, events_a)
            with connect_sse(http_b, "GET", f"{b.app.url}/v1/stream", params=params) as on_b:
                heard_b = read_events(on_b.iter_sse())
            rest_a = rest_on_a.result(timeout=POLL_LIMIT * 3)
    assert b.generations() == [], "the one generation ran on a"
    assert heard_b.last == "end" and rest_a.last == "end"
    assert heard_b.epoch == head.epoch
    expected = synthetic_audio(LONG_TEXT, "S2")
    assert heard_b.audio == expected, "the listener on b heard it all, from the start"
    assert head.audio + rest_a.audio == expected


def test_the_owner_goes_on_for_a_listener_elsewhere_and_pauses_with_it(
    workers: tuple[Worker, Worker],
) -> None:
    a, b = workers
    with ws_connect(a.app) as ws:
        token = open_stream(ws, LONGEST_TEXT)
        seqs, _, _ = read_records(ws, count=3)
    (generation,) = a.generations()
    wait_until(lambda: a.call(lambda: not generation.listeners), "worker a saw the client go")

    def elsewhere() -> Elsewhere:
        publication = generation.publication
        assert publication is not None
        return publication.elsewhere(generation.runtime.now())

    with ws_connect(b.app) as ws:
        resume = {"type": "resume", "stream": 1, "token": token, "after": seqs[-1]}
        ws.send(json.dumps(resume))
        (mirror,) = _wait_for_mirror(b)
        wait_until(lambda: a.call(elsewhere).listeners == 1, "worker a counts the one on b")
        # The client reads nothing: its stream on b pauses, and so does the owner on a.
        wait_until(
            lambda: a.call(lambda: elsewhere().paused and not generation.producing),
            "the owner pauses with the listener on b",
            limit=POLL_LIMIT * 3,
        )
        # Let the grace pass (what is checked is that it still runs after it, not how fast).
        time.sleep(GRACE * 2)
        assert a.call(lambda: generation.running and not generation.stopped)
    # Gone from b too: after the grace, nobody listens anywhere, and the owner stops.
    wait_until(lambda: a.call(lambda: generation.stopped), "the owner stops")
    assert b.call(lambda: mirror.stopped)


def test_a_resume_of_a_stream_nobody_has_is_unknown_on_every_worker(
    workers: tuple[Worker, Worker],
) -> None:
    _, b = workers
    with ws_connect(b.app) as ws:
        ws.send(json.dumps({"type": "resume", "stream": 1, "token": "nobody", "after": 0}))
        error = json.loads(ws.recv(timeout=POLL_LIMIT))
    assert error["type"] == "error" and error["code"] == "unknown_stream", error


def test_a_dead_redis_is_said_to_the_resuming_client(
    workers: tuple[Worker, Worker], valkey: ValkeyServer
) -> None:
    _, b = workers
    valkey.kill()
    with ws_connect(b.app) as ws:
        ws.send(json.dumps({"type": "resume", "stream": 1, "token": "anything", "after": 0}))
        error = json.loads(ws.recv(timeout=POLL_LIMIT))
    assert error["type"] == "error" and error["code"] == "busy", error
    assert "journal" in error["message"]
    with httpx.Client(trust_env=False, timeout=POLL_LIMIT) as http:
        params = {"text": "Hi.", "id": "x"}
        answer = http.get(f"{b.app.url}/v1/stream", params=params)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"


def test_a_listener_elsewhere_never_hears_a_hole_when_redis_restarts_empty(
    workers: tuple[Worker, Worker], valkey: ValkeyServer
) -> None:
    a, b = workers
    with ws_connect(a.app) as ws:
        token = open_stream(ws, LONG_TEXT)
        seqs, first_audio, _ = read_records(ws, count=3)
    with ws_connect(b.app) as ws:
        ws.send(json.dumps({"type": "resume", "stream": 1, "token": token, "after": seqs[-1]}))
        heard, audio, _ = read_records(ws, count=3)
        valkey.kill()
        valkey.start()  # empty: whatever b had not read yet is gone with the old server
        more, more_audio, outcome = read_records(ws)
    got = heard + more
    assert got == list(range(seqs[-1] + 1, seqs[-1] + 1 + len(got))), "no skip, ever"
    if outcome["type"] == "end":  # nothing was lost: the writer resent what Redis missed
        assert first_audio + audio + more_audio == synthetic_audio(LONG_TEXT)
    else:  # some was lost: said so, with the records before the hole all delivered
        assert outcome["code"] in ("replay_gap", "going_away", "generation_lost"), outcome


@dataclass
class Events:
    ids: list[int]
    audio: bytes
    last: str
    epoch: str


def read_events(events: Iterator[Any], limit: int | None = None) -> Events:
    ids: list[int] = []
    audio = bytearray()
    epochs: set[str] = set()
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
            break
    assert len(epochs) <= 1, epochs
    return Events(ids, bytes(audio), last, next(iter(epochs), ""))


def _wait_for_mirror(worker: Worker) -> list[MirroredGeneration]:
    wait_until(lambda: bool(worker.mirrors()), "the worker mirrors the generation")
    return worker.mirrors()


def test_a_hung_redis_leaves_the_owners_listeners_going(
    workers: tuple[Worker, Worker], valkey: ValkeyServer
) -> None:
    a, _ = workers
    valkey.pause()  # SIGSTOP: connections stay open, nothing answers
    try:
        with ws_connect(a.app) as ws:
            token = open_stream(ws, LONG_TEXT)
            seqs, audio, end = read_records(ws)
    finally:
        valkey.resume()
    assert end["type"] == "end", end
    assert audio == synthetic_audio(LONG_TEXT), "the owner's listener heard it all meanwhile"
    # What waited for Redis (bounded) is written once it answers again, the end included.
    client = redis.Redis.from_url(valkey.url)
    try:

        def ended() -> bool:
            last = cast("list[Any]", client.xrevrange(keys.ring(token), "+", "-", count=1))
            # The ending entry (fields e, m, c, l) after the last record.
            return (
                bool(last) and b"e" in last[0][1] and last[0][0].startswith(f"{seqs[-1]}-".encode())
            )

        wait_until(ended, "the whole stream reached Redis", limit=POLL_LIMIT * 3)
    finally:
        client.close()
