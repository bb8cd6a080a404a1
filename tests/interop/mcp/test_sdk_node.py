"""The TypeScript MCP SDK (npm @modelcontextprotocol/sdk, pinned in tests/interop/mcp/node) as a
client.

tests/interop/mcp/node/client.mjs drives StreamableHTTPClientTransport (protocol 2025-11-25: the SDK
has no 2026-07-28) or WebSocketClientTransport and prints one JSON line asserted on here.
Without node/npm these tests skip loudly; under CI=true they fail.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_targets import TARGETS, McpTarget, mcp_server, missing

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_TIMEOUT = 60


@pytest.fixture(scope="module", params=TARGETS)
def target(request: pytest.FixtureRequest) -> Iterator[McpTarget]:
    with mcp_server(request.param) as running:
        yield running


def node_client(mode: str, target: McpTarget) -> dict[str, Any]:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        missing("node/npm not found")
    if not (NODE_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.lstrip("v").split(".")[0])
    # The SDK's WebSocket transport uses the global WebSocket: a flag before node 22.
    flags = ["--experimental-websocket"] if major < 22 else []
    # The SDK's own server loses a resumed call's live tail if the resume arrives before it
    # noticed the drop (client.mjs resume()): against it the resume waits for the call to end.
    when = ["settle"] if target.kind == "reference" else []
    done = subprocess.run(
        [node, *flags, str(NODE_DIR / "client.mjs"), mode, target.base, *when],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"], result["error"]
    return result


def check_speak(speak: dict[str, Any]) -> None:
    progress = speak["progress"]
    assert progress and progress[0] > 0, speak
    assert all(a < b for a, b in itertools.pairwise(progress)), progress
    check_audio_result(speak)


def check_audio_result(result: dict[str, Any]) -> None:
    # Inline audio, or a link to it past the server's inline limit (both fetched as a WAV).
    assert result["contentTypes"] in (["audio", "text"], ["resource_link", "text"]), result
    assert result["audioMimeType"] == "audio/wav"
    assert result["audioRiff"] == "RIFF"
    assert result["isError"] is False


def check_cancel(cancel: dict[str, Any]) -> None:
    assert cancel["activeBeforeCancel"] >= 1, cancel
    assert cancel["error"] is not None, "the aborted call resolved instead of rejecting"
    # Read while the client was still connected: the cancellation stopped the generation.
    assert cancel["activeAfterCancel"] == 0, cancel


def test_streamable_http(target: McpTarget) -> None:
    result = node_client("http", target)
    assert result["protocolVersion"] == "2025-11-25"
    assert result["sessionId"] is True
    assert {"speak", "list_voices"} <= set(result["tools"])
    check_speak(result["speak"])
    assert set(result["voices"]) == {"S1", "S2"}
    assert result["ping"] == {}
    check_cancel(result["cancel"])
    resume = result["resume"]
    assert resume["resumed"] is True and resume["tokens"] >= 1, resume
    check_audio_result(resume)


def test_websocket(target: McpTarget) -> None:
    if not target.has_ws:
        pytest.skip(f"{target.kind} has no WebSocket transport (the official SDK server has none)")
    result = node_client("ws", target)
    assert {"speak", "list_voices"} <= set(result["tools"])
    check_speak(result["speak"])
    assert result["ping"] == {}
    check_cancel(result["cancel"])
