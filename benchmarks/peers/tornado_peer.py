"""tornado: a ``WebSocketHandler``, ``await self.write_message(...)`` (its flow control)."""

from __future__ import annotations

import asyncio

import tornado.web
import tornado.websocket

from . import BULK_SIZE, control_text, route, stamped


class Handler(tornado.websocket.WebSocketHandler):
    tasks: list[asyncio.Task[None]]

    def open(self, *args: str, **kwargs: str) -> None:
        kind, params = route(self.request.uri or "/")
        self.tasks = []
        if kind == "push":
            self.tasks.append(asyncio.ensure_future(self.push(params)))
        elif kind == "tick":
            self.tasks.append(asyncio.ensure_future(self.ticks(params)))
        elif kind == "bulk":
            self.tasks.append(asyncio.ensure_future(self.bulk()))
            self.tasks.append(asyncio.ensure_future(self.controls(params.get("interval", 0.05))))

    def on_close(self) -> None:
        for task in self.tasks:
            task.cancel()

    async def push(self, params: dict[str, float]) -> None:
        payload = bytes(int(params.get("size", 32)))
        for _ in range(int(params.get("n", 1000))):
            await self.write_message(payload, binary=True)

    async def ticks(self, params: dict[str, float]) -> None:
        loop = asyncio.get_running_loop()
        interval, size = params.get("interval", 0.02), int(params.get("size", 1764))
        start = loop.time()
        for k in range(int(params.get("count", 50))):
            await asyncio.sleep(max(0.0, start + k * interval - loop.time()))
            await self.write_message(stamped(size), binary=True)

    async def bulk(self) -> None:
        payload = bytes(BULK_SIZE)
        while self.ws_connection is not None:
            await self.write_message(payload, binary=True)

    async def controls(self, interval: float) -> None:
        while self.ws_connection is not None:
            await asyncio.sleep(interval)
            await self.write_message(control_text())

    def on_message(self, message: str | bytes) -> None:
        pass


async def main(port: int) -> None:
    app = tornado.web.Application([(r"/.*", Handler)])
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


def serve(port: int) -> None:
    asyncio.run(main(port))
