"""Server subprocesses: start pinned to the server core, wait until they listen, always stop."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER_CORE, CLIENT_CORE = 0, 1
UNBOUNDED = 1_000_000  # per-client limits lifted for load tests
START_TIMEOUT = 20.0


#: Decided once, before this process pins itself to the client core.
_PINNING = {SERVER_CORE, CLIENT_CORE} <= os.sched_getaffinity(0) and shutil.which(
    "taskset"
) is not None


def pinning() -> bool:
    """Pin only where there are two cores to pin to and taskset exists."""
    return _PINNING


def pin_client() -> None:
    if pinning():
        os.sched_setaffinity(0, {CLIENT_CORE})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    system: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def command(system: str, port: int) -> list[str]:
    if system == "diaproto-serve":
        # Every benchmark client shares one address: lift the per-client bounds, which
        # exist for fairness between addresses, not to cap a load test.
        return [sys.executable, "-m", "diaproto.apps.cli", "serve", "--model", "synthetic",
                "--port", str(port), "--log-level", "warning",
                "--max-generations-per-peer", str(UNBOUNDED),
                "--max-streams-per-connection", str(UNBOUNDED)]  # fmt: skip
    return [sys.executable, "-m", "benchmarks.serve", system, str(port)]


def start(system: str, logdir: Path, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    argv = command(system, port)
    if pinning():
        argv = ["taskset", "-c", str(SERVER_CORE), *argv]
    log = logdir / f"{system}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=_root(),
            env={**os.environ, **(env or {})},
        )
    server = Server(system, port, process, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return server
        time.sleep(0.05)
    server.stop()
    msg = f"{system} did not start listening within {START_TIMEOUT:.0f} s:\n{server.tail()}"
    raise RuntimeError(msg)


@contextlib.contextmanager
def running(systems: list[str], env: dict[str, str] | None = None) -> Iterator[dict[str, Server]]:
    """Start every system (idle servers cost nothing), stop them all on every path."""
    logdir = Path(tempfile.mkdtemp(prefix="diaproto-bench-"))
    servers: dict[str, Server] = {}
    try:
        for system in systems:
            servers[system] = start(system, logdir, env)
        yield servers
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(logdir, ignore_errors=True)


def _root() -> str:
    return str(Path(__file__).resolve().parent.parent)
