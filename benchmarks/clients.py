"""Load clients: raw sockets with the handshake done by hand, so the client costs least.

Blocking sockets for one-connection scenarios, asyncio (uvloop when present) Protocols for the
many-connection ones. Every read and every loop is bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import itertools
import os
import socket
import struct
import sys
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

HOST = "127.0.0.1"
RECV = 1 << 20
STAMP = struct.Struct(">Q")


class BenchError(RuntimeError):
    """A run that did not complete: reported as a failure, never as a figure."""


def ws_frame_size(payload: int) -> int:
    """Bytes on the wire of one unmasked server frame carrying ``payload`` bytes."""
    return payload + (2 if payload < 126 else 4 if payload < 65536 else 10)


def upgrade_request(target: str, port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {target} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def read_head(sock: socket.socket, deadline: float) -> tuple[bytes, bytes]:
    """Read a response head; returns (head, bytes after it)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError(f"connection closed during the handshake: {buf[:200]!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def ws_connect(
    port: int, target: str, timeout: float = 10.0, rcvbuf: int | None = None
) -> tuple[socket.socket, bytes]:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(timeout)
    sock.connect((HOST, port))
    sock.sendall(upgrade_request(target, port))
    head, rest = read_head(sock, time.monotonic() + timeout)
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise BenchError(f"upgrade refused: {head[:200]!r}")
    return sock, rest


def count_bytes(sock: socket.socket, already: int, expected: int, deadline: float) -> int:
    """Read until ``expected`` bytes arrived; returns how many did."""
    buf = bytearray(RECV)
    got = already
    while got < expected:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"timed out with {got} of {expected} bytes")
        sock.settimeout(left)
        n = sock.recv_into(buf)
        if n == 0:
            raise BenchError(f"server closed after {got} of {expected} bytes")
        got += n
    return got


def ws_push(port: int, n: int, size: int, timeout: float = 60.0) -> float:
    """Messages a second of ``/push``: time from the 101 to the last expected byte."""
    sock, rest = ws_connect(port, f"/push?n={n}&size={size}")
    try:
        t0 = time.perf_counter()
        count_bytes(sock, len(rest), n * ws_frame_size(size), time.monotonic() + timeout)
        return n / (time.perf_counter() - t0)
    finally:
        sock.close()


def sse_push(port: int, n: int, size: int, timeout: float = 60.0) -> float:
    """Events a second of ``/sse``: time from the response head to the end of the body.

    Counts ``data:`` fields on the raw stream (chunk framing included; no server here splits an
    event across chunks, and the carried tail covers a field split between two reads).
    """
    sock = socket.create_connection((HOST, port), timeout)
    try:
        sock.sendall(
            f"GET /sse?n={n}&size={size} HTTP/1.1\r\nHost: {HOST}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        deadline = time.monotonic() + timeout
        head, rest = read_head(sock, deadline)
        if not head.startswith(b"HTTP/1.1 200"):
            raise BenchError(f"SSE refused: {head[:200]!r}")
        chunked = b"chunked" in head.lower()
        t0 = time.perf_counter()
        events, tail, data = 0, b"", rest
        while True:
            window = tail + data
            events += window.count(b"data:") - tail.count(b"data:")
            tail = window[-8:]
            if (chunked and tail.endswith(b"0\r\n\r\n")) or events >= n:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"timed out after {events} of {n} events")
            sock.settimeout(left)
            data = sock.recv(RECV)
            if not data:
                break
        elapsed = time.perf_counter() - t0
        if events < n:
            raise BenchError(f"only {events} of {n} events arrived")
        return n / elapsed
    finally:
        sock.close()


class FrameReader:
    """Incremental parser of unmasked server frames: (opcode, payload) pairs."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        self.buf += data
        buf = self.buf
        pos = 0
        while len(buf) - pos >= 2:
            opcode, length = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if len(buf) - start < length:
                break
            yield opcode, bytes(buf[start : start + length])
            pos = start + length
        del buf[:pos]


def tick_latencies(port: int, count: int, interval: float, size: int) -> list[float]:
    """Microseconds from the server's stamp (just before its send) to the client's read."""
    sock, rest = ws_connect(port, f"/tick?count={count}&interval={interval}&size={size}")
    latencies: list[float] = []
    reader = FrameReader()
    deadline = time.monotonic() + count * interval + 10.0
    try:
        data = rest
        while len(latencies) < count:
            now = time.monotonic_ns()
            for opcode, payload in reader.feed(data):
                if opcode == 2 and len(payload) >= 8:
                    latencies.append((now - STAMP.unpack_from(payload)[0]) / 1000)
            if len(latencies) >= count:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"timed out after {len(latencies)} of {count} ticks")
            sock.settimeout(left)
            data = sock.recv(RECV)
            if not data:
                raise BenchError(f"server closed after {len(latencies)} ticks")
    finally:
        sock.close()
    return latencies


def echo_round_trips(port: int, count: int) -> list[float]:
    """Microseconds per 8-byte round trip through a plain asyncio echo server."""
    rtts: list[float] = []
    with socket.create_connection((HOST, port), 10.0) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            t0 = time.perf_counter_ns()
            sock.sendall(b"12345678")
            got = 0
            while got < 8:
                chunk = sock.recv(64)
                if not chunk:
                    raise BenchError("echo server closed")
                got += len(chunk)
            rtts.append((time.perf_counter_ns() - t0) / 1000)
    return rtts


def waiting(sock: socket.socket) -> int:
    """Bytes received by the kernel and not yet read (``FIONREAD``)."""
    queued = bytearray(4)
    fcntl.ioctl(sock, termios.FIONREAD, queued)
    return int.from_bytes(queued, sys.byteorder)


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame, masked as RFC 6455 requires of clients (payload < 64 KiB)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes((0x80 | opcode, 0x80 | n)) if n < 126 else bytes((0x80 | opcode, 0xFE))
    length = b"" if n < 126 else n.to_bytes(2, "big")
    return head + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def credit_grant(stream: int, nbytes: int) -> bytes:
    """diaproto.v1's credit message (docs/protocol.md), written out: the client imports no
    diaproto code."""
    text = f'{{"type":"credit","stream":{stream},"bytes":{nbytes}}}'
    return masked_frame(1, text.encode())


#: The stream id of ``/bulk``'s 4 KiB messages on the diaproto server (its DATA stream).
BULK_STREAM = 1


@dataclass
class ControlRun:
    """One P5 connection: the control messages' latencies and how fast the bulk flowed."""

    latencies: list[float]  # ms from each control message's stamp to its read, after warm-up
    bulk_rate: float  # bulk payload bytes a second read after warm-up
    queued: int  # most bytes seen waiting in the client's kernel before a read, after warm-up


def control_latencies(  # noqa: PLR0917
    port: int,
    count: int,
    interval: float,
    rate: float,
    rcvbuf: int = 65536,
    credit: int | None = None,
) -> ControlRun:
    """P5: read ``/bulk`` at ``rate`` bytes/s; ms from each control message's stamp to its read.

    ``credit``: ask for the bulk stream with this much byte credit (``/bulk?credit=N``, diaproto
    only) and grant back, after each paced read, the bulk payload bytes it consumed; the
    server then never has more than the credit and one message on the way. ``None``: the plain
    ``/bulk`` every peer serves. The first second is warm-up (without credit the bulk stream
    fills every buffer on the way first).
    """
    target = f"/bulk?interval={interval}" + (f"&credit={credit}" if credit is not None else "")
    sock, rest = ws_connect(port, target, rcvbuf=rcvbuf)
    reader = FrameReader()
    latencies: list[float] = []
    step = 16384
    start = time.monotonic()
    deadline = start + 1.0 + count * interval * 4 + 30.0
    warm = start + 1.0
    received = 0
    consumed = 0  # bulk payload bytes read and not yet granted back
    bulk = 0  # bulk payload bytes read after warm-up
    queued = 0
    try:
        data = rest
        while len(latencies) < count:
            now_ns = time.monotonic_ns()
            warmed = now_ns / 1e9 >= warm
            for opcode, payload in reader.feed(data):
                if opcode == 1 and warmed:
                    latencies.append((now_ns - int(payload)) / 1e6)
                elif opcode == 2:
                    consumed += len(payload)
                    bulk += len(payload) if warmed else 0
            received += len(data)
            # Pace: never ahead of ``rate`` bytes a second since the start.
            ahead = start + received / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            if credit is not None and consumed:
                # Read at the rate by now: only these bytes may be replaced on the way.
                sock.sendall(credit_grant(BULK_STREAM, consumed))
                consumed = 0
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {len(latencies)} of {count} control messages")
            if warmed:
                queued = max(queued, waiting(sock))
            sock.settimeout(10.0)
            data = sock.recv(step)
            if not data:
                raise BenchError("server closed the bulk stream")
    finally:
        sock.close()
    return ControlRun(latencies[:count], bulk / max(time.monotonic() - warm, 1e-9), queued)


# --- many connections (asyncio) -----------------------------------------------------------


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


@dataclass
class TickClient(asyncio.Protocol):
    """Counts whole frames of a fixed size and notes when each one completed."""

    frame: int
    handshake: bytes
    connected: asyncio.Future[None]
    arrivals: list[float] = field(default_factory=list)
    head: bytes = b""
    body: int = 0
    transport: asyncio.Transport | None = None
    upgraded: bool = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.handshake)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, data = self.head.partition(b"\r\n\r\n")
            self.upgraded = True
            if not self.connected.done():
                if head.startswith(b"HTTP/1.1 101"):
                    self.connected.set_result(None)
                else:
                    self.connected.set_exception(BenchError(f"refused: {head[:100]!r}"))
        if self.frame <= 0 or not data:
            return
        before = self.body // self.frame
        self.body += len(data)
        done = self.body // self.frame - before
        if done:
            now = time.monotonic()
            self.arrivals.extend([now] * done)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_exception(BenchError("connection lost before the upgrade"))


async def open_clients(
    port: int, target: str, count: int, frame: int, timeout: float = 60.0
) -> list[TickClient]:
    """Open ``count`` upgraded connections, at most 100 handshakes in flight."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(100)
    clients: list[TickClient] = []

    async def one() -> None:
        async with gate:
            client = TickClient(frame, upgrade_request(target, port), loop.create_future())
            await loop.create_connection(lambda: client, HOST, port)
            clients.append(client)
            await client.connected

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), timeout)
    return clients


def close_all(clients: list[TickClient]) -> None:
    for client in clients:
        if client.transport is not None:
            client.transport.abort()


def deviations_ms(arrivals: list[float], interval: float, since: float) -> list[float]:
    """|gap - interval| in ms between consecutive frames that arrived after ``since``."""
    out: list[float] = []
    for a, b in itertools.pairwise(arrivals):
        if a >= since:
            out.append(abs(b - a - interval) * 1000)
    return out


Sampler = Callable[[], float]
