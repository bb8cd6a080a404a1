"""The JavaScript client (clients/js/src/diaproto.js) resumes a WebSocket stream after a cut.

The client reaches ``diaproto serve`` through a small TCP proxy that cuts its first
connection after some of the stream went through (mid-frame, like a broken network). The
client reconnects through the proxy (which now passes everything), sends ``resume`` with
its token and last record, and must end up with exactly the audio of an uninterrupted
stream: every record once, in order. WebSocket in node 20 comes from the ``ws`` package
(tests/interop/node). Without node/npm the test skips loudly; under CI=true it fails.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from server_fixture import running_server
from support import synthetic_audio

from diaproto.apps.serve.sources import SyntheticSource

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "js" / "src" / "diaproto.js"
NODE_DIR = Path(__file__).resolve().parent / "node"
TEXT = (
    "The quick brown fox jumps over the lazy dog. A stream that breaks must go on. "
    "Nothing twice and nothing lost."
)
CUT_AFTER = 60_000  # bytes from the server on the first connection, then it is cut
LIMIT = 60.0

SCRIPT = """
import WebSocket from "ws";
const [client, url, text] = process.argv.slice(1);
const { DiaprotoSocket } = await import(client);
const out = { seqs: [], pcm: "", events: [], reconnects: 0, error: null };
const chunks = [];
const socket = new DiaprotoSocket(url, {
  WebSocket,
  reconnect: { attempts: 5, initialDelayMs: 100, maxDelayMs: 1000 },
});
socket.onreconnecting = ({ attempt }) => out.events.push(`reconnecting ${attempt}`);
socket.onreconnected = () => out.events.push("reconnected");
const stream = socket.open(text, { voice: "S1", credit: 131072, grantOn: "read" });
stream.onchunk = (chunk, seq) => {
  out.seqs.push(seq);
  chunks.push(Buffer.from(chunk));
};
try {
  await stream.finished;
} catch (error) {
  out.error = `${error.code}: ${error.message}`;
}
out.reconnects = stream.stats.reconnects;
out.pcm = Buffer.concat(chunks).toString("base64");
socket.close();
process.stdout.write(JSON.stringify(out) + "\\n");
"""


def missing(what: str) -> NoReturn:
    message = f"JS RESUME TEST NOT RUN: {what}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    print(f"\n*** {message} ***", file=sys.stderr)
    warnings.warn(message, pytest.PytestWarning, stacklevel=2)
    pytest.skip(message)


class CuttingProxy:
    """127.0.0.1 TCP proxy to ``port``; its first connection is cut (both sides aborted)
    once ``cut_after`` bytes came from the server. Later connections pass everything."""

    def __init__(self, port: int, cut_after: int) -> None:
        self.target, self.cut_after = port, cut_after
        self.connections = 0
        self.cut = threading.Event()
        self._transports: list[asyncio.WriteTransport] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="proxy", daemon=True)
        self.thread.start()
        start = asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.server = asyncio.run_coroutine_threadsafe(start, self.loop).result(LIMIT)
        self.port: int = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = self.connections == 0
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        ends = [writer.transport, up_writer.transport]
        self._transports += ends
        limit = self.cut_after if first else None
        tasks = [
            asyncio.ensure_future(self._pipe(reader, up_writer, None, ends)),
            asyncio.ensure_future(self._pipe(up_reader, writer, limit, ends)),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        limit: int | None,
        ends: list[asyncio.WriteTransport],
    ) -> None:
        passed = 0
        try:
            while data := await source.read(65536):
                if limit is not None and passed + len(data) >= limit:
                    sink.write(data[: limit - passed])
                    with contextlib.suppress(ConnectionError):
                        await sink.drain()
                    self.cut.set()
                    break
                passed += len(data)
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        for end in ends:  # one side gone (or the cut): drop the other abruptly as well
            end.abort()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for transport in self._transports:
                transport.abort()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(LIMIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(LIMIT)
        self.loop.close()


@contextlib.contextmanager
def cutting_proxy(port: int, cut_after: int) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(port, cut_after)
    try:
        yield proxy
    finally:
        proxy.close()


def node_command() -> list[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing("node/npm not found")
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return [node, "--input-type=module", "-e", SCRIPT]


def run_client(url: str) -> dict[str, Any]:
    """Run the script (``ws`` resolves from tests/interop/node); its one JSON line."""
    done = subprocess.run(
        [*node_command(), CLIENT.as_uri(), url, TEXT],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_js_client_resumes_a_cut_websocket_stream_byte_for_byte() -> None:
    expected = synthetic_audio(TEXT, "S1")
    assert len(expected) > 4 * CUT_AFTER, "the cut must come mid-stream"
    # Paced at a tenth of real time: the stream is still being generated when it is cut.
    source = SyntheticSource(real_time_factor=0.1, first_chunk_latency=0.005)
    with running_server(source) as server, cutting_proxy(server.port, CUT_AFTER) as proxy:
        result = run_client(f"ws://127.0.0.1:{proxy.port}/ws")
        assert proxy.cut.is_set(), "the first connection was never cut"
        connections = proxy.connections
    assert result["error"] is None, result["error"]
    assert connections == 2, connections
    assert result["events"] == ["reconnecting 1", "reconnected"], result["events"]
    assert result["reconnects"] == 1
    seqs = result["seqs"]
    assert seqs == list(range(1, len(seqs) + 1)), "every record once, in order"
    audio = base64.b64decode(result["pcm"])
    assert len(audio) == len(expected)
    assert audio == expected, "the resumed stream differs from an uninterrupted one"
