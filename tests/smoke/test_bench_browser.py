"""P12 (benchmarks/browser.py): its jitter definition, its baseline server, and a smoke run.

No timing is asserted: the plain server sends the synthetic voice byte for byte and closes
with 1000; the smoke run in Chromium gives figures for every system, and the page's own
jitter p99 agrees with the one recomputed from its raw arrivals. Without /usr/bin/chromium
or playwright the smoke run is skipped (the scenario then reports itself not run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("psutil")
pytest.importorskip("websockets")
pytest.importorskip("tqdm")
pytest.importorskip("matplotlib")

from support import not_run
from websockets.asyncio.client import connect
from websockets.typing import Origin

from benchmarks.browser import BASELINE, REFERENCE, deviations, missing, nearest_rank
from benchmarks.cli import run
from diaproto.apps.serve.sources.voice_synth import synthesize

ROOT = Path(__file__).resolve().parents[2]
CHUNK_MS = 1024 / 88.2


def test_jitter_counts_only_after_the_window() -> None:
    arrivals = [[0.0, 1024.0], [1.0, 1024.0], [20.0, 1024.0], [31.0, 1024.0], [31.0, 1024.0]]
    # Chunk 1 follows only 1,024 bytes: not counted; chunk 2 follows 2,048: counted.
    got = deviations(arrivals, 2048)
    assert got == pytest.approx([abs(19.0 - CHUNK_MS), abs(11.0 - CHUNK_MS), CHUNK_MS])
    assert deviations(arrivals, 0)[0] == pytest.approx(abs(1.0 - CHUNK_MS))
    assert nearest_rank([3.0, 1.0, 2.0], 0.99) == 3.0
    assert nearest_rank([3.0, 1.0, 2.0], 0.5) == 2.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_plain_server_sends_the_synthetic_voice_and_closes_1000() -> None:
    text = "[S1] Hello from the benchmark."
    port = _free_port()
    command = [sys.executable, "-m", "benchmarks.peers.plain_pcm_websocket", str(port)]
    server = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            time.sleep(0.05)

        async def speak() -> tuple[list[bytes], int | None]:
            origin = Origin("http://127.0.0.1:1")  # a page of another port, as in the benchmark
            async with connect(f"ws://127.0.0.1:{port}/", origin=origin) as ws:
                await ws.send(json.dumps({"text": text, "voice": "S1"}))
                got = [message async for message in ws]
                return [m for m in got if isinstance(m, bytes)], ws.close_code

        chunks, code = asyncio.run(speak())
    finally:
        server.terminate()
        server.wait(10)
    assert code == 1000
    assert chunks == list(synthesize(text, "S1", 1.0))


def test_smoke_run_in_chromium(tmp_path: Path) -> None:
    why = missing()
    if why is not None:
        not_run(f"P12 SMOKE NOT RUN: {why}")
    results, _ = run(["--smoke", "--only", "P12", "--no-progress", "--out", str(tmp_path)])
    by_id = {r.id: r for r in results}
    assert set(by_id) == {"P12-jitter-1p", "P12-first-1p"}
    for result in results:
        assert result.skipped is None, result.skipped
        assert {REFERENCE, BASELINE} <= set(result.series)
        failed = {name: s.error for name, s in result.series.items() if s.error is not None}
        assert not failed, (result.id, failed)
        assert all(s.values() for s in result.series.values()), result.id
    agreement = next(n for n in by_id["P12-jitter-1p"].notes if "Agreement" in n)
    assert "largest gap 0.000 ms" in agreement, agreement
