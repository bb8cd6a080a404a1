"""uvicorn: a raw ASGI WebSocket application, ``await send({"type": "websocket.send"})``.

Served with the wsproto or the websockets-sansio protocol implementation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from . import BULK_SIZE, control_text, route, stamped

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not found\n"})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    query = scope.get("query_string", b"").decode()
    kind, params = route(scope["path"] + ("?" + query if query else ""))
    task: asyncio.Task[None] | None = None
    if kind == "push":
        payload = bytes(int(params.get("size", 32)))
        for _ in range(int(params.get("n", 1000))):
            await send({"type": "websocket.send", "bytes": payload})
    elif kind == "tick":
        task = asyncio.create_task(ticks(send, params))
    elif kind == "bulk":
        task = asyncio.create_task(bulk(send, params.get("interval", 0.05)))
    while (await receive())["type"] != "websocket.disconnect":
        pass
    if task is not None:
        task.cancel()


async def ticks(send: Send, params: dict[str, float]) -> None:
    loop = asyncio.get_running_loop()
    interval, size = params.get("interval", 0.02), int(params.get("size", 1764))
    start = loop.time()
    for k in range(int(params.get("count", 50))):
        await asyncio.sleep(max(0.0, start + k * interval - loop.time()))
        await send({"type": "websocket.send", "bytes": stamped(size)})


async def bulk(send: Send, interval: float) -> None:
    async def controls() -> None:
        while True:
            await asyncio.sleep(interval)
            await send({"type": "websocket.send", "text": control_text()})

    control = asyncio.create_task(controls())
    try:
        payload = bytes(BULK_SIZE)
        while True:
            await send({"type": "websocket.send", "bytes": payload})
    finally:
        control.cancel()


def serve(port: int, ws: str) -> None:
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        ws=ws,
        ws_ping_interval=None,
        ws_per_message_deflate=False,
        log_level="warning",
        access_log=False,
        loop="asyncio",
    )
