"""What many tests share: one way to wait, one way to run a server, one echo application,
the fast synthetic voice, and a small independent reader of the diaproto.v1 wire protocol.

Waits are on conditions with generous limits, never on how fast an idle CPU is: the suite
must pass on a loaded machine.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import pytest

from diaproto import adapters
from diaproto.apps.serve.sources import Source, SyntheticSource
from diaproto.apps.serve.text import split_sentences
from diaproto.config import ConnectionConfig
from diaproto.events import Event, Request, WebSocketMessage, WebSocketRequest
from diaproto.runtime import Application, ServerHandle, Session

if TYPE_CHECKING:
    import httpx
    from websockets.sync.client import ClientConnection

T = TypeVar("T")

POLL_LIMIT = 10.0  # seconds a bounded wait may take before the test fails
STOP_LIMIT = 15.0  # seconds a server may take to stop


def wait_until(predicate: Callable[[], bool], what: str, limit: float = POLL_LIMIT) -> None:
    """Return once ``predicate()`` holds; fail with ``what`` after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting until {what}")
        time.sleep(0.02)


def wait_for(produce: Callable[[], T | None], what: str, limit: float = POLL_LIMIT) -> T:
    """The first value ``produce()`` gives that is not None; fail with ``what`` after
    ``limit`` seconds."""
    found: list[T] = []

    def produced() -> bool:
        value = produce()
        if value is not None:
            found.append(value)
        return bool(found)

    wait_until(produced, what, limit)
    return found[0]


def start(runtime: str, app: Application, config: ConnectionConfig | None = None) -> ServerHandle:
    """``app`` served on 127.0.0.1 by the runtime's adapter, in a thread; ``runtime`` is an
    adapter runtime name, or ``asyncio+uvloop``."""
    name, _, loop = runtime.partition("+")
    return adapters.start_in_thread(name, app, "127.0.0.1", 0, config, use_uvloop=loop == "uvloop")


@contextmanager
def serving(
    runtime: str, app: Application, config: ConnectionConfig | None = None
) -> Iterator[ServerHandle]:
    """``app`` served on 127.0.0.1 by the runtime's adapter, in a thread, for the block;
    stopped (and its stop checked) on exit."""
    handle = start(runtime, app, config)
    try:
        yield handle
    finally:
        stopped = handle.stop(STOP_LIMIT)
    assert stopped, f"the {runtime} server did not stop within {STOP_LIMIT} s"


class Echo:
    """Plain WebSocket echo that raises on "boom"; HTTP requests get 200 "ok"."""

    def __init__(self) -> None:
        self.shut_down = False

    def handle_event(self, session: Session, event: Event) -> None:
        conn, now = session.conn, session.runtime.now()
        match event:
            case Request():
                conn.respond(200, (("content-type", "text/plain"),), b"ok", now=now)
            case WebSocketRequest():
                conn.accept_websocket(None, now=now)
                conn.open_stream(1, now)
            case WebSocketMessage(data=str() as text):
                if text == "boom":
                    raise RuntimeError("the application failed")
                conn.send(1, f"echo: {text}", now)
            case _:
                pass

    def shutdown(self) -> None:
        self.shut_down = True


# --- the Dia service's voice and its wire protocol (docs/protocol.md §5) ------------------


def fast_source() -> Source:
    """The synthetic voice, paced 50x faster than real time so tests stay short."""
    return SyntheticSource(real_time_factor=0.02, first_chunk_latency=0.005)


def synthetic_audio(text: str, voice: str = "S1", speed: float = 1.0) -> bytes:
    """What an uninterrupted stream carries (the synthetic voice is deterministic)."""
    source = SyntheticSource(real_time_factor=0, first_chunk_latency=0)
    return b"".join(
        chunk
        for sentence in split_sentences(text)
        for chunk in source.generate(sentence, voice, speed)
    )


def records(message: bytes) -> list[tuple[int, int, bytes]]:
    """Split one binary message into (stream, seq, payload) records."""
    out: list[tuple[int, int, bytes]] = []
    offset = 0
    while offset < len(message):
        stream, seq, length = struct.unpack_from("!III", message, offset)
        offset += 12
        payload = message[offset : offset + length]
        assert len(payload) == length, "truncated record"
        out.append((stream, seq, payload))
        offset += length
    assert out, "an empty binary message"
    return out


def recv_json(ws: ClientConnection) -> dict[str, Any]:
    """The next message, which must be a control message."""
    message = ws.recv(timeout=POLL_LIMIT)
    assert isinstance(message, str), f"expected a control message, got {len(message)} bytes"
    value = json.loads(message)
    assert isinstance(value, dict)
    return value


def receive_stream(
    ws: ClientConnection, stream: int, on_record: Callable[[bytes], None] | None = None
) -> tuple[list[int], bytes, dict[str, Any]]:
    """Read until the stream's end: its sequence numbers, payload and end message; fails on
    an error or a record of another stream. ``on_record`` sees each payload as it comes."""
    seqs: list[int] = []
    data = bytearray()
    for _ in range(100_000):  # bounded: far more messages than any stream here has
        message = ws.recv(timeout=POLL_LIMIT)
        if isinstance(message, str):
            control = json.loads(message)
            assert control["type"] != "error", control
            if control["type"] == "end" and control["stream"] == stream:
                return seqs, bytes(data), control
            continue
        for record_stream, seq, payload in records(message):
            assert record_stream == stream
            seqs.append(seq)
            data += payload
            if on_record is not None:
                on_record(payload)
    raise AssertionError("the stream did not end")


# --- MCP over Streamable HTTP (2025-11-25) -------------------------------------------------

JSON_AND_SSE = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def rpc(method: str, params: dict[str, Any] | None = None, rid: int | None = 1) -> dict[str, Any]:
    """A JSON-RPC request (a notification when ``rid`` is None)."""
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if rid is not None:
        body["id"] = rid
    if params is not None:
        body["params"] = params
    return body


def session(session_id: str) -> dict[str, str]:
    """The headers of a request in an MCP session."""
    return {**JSON_AND_SSE, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}


def initialize_params(capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    """The params of a 2025-11-25 ``initialize``."""
    return {
        "protocolVersion": "2025-11-25",
        "capabilities": capabilities or {},
        "clientInfo": {"name": "diaproto-tests", "version": "0"},
    }


def initialize(client: httpx.Client, url: str, capabilities: dict[str, Any] | None = None) -> str:
    """The 2025-11-25 handshake; returns the session id."""
    params = initialize_params(capabilities)
    answer = client.post(url, json=rpc("initialize", params), headers=JSON_AND_SSE)
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["protocolVersion"] == "2025-11-25"
    session_id: str = answer.headers["mcp-session-id"]
    done = client.post(
        url, json=rpc("notifications/initialized", rid=None), headers=session(session_id)
    )
    assert done.status_code == 202
    return session_id


def not_run(message: str) -> NoReturn:
    """A test whose tool (a browser, node) is missing: skipped loudly (stderr and a warning
    in the summary), or failed under ``CI=true``, where everything must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    print(f"\n*** {message} ***", file=sys.stderr)
    with warnings.catch_warnings():  # shown, not turned into an error by filterwarnings
        warnings.simplefilter("always")
        warnings.warn(message, pytest.PytestWarning, stacklevel=3)
    pytest.skip(message)
