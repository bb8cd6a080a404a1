"""``python -m benchmarks.under_attack [--runtimes asyncio,trio] [--samples 15]``

A normal client's first audio while others misbehave, against its baseline, per runtime.
``diaproto serve`` (the synthetic voice, default limits) runs as a subprocess; the normal
client connects from 127.0.0.2 and opens one stream, ``samples`` times per case. The cases:

- ``baseline``: nobody else.
- ``flood``: one WebSocket from 127.0.0.1 sends 300 ``open`` messages and never reads.
- ``churn``: a thread from 127.0.0.1 opens a WebSocket, opens a stream and resets the
  connection, as fast as it can, all through the measurement.
- ``stalled``: 50 WebSockets and 10 SSE responses (each from its own 127.0.0.x address)
  stream long texts into clients that never read.

Prints a Markdown table: median and p90 first audio per case, and the median's ratio to the
baseline (the target is at most 2).
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from wsproto import ConnectionType, WSConnection
from wsproto.events import Message, Request, TextMessage

LONG_TEXT = " ".join(f"Sentence number {n} is here to make the stream last." for n in range(40))
NORMAL = "127.0.0.2"
SERVE = "import sys; from diaproto.apps.cli import main; sys.exit(main())"
LIMIT = 30.0  # seconds: a first audio later than this counts as none


@contextmanager
def server(runtime: str) -> Iterator[int]:
    command = [sys.executable, "-c", SERVE, "serve", "--runtime", runtime, "--port", "0"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if found is None:
            raise RuntimeError(f"the server did not start: {line!r}")
        yield int(found.group(1))
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class RawClient:
    """A WebSocket client on a plain socket (wsproto frames it), for clients that never read."""

    def __init__(self, port: int, source: str, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((source, 0))
        self.sock.settimeout(LIMIT)
        self.sock.connect(("127.0.0.1", port))
        self.ws = WSConnection(ConnectionType.CLIENT)
        handshake = Request(host="127.0.0.1", target="/ws", subprotocols=["diaproto.v1"])
        self.sock.sendall(self.ws.send(handshake))
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        self.ws.receive_data(head)
        list(self.ws.events())

    def open(self, stream: int, text: str) -> None:
        message = json.dumps({"type": "open", "stream": stream, "text": text})
        self.sock.sendall(self.ws.send(Message(data=message)))

    def first_audio(self) -> float:
        """Seconds from now to the first binary message (after an open)."""
        started = time.perf_counter()
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("closed before any audio")
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, TextMessage) and '"error"' in event.data:
                    raise RuntimeError(event.data)
                if isinstance(event, Message) and isinstance(event.data, bytes | bytearray):
                    return time.perf_counter() - started

    def reset(self) -> None:
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        self.sock.close()


def normal_first_audio(port: int) -> float:
    client = RawClient(port, NORMAL)
    try:
        client.open(1, "Hello there.")
        return client.first_audio()
    finally:
        client.sock.close()


@contextmanager
def flood(port: int) -> Iterator[None]:
    flooder = RawClient(port, "127.0.0.1", rcvbuf=4096)
    for stream in range(1, 301):
        flooder.open(stream, LONG_TEXT)
    time.sleep(2.0)  # let the opens land and the buffers fill
    try:
        yield
    finally:
        flooder.sock.close()


@contextmanager
def churn(port: int) -> Iterator[None]:
    done = threading.Event()
    cycles = [0]

    def loop() -> None:
        while not done.is_set():
            with suppress(OSError, RuntimeError):
                client = RawClient(port, "127.0.0.1")
                client.open(1, LONG_TEXT)
                client.reset()
                cycles[0] += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    time.sleep(2.0)
    try:
        yield
    finally:
        done.set()
        thread.join(LIMIT)
        print(f"  (churn: {cycles[0]} open-reset cycles)", file=sys.stderr)


@contextmanager
def stalled(port: int) -> Iterator[None]:
    sockets: list[socket.socket] = []
    try:
        for n in range(50):
            client = RawClient(port, f"127.0.0.{10 + n}", rcvbuf=4096)
            client.open(1, LONG_TEXT)
            sockets.append(client.sock)
        for n in range(10):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.bind((f"127.0.0.{70 + n}", 0))
            sock.connect(("127.0.0.1", port))
            sock.sendall(
                b"GET /v1/stream?text=" + LONG_TEXT.replace(" ", "+").encode() + b" HTTP/1.1\r\n"
                b"Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
            )
            sockets.append(sock)
        time.sleep(3.0)  # their buffers fill; the server's writes block
        yield
    finally:
        for sock in sockets:
            sock.close()


def measure(port: int, samples: int) -> list[float]:
    with suppress(OSError, RuntimeError):
        normal_first_audio(port)  # warm up
    out = []
    for _ in range(samples):
        try:
            out.append(normal_first_audio(port))
        except (OSError, RuntimeError):
            out.append(float("inf"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.under_attack", description=__doc__)
    parser.add_argument("--runtimes", default="asyncio,trio,tornado,sockets")
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args(argv)
    cases = {"flood": flood, "churn": churn, "stalled": stalled}
    print("| runtime | case | median first audio | p90 | median / baseline |")
    print("|---|---|---|---|---|")
    for runtime in args.runtimes.split(","):
        with server(runtime) as port:
            baseline = statistics.median(measure(port, args.samples))
            print(f"| {runtime} | baseline | {baseline * 1000:.0f} ms | | 1.0 |", flush=True)
        for name, case in cases.items():
            with server(runtime) as port, case(port):
                times = sorted(measure(port, args.samples))
                median = statistics.median(times)
                p90 = times[int(0.9 * (len(times) - 1))]
                print(
                    f"| {runtime} | {name} | {median * 1000:.0f} ms | {p90 * 1000:.0f} ms "
                    f"| {median / baseline:.2f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
