"""Helpers of the conformance suite: start a server on any runtime, a raw WebSocket client,
and two small applications that let a test see what the server side holds.

Everything here is runtime-neutral: a server is started only through the adapter module's
``start_in_thread`` and inspected only through ``ServerHandle.call``.
"""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from support import POLL_LIMIT, fast_source
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.generation import Generation
from diaproto.apps.serve.limits import MAX_SSE_LEAD, ServiceLimits
from diaproto.apps.serve.sources import Source
from diaproto.client import WebSocketClientConnection
from diaproto.events import (
    ConnectionClosed,
    Event,
    Request,
    StreamPaused,
    WebSocketAccepted,
    WebSocketRequest,
)
from diaproto.runtime import ServerHandle, Session
from diaproto.scheduler import Policy
from diaproto.scheduler.budget import MESSAGE_OVERHEAD
from diaproto.wire import SUBPROTOCOL, ErrorCode, OpenStream

RUNTIMES = ("asyncio", "anyio", "trio", "tornado", "sockets")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


# --- applications -------------------------------------------------------------------------


class RecordingService(DiaService):
    """The Dia service, recording how each connection ended and which streams paused."""

    def __init__(
        self,
        source: Source | None = None,
        *,
        resume_grace: float = 10.0,
        limits: ServiceLimits | None = None,
    ) -> None:
        # SSE is paced with the longest lead unless a test asks otherwise, so that the 50x
        # test voice is not held to real time in tests of other things.
        limits = limits or ServiceLimits(sse_lead=MAX_SSE_LEAD)
        super().__init__(source or fast_source(), resume_grace=resume_grace, limits=limits)
        self.closed: list[tuple[int | None, str]] = []
        self.paused: list[int] = []

    def handle_event(self, session: Session, event: Event) -> None:
        if isinstance(event, ConnectionClosed):
            self.closed.append((event.code, event.reason))
        elif isinstance(event, StreamPaused):
            self.paused.append(event.stream_id)
        super().handle_event(session, event)

    def sessions(self) -> list[Session]:
        """Loop thread only."""
        return list(self._sessions)

    def only_generation(self) -> Generation:
        """Loop thread only."""
        (generation,) = self.generations.live.values()
        return generation


@dataclass(eq=False)
class Probe:
    """A tiny diaproto.v1 application whose queues a test fills on demand.

    ``open`` with text ``bulk`` opens a stream the test tops up (``top_up``, on the loop
    thread); ``burst:N:SIZE`` queues N records of SIZE bytes at once and ends the stream;
    any other text is refused with ``invalid_request``. ``/healthz`` answers 200.
    """

    sessions: list[Session] = field(default_factory=list)
    closed: list[tuple[int | None, str]] = field(default_factory=list)
    enqueued: dict[tuple[int, int], int] = field(default_factory=dict)  # (session#, id) -> bytes
    # At each refused open: bulk bytes already out of the scheduler, and still queued in it.
    refusals: list[tuple[int, int]] = field(default_factory=list)

    def handle_event(self, session: Session, event: Event) -> None:
        conn, now = session.conn, session.runtime.now()
        match event:
            case Request():
                conn.respond(200, (("content-type", "text/plain"),), b"ok\n", now=now)
            case WebSocketRequest():
                if SUBPROTOCOL in event.subprotocols:
                    conn.accept_websocket(SUBPROTOCOL, now=now)
                    self.sessions.append(session)
                else:
                    conn.respond(400, (("content-type", "text/plain"),), b"no\n", now=now)
            case OpenStream(stream_id=stream, text="bulk"):
                budget = conn.config.scheduler.max_buffered
                conn.open_stream(stream, now, policy=Policy.PAUSE, limit=budget)
                self.enqueued[(self.sessions.index(session), stream)] = 0
            case OpenStream(stream_id=stream, text=text) if text.startswith("burst:"):
                _, count, size = text.split(":")
                conn.open_stream(stream, now)
                for n in range(int(count)):
                    conn.send(stream, bytes([n % 256]) * int(size), now)
                conn.end_stream(stream, now)
            case OpenStream(stream_id=stream):
                index = self.sessions.index(session)
                bulk = [key[1] for key in self.enqueued if key[0] == index]
                queued = sum(conn.scheduler.queued_bytes(b) for b in bulk)
                total = sum(self.enqueued[(index, b)] for b in bulk)
                self.refusals.append((total - queued, queued))
                conn.fail_stream(stream, ErrorCode.INVALID_REQUEST, "unknown text", now)
            case ConnectionClosed(code=code, reason=reason):
                self.closed.append((code, reason))
            case _:
                pass

    def shutdown(self) -> None:
        pass

    def top_up(self, index: int, stream: int, target: int, chunk: int = 16 * 1024) -> int:
        """Loop thread: queue data on a bulk stream until ``target`` bytes of it wait in the
        scheduler (within the connection budget). Returns all bytes queued on it so far."""
        session = self.sessions[index]
        conn, now = session.conn, session.runtime.now()
        scheduler = conn.scheduler
        budget = conn.config.scheduler.max_buffered
        # The budget counts each message's overhead too (a PAUSE send past it raises).
        while (
            scheduler.queued_bytes(stream) < target
            and scheduler.charged_bytes() + scheduler.in_flight_bytes + chunk + MESSAGE_OVERHEAD
            <= budget
        ):
            conn.send(stream, b"\x00" * chunk, now)
            self.enqueued[(index, stream)] += chunk
        session.wake()
        return self.enqueued[(index, stream)]

    def queued(self, index: int, stream: int) -> int:
        """Loop thread: bytes of the stream waiting in the scheduler (not yet written)."""
        return self.sessions[index].conn.scheduler.queued_bytes(stream)


# --- a raw WebSocket client ---------------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class RawWebSocket:
    """A WebSocket client by hand, for clients that misbehave on purpose."""

    def __init__(
        self,
        port: int,
        *,
        path: str = "/ws",
        subprotocol: str | None = SUBPROTOCOL,
        rcvbuf: int | None = None,
        timeout: float = POLL_LIMIT,
        origin: str | None = None,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.buffer = bytearray()
        try:
            self.sock.connect(("127.0.0.1", port))
            key = base64.b64encode(os.urandom(16)).decode()
            lines = [
                f"GET {path} HTTP/1.1",
                f"Host: 127.0.0.1:{port}",
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Key: {key}",
                "Sec-WebSocket-Version: 13",
            ]
            if subprotocol is not None:
                lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
            if origin is not None:
                lines.append(f"Origin: {origin}")
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            while b"\r\n\r\n" not in self.buffer:
                data = self.sock.recv(65536)
                if not data:
                    raise AssertionError("the server closed during the handshake")
                self.buffer += data
            head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
            self.buffer = bytearray(rest)
            self.status = int(head.split(b" ", 2)[1])
            self.head = head.decode("latin-1")
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        mask = os.urandom(4)
        length = len(payload)
        first = (0x80 if fin else 0) | opcode
        if length < 126:
            header = struct.pack("!BB", first, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", first, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_frame(OP_TEXT, json.dumps(message).encode())

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            self.buffer += data
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    def recv_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame; EOFError once the server closed."""
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        assert not second & 0x80, "a server frame must not be masked"
        return first & 0x0F, self._read(length)

    def recv_until_close(self, *, answer_pings: bool = False) -> tuple[int | None, list[int]]:
        """Read frames until a close frame: (its code, opcodes seen before it)."""
        seen: list[int] = []
        for _ in range(100_000):
            opcode, payload = self.recv_frame()
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return code, seen
            if opcode == OP_PING and answer_pings:
                self.send_frame(OP_PONG, payload)
            seen.append(opcode)
        raise AssertionError("no close frame")

    def wait_eof(self) -> bytes:
        """Read until the server closes the TCP connection; returns what came."""
        rest = bytearray(self.buffer)
        self.buffer.clear()
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return bytes(rest)
            if not data:
                return bytes(rest)
            rest += data

    def reset(self) -> None:
        """Close with SO_LINGER 0: the peer gets a TCP reset."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


# --- peers that stop reading --------------------------------------------------------------


def long_text(sentences: int) -> str:
    return " ".join(
        f"Sentence number {n} goes on for quite a while indeed." for n in range(sentences)
    )


def open_and_stop_reading(port: int, text: str) -> tuple[socket.socket, WebSocketClientConnection]:
    """A diaproto.v1 WebSocket with a tiny receive window that opens stream 1 and reads no more."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(POLL_LIMIT)
    sock.connect(("127.0.0.1", port))
    client = WebSocketClientConnection(
        time.monotonic(), f"127.0.0.1:{port}", "/ws", subprotocols=(SUBPROTOCOL,)
    )
    sock.sendall(client.data_to_send(time.monotonic()))
    while not isinstance(event := client.next_event(), WebSocketAccepted):
        assert event is None
        client.receive_data(sock.recv(65536), time.monotonic())
    client.send_wire(OpenStream(1, text, "S1"), time.monotonic())
    sock.sendall(client.data_to_send(time.monotonic()))
    return sock, client


def a_stream_paused(server: ServerHandle, service: DiaService) -> bool:
    """Whether a listener of the Dia service is paused (its peer stopped reading)."""
    return server.call(
        lambda: any(
            listener.paused
            for state in service._sessions.values()
            for _, listener in state.listeners.values()
        )
    )


# --- a peer that pipelines without end ----------------------------------------------------

OFFERED = 64 * 1024 * 1024


def pipeline_until_refused(sock: socket.socket) -> int:
    """Send pipelined requests until the server stops taking bytes; how many it took."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    chunk = request * (65536 // len(request))
    sock.setblocking(False)
    sent = 0
    while sent < OFFERED:
        _, writable, _ = select.select([], [sock], [], 1.0)
        if not writable:
            break  # the server stopped taking bytes (bounded wait, not a timing claim)
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            continue
    return sent


# --- clients --------------------------------------------------------------------------------


def ws_connect(port: int, *subprotocols: str) -> ClientConnection:
    offered = [Subprotocol(p) for p in subprotocols] if subprotocols else None
    return connect(
        f"ws://127.0.0.1:{port}/ws", subprotocols=offered, proxy=None, open_timeout=POLL_LIMIT
    )


def healthz(port: int) -> int:
    response = httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False, timeout=POLL_LIMIT)
    return response.status_code


def raw_http(port: int, request: bytes, *, timeout: float = POLL_LIMIT) -> bytes:
    """Send raw bytes; return everything the server sends until it closes (each read
    bounded by ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        out = bytearray()
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(
                    f"the server neither answered in full nor closed: {bytes(out)!r}"
                ) from None
            if not data:
                break
            out += data
        return bytes(out)
