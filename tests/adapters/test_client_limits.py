"""No client can starve the others, on every runtime: one connection that opens streams by
the hundred and never reads, or a peer that opens and resets connections in a loop, is held
to its limits (streams per connection, generations per peer), refused with
``limit_exceeded``, and a normal client from another address still hears audio.

The attacker connects from 127.0.0.1 and the normal client from 127.0.0.2 (a loopback
address too), so that the per-peer limit, keyed by host, tells them apart. Waits are
bounded polls; nothing asserts on timing.
"""

from __future__ import annotations

import json
import socket

import httpx
from conformance_support import OP_TEXT, RawWebSocket
from support import POLL_LIMIT, fast_source, serving, wait_until
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.limits import ServiceLimits
from diaproto.runtime import ServerHandle

ATTACKER = "127.0.0.1"
NORMAL = "127.0.0.2"
LONG_TEXT = " ".join(f"Sentence number {n} is here to make the stream last." for n in range(40))
LIMITS = ServiceLimits(max_streams_per_connection=4, max_generations_per_peer=6)


def first_audio_from_another_address(port: int) -> bytes:
    """A normal client's first audio record, from 127.0.0.2 (fails after POLL_LIMIT)."""
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=POLL_LIMIT, source_address=(NORMAL, 0)
    )
    with connect(
        f"ws://127.0.0.1:{port}/ws",
        sock=sock,
        subprotocols=[Subprotocol("diaproto.v1")],
        open_timeout=POLL_LIMIT,
    ) as ws:
        ws.send(json.dumps({"type": "open", "stream": 1, "text": "Hello there."}))
        while True:
            message = ws.recv(timeout=POLL_LIMIT)
            if isinstance(message, bytes):
                return message
            assert json.loads(message)["type"] != "error", message


def refusals(server: ServerHandle, service: DiaService, reason: str) -> float:
    sample = lambda: service.metrics.registry.get_sample_value(  # noqa: E731
        "diaproto_refused_total", {"reason": reason}
    )
    return float(server.call(sample) or 0)


def generations_of(server: ServerHandle, service: DiaService, host: str) -> int:
    return int(server.call(lambda: service.generations.owned_by(host)))


def test_a_connection_that_opens_hundreds_of_streams_and_never_reads(runtime: str) -> None:
    service = DiaService(fast_source(), limits=LIMITS)
    with serving(runtime, service) as server, RawWebSocket(server.port, rcvbuf=4096) as flooder:
        for stream in range(1, 301):
            flooder.send_frame(
                OP_TEXT,
                json.dumps({"type": "open", "stream": stream, "text": LONG_TEXT}).encode(),
            )
        wait_until(
            lambda: refusals(server, service, "streams_per_connection") == 296,
            "the opens past the limit are refused",
        )
        # Four streams, four generations: the other 296 opens started nothing.
        assert generations_of(server, service, ATTACKER) == LIMITS.max_streams_per_connection
        assert first_audio_from_another_address(server.port)


def test_open_then_reset_churn_is_held_to_the_peer_limit(runtime: str) -> None:
    # Generations of clients that vanished are held 60 s for a resume: they count against
    # their peer, so churn cannot pile them up.
    service = DiaService(fast_source(), limits=LIMITS, resume_grace=60.0)
    with serving(runtime, service) as server:
        for stream in range(1, 41):
            with RawWebSocket(server.port) as churner:
                churner.send_frame(
                    OP_TEXT,
                    json.dumps({"type": "open", "stream": stream, "text": LONG_TEXT}).encode(),
                )
                churner.recv_frame()  # an answer: audio, or the refusal
                churner.reset()
        refused = refusals(server, service, "generations_per_peer")
        assert refused == 40 - LIMITS.max_generations_per_peer
        assert generations_of(server, service, ATTACKER) == LIMITS.max_generations_per_peer
        assert first_audio_from_another_address(server.port)
        # The same peer over HTTP is refused with 429 and told when to retry.
        response = httpx.post(
            f"http://127.0.0.1:{server.port}/v1/audio/speech",
            json={"model": "dia", "input": "Hello.", "voice": "alloy"},
            timeout=POLL_LIMIT,
        )
        assert response.status_code == 429 and response.headers["retry-after"] == "1"
        assert response.json()["error"]["code"] == "limit_exceeded"
