"""diaproto's JavaScript MCP client (clients/js/src/mcp.js) against ``diaproto serve``.

tests/interop/mcp/node/js_client.mjs imports the client by relative path, runs one scenario and
prints one JSON line asserted on here. At ``CHECKPOINT <name>`` lines it waits for a line on
stdin, so this test can act on the server mid-call (drop the streams, read /metrics). WebSocket
in node 20 comes from the ``ws`` package (pinned in tests/interop/mcp/node). Without node/npm
these tests skip loudly; under CI=true they fail.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_targets import McpTarget, active_generations, missing, settled_generations
from server_fixture import RunningServer, running_server

from diaproto.apps.serve.sources import SyntheticSource

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_TIMEOUT = 30.0

Checkpoints = dict[str, Callable[[], None]]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    # Paced 25x faster than real time: long texts still take seconds, so a cancel lands mid-call.
    source = SyntheticSource(real_time_factor=0.04, first_chunk_latency=0.005)
    with running_server(source) as running:
        yield running


@pytest.fixture(scope="module")
def target(server: RunningServer) -> McpTarget:
    return McpTarget(kind="diaproto", base=server.url, has_sse=True, has_ws=True)


def node_command() -> list[str]:
    node = shutil.which("node")
    npm = shutil.which("npm")
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
    return [node, str(NODE_DIR / "js_client.mjs")]


def run_js(mode: str, target: McpTarget, checkpoints: Checkpoints | None = None) -> dict[str, Any]:
    """Run one scenario; at each checkpoint call its handler, then let the script go on."""
    handlers = checkpoints or {}
    # stderr to a file: a chatty script cannot block on a full pipe while stdout is read.
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(
            [*node_command(), mode, target.base],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        # readline blocks: a hung script is killed (by its PID) after NODE_TIMEOUT.
        watchdog = threading.Timer(NODE_TIMEOUT, process.kill)
        watchdog.start()
        try:
            seen, last = _follow(process, handlers)
            process.communicate(timeout=NODE_TIMEOUT)
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.communicate()
        stderr.seek(0)
        assert process.returncode == 0, stderr.read()
    assert seen == list(handlers), f"checkpoints reached: {seen}"
    result: dict[str, Any] = json.loads(last)
    assert result["ok"], result["error"]
    return result


def _follow(process: subprocess.Popen[str], handlers: Checkpoints) -> tuple[list[str], str]:
    """Read the script's stdout to its end; returns the checkpoints seen and the last line."""
    assert process.stdin is not None and process.stdout is not None
    seen: list[str] = []
    last = ""
    for line in process.stdout:
        if line.startswith("CHECKPOINT "):
            name = line.split()[1]
            seen.append(name)
            handlers[name]()
            process.stdin.write("go\n")
            process.stdin.flush()
        else:
            last = line
    return seen, last


def check_speak(speak: dict[str, Any]) -> None:
    progress = speak["progress"]
    assert progress and progress[0] > 0, speak
    assert all(a < b for a, b in itertools.pairwise(progress)), progress
    # Exactly once, in order: seq 0..n without gap or repeat.
    assert speak["seqs"] == list(range(len(speak["seqs"]))) and len(speak["seqs"]) >= 4, speak
    assert speak["partialMimeTypes"] == ["audio/pcm;rate=44100;channels=1;encoding=s16le"]
    # Inline audio, or a link to it past the server's inline limit (both fetched as a WAV).
    assert speak["contentTypes"] in (["audio", "text"], ["resource_link", "text"]), speak
    assert speak["audioMimeType"] == "audio/wav" and speak["audioRiff"] == "RIFF"
    assert speak["isError"] is False
    assert speak["streamedBytes"] > 100_000, speak
    assert speak["wavMatchesPartials"] is True, "the WAV's PCM differs from the partial audio"


def cancel_checkpoints(target: McpTarget, readings: dict[str, int]) -> Checkpoints:
    def streaming() -> None:
        readings["before"] = active_generations(target)

    def cancelled() -> None:
        # Read while the client is still connected: the cancellation stopped the generation.
        readings["after"] = settled_generations(target)

    return {"STREAMING": streaming, "CANCELLED": cancelled}


def check_cancel(cancel: dict[str, Any], readings: dict[str, int]) -> None:
    assert cancel["partials"] == 1, cancel  # nothing delivered after the cancel
    assert cancel["error"] == "AbortError" and cancel["state"] == "cancelled", cancel
    assert readings["before"] >= 1 and readings["after"] == 0, readings


def test_streamable_http_speak(target: McpTarget) -> None:
    result = run_js("speak", target)
    assert result["protocolVersion"] == "2025-11-25"
    assert result["sessionId"] is True
    assert {"speak", "list_voices"} <= set(result["tools"])
    check_speak(result["speak"])


def test_streamable_http_cancel(target: McpTarget) -> None:
    readings: dict[str, int] = {}
    result = run_js("cancel", target, cancel_checkpoints(target, readings))
    check_cancel(result["cancel"], readings)


def test_streamable_http_resume(server: RunningServer, target: McpTarget) -> None:
    """The server drops the stream after the 3rd partial; the client resumes (GET with
    Last-Event-ID after ``retry``) and gets every remaining message exactly once."""
    closed: list[int] = []

    def drop() -> None:
        closed.append(server.call(lambda: server.service.mcp.close_streams(time.monotonic())))

    result = run_js("resume", target, {"DROP": drop})
    assert closed == [1]
    assert result["resumes"] == 1, result
    check_speak(result["speak"])


def test_websocket(target: McpTarget) -> None:
    readings: dict[str, int] = {}
    result = run_js("ws", target, cancel_checkpoints(target, readings))
    assert result["protocolVersion"] == "2025-11-25"
    assert {"speak", "list_voices"} <= set(result["tools"])
    check_speak(result["speak"])
    assert result["ping"] is True
    check_cancel(result["cancel"], readings)


def test_errors(server: RunningServer, target: McpTarget) -> None:
    """An unknown tool is a JSON-RPC error (-32602), a bad argument a result with isError; an
    ended session (404) makes the client initialize again, once, and resend."""
    ended: list[int] = []

    def end_sessions() -> None:
        ended.append(server.call(lambda: end_all_sessions(server)))

    result = run_js("errors", target, {"EXPIRE": end_sessions})
    unknown = result["unknown"]
    assert unknown["isMcpError"] is True and unknown["code"] == -32602, unknown
    bad = result["badArgument"]
    assert bad["isError"] is True and "speed" in bad["text"], bad
    assert ended == [1]
    expired = result["expired"]
    assert expired["reinitializations"] == 1 and expired["newSession"] is True, expired
    assert "speak" in expired["tools"]


def end_all_sessions(server: RunningServer) -> int:
    """What an idle expiry does to every Streamable HTTP session (on the server's loop)."""
    mcp = server.service.mcp
    now = time.monotonic()
    ended = 0
    for session_id in list(mcp.sessions):
        peer = mcp.sessions.remove(session_id)
        if peer is not None:
            peer.close(now)
            ended += 1
    return ended
