"""The official Python MCP SDK (``mcp``) as a client of each target (see mcp_targets.py).

Transports: Streamable HTTP at protocol 2026-07-28 (the SDK's default ``mode="auto"``: a
``server/discover`` probe, per-request ``_meta`` envelope, no session), Streamable HTTP at
2025-11-25 (``mode="legacy"``: initialize, session, GET stream, DELETE on close) and the
legacy HTTP+SSE transport (2024-11-05 shape). docs/notes/mcp-sdk-wire.md shows what each sends.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import wave
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from mcp import Client, MCPError
from mcp.client.sse import sse_client
from mcp_targets import TARGETS, McpTarget, active_generations, mcp_server, settled_generations
from mcp_types import AudioContent, CallToolResult, ResourceLink, TextContent

TRANSPORTS = ["streamable-http-2026", "streamable-http-2025", "sse"]
PROTOCOL = {
    "streamable-http-2026": "2026-07-28",
    "streamable-http-2025": "2025-11-25",
    "sse": "2025-11-25",
}
# Seconds of audio worth far more generation time than settled_generations waits for: the gauge
# reaching 0 within that wait can only mean the generation was stopped.
LONG_TEXT = " ".join(f"word{i}" for i in range(400))
CALL_TIMEOUT = 20.0


@pytest.fixture(scope="module", params=TARGETS)
def target(request: pytest.FixtureRequest) -> Iterator[McpTarget]:
    with mcp_server(request.param) as running:
        yield running


def client(target: McpTarget, transport: str) -> Client:
    if transport == "sse":
        if not target.has_sse:
            pytest.skip(f"{target.kind} has no legacy SSE transport")
        return Client(sse_client(target.sse_url), mode="legacy")
    return Client(target.mcp_url, mode="auto" if transport == "streamable-http-2026" else "legacy")


def run(target: McpTarget, transport: str, body: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        with anyio.fail_after(CALL_TIMEOUT):
            async with client(target, transport) as connected:
                await body(connected)

    anyio.run(main)


def wav_seconds(audio: AudioContent) -> float:
    with wave.open(io.BytesIO(base64.b64decode(audio.data, validate=True))) as w:
        return float(w.getnframes() / w.getframerate())


def tool_failed(call: Callable[[], Awaitable[CallToolResult]]) -> Awaitable[bool]:
    """Whether a tool call failed the way the spec allows: an isError result or a JSON-RPC error."""

    async def check() -> bool:
        try:
            result = await call()
        except MCPError:
            return True
        return result.is_error is True

    return check()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_initialize_and_list_tools(target: McpTarget, transport: str) -> None:
    async def body(c: Client) -> None:
        assert c.protocol_version == PROTOCOL[transport]
        tools = {tool.name: tool for tool in (await c.list_tools()).tools}
        assert {"speak", "list_voices"} <= set(tools)
        schema: dict[str, Any] = tools["speak"].input_schema
        assert schema["required"] == ["text"]
        properties = schema["properties"]
        assert properties["text"]["type"] == "string"
        assert properties["voice"]["enum"] == ["S1", "S2"]
        assert properties["voice"].get("default") == "S1"
        assert (properties["speed"]["minimum"], properties["speed"]["maximum"]) == (0.25, 4.0)
        assert properties["speed"].get("default") == 1.0

    run(target, transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_speak_reports_increasing_progress(target: McpTarget, transport: str) -> None:
    async def body(c: Client) -> None:
        seen: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)

        result = await c.call_tool(
            "speak", {"text": "hello from the python sdk"}, progress_callback=on_progress
        )
        assert not result.is_error, result
        assert seen, "no notifications/progress for the request's progressToken"
        assert seen[0] > 0
        assert all(a < b for a, b in itertools.pairwise(seen)), seen
        audio, summary = result.content
        assert isinstance(audio, AudioContent)
        assert audio.mime_type == "audio/wav"
        assert isinstance(summary, TextContent) and summary.text
        # Progress is audio seconds generated so far: the final WAV holds at least that much.
        assert wav_seconds(audio) >= seen[-1] - 0.01

    run(target, transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_speak_arguments_are_validated(target: McpTarget, transport: str) -> None:
    async def body(c: Client) -> None:
        ok = await c.call_tool("speak", {"text": "second voice, fast", "voice": "S2", "speed": 2.0})
        assert not ok.is_error, ok
        assert isinstance(ok.content[0], AudioContent)
        assert await tool_failed(lambda: c.call_tool("speak", {"text": "x", "speed": 5.0}))
        assert await tool_failed(lambda: c.call_tool("speak", {"text": "x", "voice": "S9"}))
        assert await tool_failed(lambda: c.call_tool("speak", {"voice": "S1"}))

    run(target, transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_list_voices(target: McpTarget, transport: str) -> None:
    async def body(c: Client) -> None:
        result = await c.call_tool("list_voices", {})
        assert not result.is_error, result
        assert result.structured_content is not None
        voices = result.structured_content["voices"]
        assert {voice["id"] for voice in voices} == {"S1", "S2"}
        text = next(block for block in result.content if isinstance(block, TextContent))
        assert json.loads(text.text) == result.structured_content

    run(target, transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_tool_fails(target: McpTarget, transport: str) -> None:
    async def body(c: Client) -> None:
        assert await tool_failed(lambda: c.call_tool("no_such_tool", {}))
        # The session survives the failure.
        assert not (await c.call_tool("list_voices", {})).is_error

    run(target, transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancelled_speak_stops_generating(target: McpTarget, transport: str) -> None:
    """2025-11-25 and SSE: the SDK sends notifications/cancelled; 2026-07-28: it closes the POST."""

    async def body(c: Client) -> None:
        started = anyio.Event()
        scope = anyio.CancelScope()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            started.set()

        async def call() -> None:
            with scope:
                await c.call_tool("speak", {"text": LONG_TEXT}, progress_callback=on_progress)
            assert scope.cancelled_caught, "speak finished before it was cancelled"

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await started.wait()
            assert await anyio.to_thread.run_sync(active_generations, target) >= 1
            scope.cancel()
        # Read while this client is still connected: the cancellation, not a disconnect, stopped it.
        assert await anyio.to_thread.run_sync(settled_generations, target) == 0
        assert not (await c.call_tool("list_voices", {})).is_error

    run(target, transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ping(target: McpTarget, transport: str) -> None:
    if transport == "streamable-http-2026":
        pytest.skip("ping is not a method in 2026-07-28 (the SDK warns and servers answer -32601)")

    async def body(c: Client) -> None:
        # Client.send_ping is deprecated (MCPDeprecationWarning); the session's is the wire ping.
        result = await c.session.send_ping()
        assert result.model_dump(exclude_none=True) == {}

    run(target, transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_long_speech_reaches_the_sdk_as_a_link(target: McpTarget, transport: str) -> None:
    """The SDK refuses an SSE event over 1 MiB ("Server-sent event exceeded the 1048576 byte
    limit"): about 12 s of audio (1 MB of WAV) comes as an absolute resource link."""
    if target.kind == "reference":
        pytest.skip("the reference server's audio is 0.1 s a word: never near the limit")
    text = " ".join(f"word{i}" for i in range(40))
    links: list[ResourceLink] = []

    async def body(c: Client) -> None:
        result = await c.call_tool("speak", {"text": text})
        assert not result.is_error, result
        link, summary = result.content
        assert isinstance(link, ResourceLink) and isinstance(summary, TextContent)
        links.append(link)

    run(target, transport, body)
    (link,) = links
    assert link.mime_type == "audio/wav" and link.size is not None and link.size > 1_000_000
    assert link.uri.startswith(f"{target.base}/mcp/audio/")
    clip = httpx.get(link.uri, timeout=CALL_TIMEOUT)
    assert clip.status_code == 200 and clip.headers["content-type"] == "audio/wav"
    assert clip.content[:4] == b"RIFF" and len(clip.content) == link.size
