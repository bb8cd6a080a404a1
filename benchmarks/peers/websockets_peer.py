"""websockets (asyncio implementation): one handler coroutine per connection, ``await send``."""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

from . import BULK_SIZE, control_text, route, stamped


async def handler(ws: ServerConnection) -> None:
    kind, params = route(ws.request.path if ws.request is not None else "/")
    if kind == "push":
        payload = bytes(int(params.get("size", 32)))
        for _ in range(int(params.get("n", 1000))):
            await ws.send(payload)
    elif kind == "tick":
        await ticks(ws, params)
    elif kind == "bulk":
        control = asyncio.create_task(controls(ws, params.get("interval", 0.05)))
        try:
            bulk = bytes(BULK_SIZE)
            while True:
                await ws.send(bulk)
        finally:
            control.cancel()
    await ws.wait_closed()


async def ticks(ws: ServerConnection, params: dict[str, float]) -> None:
    loop = asyncio.get_running_loop()
    interval, size = params.get("interval", 0.02), int(params.get("size", 1764))
    start = loop.time()
    for k in range(int(params.get("count", 50))):
        await asyncio.sleep(max(0.0, start + k * interval - loop.time()))
        await ws.send(stamped(size))


async def controls(ws: ServerConnection, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await ws.send(control_text())


async def main(port: int) -> None:
    # Keepalive off as on every server of the suite: the clients answer no pings.
    async with ws_serve(handler, "127.0.0.1", port, ping_interval=None, compression=None) as s:
        await s.serve_forever()


def serve(port: int) -> None:
    asyncio.run(main(port))
