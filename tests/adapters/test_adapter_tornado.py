"""The tornado adapter (TCPServer + IOStream), driven by real clients over 127.0.0.1.

What every runtime must do (streams, shutdown with 1001, backpressure, inbound flow control,
timeouts, workers, the command line) is in the conformance suite of tests/adapters; this file
keeps what is particular to this adapter: an SSE stream runs to the end and the same
connection (one IOStream, read by one coroutine) serves the next request.
"""

from __future__ import annotations

import httpx
from conformance_support import fast_source
from diaproto.apps.serve.app import DiaService
from support import POLL_LIMIT, serving


def test_sse_stream_to_the_end() -> None:
    with (
        serving("tornado", DiaService(fast_source())) as server,
        httpx.Client(trust_env=False, timeout=POLL_LIMIT) as client,
    ):
        url = f"http://127.0.0.1:{server.port}/v1/stream"
        headers = {"accept": "text/event-stream"}
        ids: list[int] = []
        names: list[str] = []
        with client.stream("GET", url, params={"text": "Hi."}, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("event: "):
                    names.append(line.removeprefix("event: "))
                elif line.startswith("id: "):
                    ids.append(int(line.removeprefix("id: ")))
        assert names[-1] == "end" and names.count("data") == len(names) - 1 > 0
        assert ids == list(range(1, len(ids) + 1))
        # The same connection serves the next request (keep-alive after the stream ended).
        health = client.get(f"http://127.0.0.1:{server.port}/healthz")
        assert health.status_code == 200 and health.text == "ok\n"
