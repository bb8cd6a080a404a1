"""The official MCP SDK's server with diaproto's tool contract: the reference target of
tests/interop/mcp.

Run as a script (``python reference_server.py``) it listens on 127.0.0.1:<ephemeral>, prints
``PORT <n>`` and serves Streamable HTTP at ``/mcp``, the legacy HTTP+SSE transport at ``/sse``
(messages at ``/messages/``) and ``GET /metrics`` with the ``diaproto_active_generations`` gauge,
so the same client-side checks run against it and against diaproto.
"""

from __future__ import annotations

import base64
import io
import math
import socket
import struct
import sys
import wave
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventId, EventMessage, EventStore, StreamId
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    AudioContent,
    CallToolResult,
    JSONRPCMessage,
    TextContent,
)
from pydantic import Field
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

SAMPLE_RATE = 24_000
CHUNK_SECONDS = 0.1
# Pacing between chunks: slow enough to cancel mid-stream, fast enough for a short suite.
CHUNK_DELAY = 0.03
PARTIAL_RESULT = "notifications/tools/partial_result"
VOICES = [
    {"id": "S1", "description": "first speaker"},
    {"id": "S2", "description": "second speaker"},
]


class Gauge:
    """diaproto_active_generations: speak calls running now."""

    active = 0


def wav_bytes(seconds: float) -> bytes:
    """A 16-bit mono sine WAV of ``seconds``: real audio so clients can parse what they get."""
    frames = int(seconds * SAMPLE_RATE)
    samples = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 220 * i / SAMPLE_RATE)))
        for i in range(frames)
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(samples)
    return out.getvalue()


class MemoryEventStore(EventStore):
    """Resumability for the SDK server: events are replayed only within their own stream."""

    def __init__(self) -> None:
        self._events: list[tuple[EventId, StreamId, JSONRPCMessage | None]] = []

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = str(len(self._events) + 1)
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: Callable[[EventMessage], Awaitable[None]]
    ) -> StreamId | None:
        index = next((i for i, e in enumerate(self._events) if e[0] == last_event_id), None)
        if index is None:
            return None
        stream_id = self._events[index][1]
        for event_id, sid, message in self._events[index + 1 :]:
            if sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def partial_result_token(ctx: Context) -> str | int | None:
    """SEP-2998 (draft): the call's partialResultToken if the client declared partialResults.

    Declared top-level in the 2026-07-28 per-request capabilities (the SEP's form), or under
    `experimental` (the only form the SDK's models keep from an initialize handshake).
    """
    meta: dict[str, Any] = dict(ctx.request_context.meta or {})
    token = meta.get("partialResultToken")
    if not isinstance(token, str | int):
        return None
    envelope = meta.get(CLIENT_CAPABILITIES_META_KEY)
    declared = isinstance(envelope, dict) and "partialResults" in envelope
    capabilities = ctx.client_capabilities
    if capabilities is not None and capabilities.experimental:
        declared = declared or "partialResults" in capabilities.experimental
    return token if declared else None


mcp = MCPServer("diaproto-reference", version="0")


@mcp.tool(description="Speak text with a Dia voice; progress is audio seconds generated so far.")
async def speak(
    text: str,
    ctx: Context,
    voice: Literal["S1", "S2"] = "S1",
    speed: Annotated[float, Field(ge=0.25, le=4.0)] = 1.0,
) -> CallToolResult:
    Gauge.active += 1
    try:
        # One 0.1 s chunk per word (at least one): long texts give a test time to cancel.
        chunks = max(1, len(text.split()))
        partial_token = partial_result_token(ctx)
        generated = 0.0
        for i in range(chunks):
            await anyio.sleep(CHUNK_DELAY)
            generated = round((i + 1) * CHUNK_SECONDS / speed, 6)
            await ctx.report_progress(generated, message=f"{voice} chunk {i + 1}")
            if partial_token is not None:
                chunk = base64.b64encode(wav_bytes(CHUNK_SECONDS / speed)).decode()
                # The SDK has no public request-scoped notify for a method outside its unions.
                await ctx.session._request_outbound.notify(
                    PARTIAL_RESULT,
                    {
                        "partialResultToken": partial_token,
                        "seq": i,
                        "content": [{"type": "audio", "mimeType": "audio/wav", "data": chunk}],
                    },
                )
            # "[resume]" in the text closes the SSE stream once, so clients must resume it.
            if i == 0 and "[resume]" in text:
                await ctx.close_sse_stream()
        audio = base64.b64encode(wav_bytes(generated)).decode()
        return CallToolResult(
            content=[
                AudioContent(data=audio, mime_type="audio/wav"),
                TextContent(text=f"{generated:.2f} s of audio, voice {voice}"),
            ]
        )
    finally:
        Gauge.active -= 1


@mcp.tool(description="The available voices.")
def list_voices() -> dict[str, Any]:
    return {"voices": VOICES}


async def metrics(request: Request) -> Response:
    return PlainTextResponse(f"diaproto_active_generations {Gauge.active}\n")


def app() -> Any:
    """Streamable HTTP at /mcp (with its session manager's lifespan) plus legacy SSE at /sse."""
    # The SDK's SSE transport validates Host/Origin for 127.0.0.1 by default; so does /mcp.
    combined = mcp.streamable_http_app(event_store=MemoryEventStore(), retry_interval=100)
    sse = mcp.sse_app()
    combined.router.routes.extend(sse.routes)
    combined.router.routes.append(Route("/metrics", metrics, methods=["GET"]))
    return combined


def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    # Nobody reads our stdout after the port line: anything else goes to stderr.
    sys.stdout = sys.stderr
    server = uvicorn.Server(uvicorn.Config(app(), log_level="warning", lifespan="on"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
