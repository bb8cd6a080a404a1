"""The JavaScript client (clients/js/src/diaproto.js) resumes a WebSocket stream after a cut.

The client reaches ``diaproto serve`` through a small TCP proxy (tests/interop/cutting_proxy.py,
shared with the Chromium version, test_browser_resume.py) that cuts its first connection
after some of the stream went through (mid-frame, like a broken network). The client
reconnects through the proxy (which now passes everything), sends ``resume`` with its token
and last record, and must end up with exactly the audio of an uninterrupted stream: every
record once, in order. WebSocket in node 20 comes from the ``ws`` package
(tests/interop/node). Without node/npm the test skips loudly; under CI=true it fails.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

from cutting_proxy import cutting_proxy
from server_fixture import running_server
from support import not_run, synthetic_audio

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
    not_run(f"JS RESUME TEST NOT RUN: {what}")


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
