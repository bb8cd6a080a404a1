"""aiohttp: a ``web.WebSocketResponse`` handler, ``await ws.send_bytes``."""

from __future__ import annotations

import asyncio

from aiohttp import web

from . import BULK_SIZE, control_text, route, stamped


async def handler(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    kind, params = route(str(request.rel_url))
    if kind == "push":
        payload = bytes(int(params.get("size", 32)))
        for _ in range(int(params.get("n", 1000))):
            await ws.send_bytes(payload)
    elif kind == "tick":
        loop = asyncio.get_running_loop()
        interval, size = params.get("interval", 0.02), int(params.get("size", 1764))
        start = loop.time()
        for k in range(int(params.get("count", 50))):
            await asyncio.sleep(max(0.0, start + k * interval - loop.time()))
            await ws.send_bytes(stamped(size))
    elif kind == "bulk":
        control = asyncio.create_task(controls(ws, params.get("interval", 0.05)))
        try:
            bulk = bytes(BULK_SIZE)
            while not ws.closed:
                await ws.send_bytes(bulk)
        finally:
            control.cancel()
    async for _ in ws:  # until the client closes
        pass
    return ws


async def controls(ws: web.WebSocketResponse, interval: float) -> None:
    while not ws.closed:
        await asyncio.sleep(interval)
        await ws.send_str(control_text())


def serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
