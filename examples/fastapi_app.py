"""Speech from the synthetic voice, streamed by a FastAPI app over diaproto (ASGI).

    uvicorn examples.fastapi_app:app        # or: hypercorn examples.fastapi_app:app

- ``/ws``: the diaproto.v1 WebSocket (``diaproto.client`` or the JavaScript client): each
  ``open`` speaks its ``text`` in its ``voice`` (S1 or S2), ``options.speed`` (0.25-4).
- ``/sse?text=...&voice=S1&speed=1``: one stream as Server-Sent Events.

The ASGI server frames; diaproto's scheduler decides what leaves when (priority, credit,
backpressure). Audio is PCM s16le, 44.1 kHz, mono.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import FastAPI, WebSocket

from diaproto.adapters import asgi
from diaproto.apps.serve.sources.source import Source, check_voice_and_speed
from diaproto.apps.serve.sources.synthetic import SyntheticSource


def create_app(source: Source | None = None) -> FastAPI:
    voice_source = source or SyntheticSource()
    app = FastAPI(title="diaproto speech over ASGI")

    async def speech(text: str, voice: str, speed: float) -> AsyncIterator[bytes]:
        """The source's chunks, each computed on a worker thread (the source blocks)."""
        try:
            check_voice_and_speed(voice, speed)
        except ValueError as exc:
            raise asgi.Refused(str(exc)) from None
        chunks = voice_source.generate(text, voice, speed)
        try:
            while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
                yield chunk
        finally:
            chunks.close()  # a cancelled stream stops the source

    def speak(request: asgi.StreamRequest) -> AsyncIterator[bytes]:
        """One WebSocket stream (the adapter closes what this returns when it is over)."""
        return speech(request.text, request.voice or "S1", request.options.get("speed", 1.0))

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await asgi.serve_websocket(
            websocket.scope, websocket.receive, websocket.send, handler=speak
        )

    @app.get("/sse")
    async def sse(text: str, voice: str = "S1", speed: float = 1.0) -> asgi.EventStreamResponse:
        return asgi.EventStreamResponse(speech(text, voice, speed))

    return app


app = create_app()
