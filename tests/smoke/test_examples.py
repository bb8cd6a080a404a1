"""The examples run as users would run them."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

from websockets.sync.client import connect

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_property_test_example_runs_and_holds() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "property_test_a_handler.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "property held"


def test_asyncio_protocol_example_keeps_priorities_and_loses_nothing() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "asyncio_protocol.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert "listening" in server.stdout.readline()  # the example prints before serving
        ticks: list[int] = []
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10, max_size=None) as ws:
            first = ws.recv(timeout=10)
            assert isinstance(first, bytes)
            ticks.append(int(first.split()[1]))
            ws.send("hello")  # by now the producer has paused with ~1 MiB queued in the core
            while isinstance(message := ws.recv(timeout=10), bytes):
                ticks.append(int(message.split()[1]))
            match = re.fullmatch(r"ack hello after (\d+) ticks", message)
            assert match is not None
            # The ack overtook ticks produced before it (FIFO would deliver them all first).
            assert len(ticks) < int(match.group(1))
            while len(ticks) < 2000:
                tick = ws.recv(timeout=10)
                assert isinstance(tick, bytes)
                ticks.append(int(tick.split()[1]))
        assert ticks == list(range(2000))  # nothing lost, nothing reordered
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
