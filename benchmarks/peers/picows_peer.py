"""picows (Cython): a ``WSListener``, ``transport.send`` with pause_writing/resume_writing."""

from __future__ import annotations

import asyncio

from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from . import BULK_SIZE, control_text, route, stamped

CHUNK = 2048


class Listener(WSListener):
    def __init__(self, target: str) -> None:
        self.kind, self.params = route(target)
        self.paused = False
        self.sent = 0
        self.transport: WSTransport | None = None
        self.handles: list[asyncio.Handle] = []
        self.loop = asyncio.get_running_loop()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self.kind in ("push", "bulk"):
            self.produce()
        if self.kind == "bulk":
            self.every(self.params.get("interval", 0.05), self.control)
        elif self.kind == "tick":
            self.every(self.params.get("interval", 0.02), self.tick)

    def every(self, interval: float, action: object) -> None:
        start, count = self.loop.time(), 0

        def fire() -> None:
            nonlocal count
            if self.transport is None or not action():  # type: ignore[operator]
                return
            count += 1
            self.handles.append(self.loop.call_at(start + count * interval, fire))
            del self.handles[:-4]

        fire()

    def tick(self) -> bool:
        if self.sent >= int(self.params.get("count", 50)) or self.transport is None:
            return False
        self.transport.send(WSMsgType.BINARY, stamped(int(self.params.get("size", 1764))))
        self.sent += 1
        return True

    def control(self) -> bool:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, control_text().encode())
        return True

    def produce(self) -> None:
        transport = self.transport
        if transport is None:
            return
        bulk = self.kind == "bulk"
        total = 1 << 62 if bulk else int(self.params.get("n", 1000))
        payload = bytes(BULK_SIZE if bulk else int(self.params.get("size", 32)))
        stop = min(total, self.sent + CHUNK)
        while self.sent < stop and not self.paused:
            transport.send(WSMsgType.BINARY, payload)
            self.sent += 1
        if self.sent < total and not self.paused:
            self.handles.append(self.loop.call_soon(self.produce))
            del self.handles[:-4]

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.kind in ("push", "bulk"):
            self.produce()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.transport = None
        for handle in self.handles:
            handle.cancel()


async def main(port: int) -> None:
    def factory(request: WSUpgradeRequest) -> WSListener:
        return Listener(request.path.decode() if isinstance(request.path, bytes) else request.path)

    server = await ws_create_server(factory, "127.0.0.1", port)
    await server.serve_forever()


def serve(port: int) -> None:
    asyncio.run(main(port))
