"""diaproto.adapters.asgi under real ASGI servers (uvicorn, hypercorn) with real clients.

The FastAPI example (examples/fastapi_app.py) serves the synthetic voice; a probe app beside
it serves producers the tests can watch (closed or not). Everything is observed through
the protocol (records, control messages, close codes), never by timing; waits are bounded
by generous limits only.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
import websockets
from httpx_sse import aconnect_sse
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from diaproto.adapters import asgi
from diaproto.apps.serve.sources.synthetic import SyntheticSource
from diaproto.config import ConnectionConfig, SchedulerConfig, Timeouts
from diaproto.wire import SUBPROTOCOL, DataChunk, decode_records

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 60.0  # seconds: a bound on waiting, never a timing assertion
TEXT = "Hello there. This is diaproto, streaming speech through an ASGI server."
BULK_CHUNK = 64 * 1024


def load_example() -> Any:
    """examples/fastapi_app.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "diaproto_fastapi_example", ROOT / "examples/fastapi_app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expected_audio(text: str, voice: str = "S1", speed: float = 1.0) -> bytes:
    return b"".join(SyntheticSource(0.0, 0.0).generate(text, voice, speed))


class Probes:
    """Producers the tests can watch: by name, whether each was closed (its ``finally``)."""

    def __init__(self) -> None:
        self.closed: dict[str, threading.Event] = {}

    def watch(self, name: str) -> None:
        self.closed[name] = threading.Event()

    async def produce(self, name: str) -> AsyncIterator[bytes]:
        """``bulk-N:...``: N chunks of 64 KiB; ``endless:...`` never ends; ``boom``: fails;
        ``refuse``: refused; anything else: one small chunk."""
        try:
            if name == "boom":
                raise RuntimeError("the probe failed")
            if name == "refuse":
                raise asgi.Refused("not this one", code="busy")
            count = int(name[5:].split(":", maxsplit=1)[0]) if name.startswith("bulk-") else 1
            if name.startswith("endless"):
                count = 1 << 30
            for _ in range(count):
                yield bytes(BULK_CHUNK) if count > 1 else b"small"
                await anyio.sleep(0)
        finally:
            if name in self.closed:
                self.closed[name].set()


PROBES = Probes()


def _probe_handler(request: asgi.StreamRequest) -> AsyncIterator[bytes]:
    return PROBES.produce(request.text)


def make_app() -> asgi.ASGIApp:
    example = load_example().create_app(SyntheticSource(0.0, 0.0))
    probe_ws = asgi.websocket_app(_probe_handler)

    async def app(scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "lifespan":
            message = await receive()
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
        elif path == "/probe/ws":
            await probe_ws(scope, receive, send)
        elif path == "/probe/sse":
            name = scope["query_string"].decode()
            await asgi.serve_event_stream(scope, receive, send, PROBES.produce(name))
        else:
            await example(scope, receive, send)

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def run_uvicorn(app: asgi.ASGIApp, port: int) -> Iterator[None]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_listening(port)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(LIMIT)


def run_hypercorn(app: asgi.ASGIApp, port: int) -> Iterator[None]:
    config = HypercornConfig()
    config.bind = [f"127.0.0.1:{port}"]
    config.loglevel = "WARNING"
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(hypercorn_serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        loop.close()

    thread = threading.Thread(target=main, name="hypercorn", daemon=True)
    thread.start()
    wait_listening(port)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(LIMIT)


@pytest.fixture(scope="module", params=["uvicorn", "hypercorn"])
def base(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL (host and port) of the test app under each ASGI server."""
    port = free_port()
    runner = run_uvicorn if request.param == "uvicorn" else run_hypercorn
    yield from (f"127.0.0.1:{port}" for _ in runner(make_app(), port))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the clients (websockets, httpx) run on asyncio; the servers on theirs


# --- a small client ---------------------------------------------------------------------


def connect(base: str, path: str = "/ws") -> Any:
    return websockets.connect(
        f"ws://{base}{path}",
        subprotocols=[Subprotocol(SUBPROTOCOL)],
        max_size=None,
        open_timeout=LIMIT,
    )


async def send(ws: ClientConnection, **message: Any) -> None:
    await ws.send(json.dumps(message))


async def next_message(ws: ClientConnection) -> list[DataChunk] | dict[str, Any]:
    """The next message: data records, or a control message as a dict."""
    raw = await asyncio.wait_for(ws.recv(), LIMIT)
    if isinstance(raw, bytes):
        return decode_records(raw)
    control: dict[str, Any] = json.loads(raw)
    return control


async def barrier(ws: ClientConnection, received: list[DataChunk]) -> None:
    """Ask something the server must answer (a bad message: error, connection kept) and
    collect the records that arrive before the answer."""
    await ws.send("not json")
    while True:
        message = await next_message(ws)
        if isinstance(message, list):
            received.extend(message)
        elif message["type"] == "error" and message["code"] == "bad_message":
            return


async def until_end(ws: ClientConnection, stream: int) -> tuple[list[DataChunk], int]:
    chunks: list[DataChunk] = []
    while True:
        message = await next_message(ws)
        if isinstance(message, list):
            chunks.extend(c for c in message if c.stream_id == stream)
        elif message["type"] == "end" and message["stream"] == stream:
            return chunks, message["seq"]
        else:
            assert message["type"] == "open", message


def wait_for(event: threading.Event) -> None:
    assert event.wait(LIMIT)


# --- the tests ----------------------------------------------------------------------------


async def test_speech_arrives_complete_and_in_order(base: str) -> None:
    async with connect(base) as ws:
        await send(ws, type="open", stream=1, text=TEXT, voice="S2", options={"speed": 1.5})
        assert await next_message(ws) == {"type": "open", "stream": 1}
        chunks, last = await until_end(ws, 1)
    assert [c.seq for c in chunks] == list(range(1, last + 1))
    assert b"".join(c.data for c in chunks) == expected_audio(TEXT, "S2", 1.5)


async def test_credit_bounds_what_arrives_until_more_is_granted(base: str) -> None:
    async with connect(base) as ws:
        await send(ws, type="open", stream=1, text=TEXT, credit=4096)
        received: list[DataChunk] = []
        while sum(len(c.data) for c in received) < 4096:
            message = await next_message(ws)
            if isinstance(message, list):
                received.extend(message)
        await barrier(ws, received)  # anything past the window would have come by now
        assert sum(len(c.data) for c in received) == 4096  # four whole 1,024-byte records
        await send(ws, type="credit", stream=1, bytes=2048)
        while sum(len(c.data) for c in received) < 6144:
            message = await next_message(ws)
            if isinstance(message, list):
                received.extend(message)
        await barrier(ws, received)
        assert sum(len(c.data) for c in received) == 6144
        await send(ws, type="credit", stream=1, bytes=1 << 30)
        rest, last = await until_end(ws, 1)
    chunks = received + rest
    assert [c.seq for c in chunks] == list(range(1, last + 1))
    assert b"".join(c.data for c in chunks) == expected_audio(TEXT)


async def test_a_new_stream_and_its_control_messages_overtake_queued_bulk(base: str) -> None:
    bulk = 512  # 32 MiB: far more than the kernels and the server can hold outside the core
    name = f"bulk-{bulk}:{base}"
    async with connect(base, "/probe/ws") as ws:
        await send(ws, type="open", stream=1, text=name)
        assert await next_message(ws) == {"type": "open", "stream": 1}
        await send(ws, type="open", stream=2, text="small")
        bulk_before_ack = 0
        order: list[str] = []
        while "end 1" not in order:
            message = await next_message(ws)
            if isinstance(message, list):
                if "open 2" not in order:
                    bulk_before_ack += sum(len(c.data) for c in message if c.stream_id == 1)
                order.extend(f"data {c.stream_id}" for c in message if c.stream_id == 2)
            else:
                order.append(f"{message['type']} {message['stream']}")
    assert order.index("open 2") < order.index("data 2") < order.index("end 2")
    assert order.index("end 2") < order.index("end 1")
    # A FIFO would have written all 32 MiB first; the scheduler let stream 2 through with
    # at most what had already left it (socket buffers) ahead.
    assert bulk_before_ack < bulk * BULK_CHUNK * 3 // 4


async def test_cancel_stops_the_stream_and_its_producer(base: str) -> None:
    name = f"endless:cancel:{base}"
    PROBES.watch(name)
    async with connect(base, "/probe/ws") as ws:
        await send(ws, type="open", stream=1, text=name)
        while not isinstance(await next_message(ws), list):
            pass
        await send(ws, type="cancel", stream=1)
        await asyncio.to_thread(wait_for, PROBES.closed[name])
        received: list[DataChunk] = []
        await barrier(ws, received)  # no end and no error for a cancelled stream
        await send(ws, type="open", stream=2, text="small")
        chunks, _ = await until_end(ws, 2)
        assert [c.data for c in chunks] == [b"small"]


async def test_a_client_that_disconnects_stops_the_producer(base: str) -> None:
    name = f"endless:gone:{base}"
    PROBES.watch(name)
    async with connect(base, "/probe/ws") as ws:
        await send(ws, type="open", stream=1, text=name)
        while not isinstance(await next_message(ws), list):
            pass
    await asyncio.to_thread(wait_for, PROBES.closed[name])


async def test_an_sse_client_that_disconnects_stops_the_producer(base: str) -> None:
    name = f"endless:sse:{base}"
    PROBES.watch(name)
    async with (
        httpx.AsyncClient(timeout=LIMIT) as client,
        aconnect_sse(client, "GET", f"http://{base}/probe/sse?{name}") as source,
    ):
        async for event in source.aiter_sse():
            if event.event == "data":
                break
    await asyncio.to_thread(wait_for, PROBES.closed[name])


async def test_failures_and_refusals_end_only_their_stream(base: str) -> None:
    async with connect(base, "/probe/ws") as ws:
        await send(ws, type="open", stream=1, text="boom")
        await send(ws, type="open", stream=2, text="refuse")
        errors: dict[int, str] = {}
        while len(errors) < 2:
            message = await next_message(ws)
            if isinstance(message, dict) and message["type"] == "error":
                errors[message["stream"]] = message["code"]
        assert errors == {1: "internal", 2: "busy"}
        name = f"endless:twice:{base}"
        PROBES.watch(name)
        await send(ws, type="open", stream=3, text=name)
        await send(ws, type="open", stream=3, text=name)  # still open: refused, left alone
        await send(ws, type="resume", stream=4, after=0, token="x")  # nothing to resume
        seen: set[tuple[Any, str]] = set()
        while len(seen) < 2:
            message = await next_message(ws)
            if isinstance(message, dict) and message["type"] == "error":
                seen.add((message["stream"], message["code"]))
        assert seen == {(None, "stream_exists"), (4, "unknown_stream")}
        await send(ws, type="cancel", stream=3)
        await asyncio.to_thread(wait_for, PROBES.closed[name])


async def test_bad_input_gets_diaprotos_answers(base: str) -> None:
    with pytest.raises(InvalidStatus):  # no diaproto.v1 offered: the handshake is refused
        async with websockets.connect(f"ws://{base}/ws", open_timeout=LIMIT):
            pass
    async with connect(base) as ws:
        await ws.send(b"\x00\x01")  # clients send no binary messages: answered, kept open
        assert await next_message(ws) == {
            "type": "error",
            "stream": None,
            "code": "bad_message",
            "message": "clients send no binary messages in v1",
        }
        await ws.send("x" * (1024 * 1024 + 1))  # over the message limit: closed with 1009
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), LIMIT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009


async def test_speech_over_sse(base: str) -> None:
    events = []
    async with (
        httpx.AsyncClient(timeout=LIMIT) as client,
        aconnect_sse(
            client, "GET", f"http://{base}/sse", params={"text": TEXT, "voice": "S1"}
        ) as source,
    ):
        assert source.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        async for event in source.aiter_sse():
            events.append(event)
    data = [e for e in events if e.event == "data"]
    assert [e.id for e in data] == [str(n) for n in range(1, len(data) + 1)]
    assert b"".join(base64.b64decode(e.data) for e in data) == expected_audio(TEXT)
    assert json.loads(events[-1].data) == {"type": "end", "stream": 1, "seq": len(data)}
    async with httpx.AsyncClient(timeout=LIMIT) as client:
        refused = await client.get(f"http://{base}/sse", params={"text": "x", "voice": "S9"})
        assert refused.status_code == 200
        assert '"code":"invalid_request"' in refused.text
        plain = await client.get(f"http://{base}/probe/ws")
        assert plain.status_code == 426


# --- in process, with a scripted ASGI server: the paths a real server rarely takes -------


class Scripted:
    """An ASGI server's side of one WebSocket: scripted receives, recorded sends."""

    def __init__(self, *incoming: dict[str, Any], block_sends: bool = False) -> None:
        self.incoming: list[dict[str, Any]] = [{"type": "websocket.connect"}, *incoming]
        self.sent: list[asgi.Message] = []
        self.block_sends = block_sends
        self.fail_sends = False
        self.slow = False  # each message takes a moment: a fast producer gets ahead
        self.more = anyio.Event()

    async def receive(self) -> dict[str, Any]:
        while not self.incoming:
            await self.more.wait()
            self.more = anyio.Event()
        return self.incoming.pop(0)

    def push(self, message: dict[str, Any]) -> None:
        self.incoming.append(message)
        self.more.set()

    async def send(self, message: asgi.Message) -> None:
        if self.fail_sends and message["type"] == "websocket.send":
            raise OSError("the client is gone")
        self.sent.append(message)
        if self.block_sends and message["type"] == "websocket.send" and "bytes" in message:
            await anyio.sleep_forever()
        await anyio.sleep(0.002 if self.slow else 0)


def ws_scope() -> dict[str, Any]:
    return {"type": "websocket", "path": "/ws", "subprotocols": [SUBPROTOCOL]}


def opening(stream: int, text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "websocket.receive", "text": json.dumps(
        {"type": "open", "stream": stream, "text": text, **extra}
    )}  # fmt: skip


async def test_a_paused_producer_waits_for_the_scheduler() -> None:
    config = ConnectionConfig(
        scheduler=SchedulerConfig(high_watermark=200_000, low_watermark=100_000)
    )
    name = "bulk-64:paused"
    server = Scripted(opening(1, name))
    server.slow = True
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                lambda: asgi.serve_websocket(
                    ws_scope(), server.receive, server.send, handler=_probe_handler, config=config
                )
            )
            while not any('"end"' in m.get("text", "") for m in server.sent):
                await anyio.sleep(0.01)
            server.push({"type": "websocket.disconnect", "code": 1000})
    data = [m["bytes"] for m in server.sent if "bytes" in m]
    assert sum(len(c.data) for d in data for c in decode_records(d)) == 64 * BULK_CHUNK


async def test_the_write_timeout_ends_a_connection_whose_sends_never_return() -> None:
    name = "endless:blocked"
    PROBES.watch(name)
    server = Scripted(opening(1, name), block_sends=True)
    config = ConnectionConfig(timeouts=Timeouts(write_timeout=0.05))
    with anyio.fail_after(LIMIT):
        await asgi.serve_websocket(
            ws_scope(), server.receive, server.send, handler=_probe_handler, config=config
        )
    assert PROBES.closed[name].is_set()
    assert server.sent[-1]["type"] == "websocket.send"  # no close: it could not arrive


async def test_a_failing_send_is_a_client_gone_and_odd_scopes() -> None:
    name = "endless:failing"
    PROBES.watch(name)
    server = Scripted(opening(1, name))
    server.fail_sends = True
    with anyio.fail_after(LIMIT):
        await asgi.serve_websocket(ws_scope(), server.receive, server.send, handler=_probe_handler)
    left = Scripted()
    left.incoming = [{"type": "websocket.disconnect", "code": 1001}]
    await asgi.serve_websocket(ws_scope(), left.receive, left.send, handler=_probe_handler)
    assert left.sent == []
    with pytest.raises(ValueError, match="websocket scope"):
        await asgi.serve_websocket(
            {"type": "http"}, left.receive, left.send, handler=_probe_handler
        )
    await asgi.websocket_app(_probe_handler)({"type": "lifespan"}, left.receive, left.send)
    assert left.sent == []


async def test_a_failing_application_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    def broken(request: asgi.StreamRequest) -> AsyncIterator[bytes]:
        raise RuntimeError("the handler itself failed")

    server = Scripted(opening(1, "x"))
    with anyio.fail_after(LIMIT):
        await asgi.serve_websocket(ws_scope(), server.receive, server.send, handler=broken)
    assert server.sent[-1] == {"type": "websocket.close", "code": 1011}
    assert "the handler itself failed" in caplog.text
