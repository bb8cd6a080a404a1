"""MCP servers the SDK client suites run against: the SDK's own server ("reference") and diaproto.

Both targets have the same tool contract (``speak`` with progress, ``list_voices``) and expose
``GET /metrics`` with the gauge ``diaproto_active_generations``, so one set of client-side checks
(including "cancellation stopped the generation") runs against either.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
from server_fixture import running_server

from diaproto.adapters import start_in_thread
from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.sources import SyntheticSource

HERE = Path(__file__).resolve().parent
# diaproto on every runtime: the same service, the same answers (issue 4's promise).
TARGETS = ["reference", "diaproto", "diaproto-trio", "diaproto-tornado", "diaproto-sockets"]
STARTUP_TIMEOUT = 15.0
IDLE_TIMEOUT = 5.0


@dataclass(frozen=True)
class McpTarget:
    kind: str
    base: str  # http://127.0.0.1:<port>
    has_sse: bool  # legacy HTTP+SSE at /sse
    has_ws: bool  # WebSocket (subprotocol "mcp") at /mcp

    @property
    def mcp_url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def sse_url(self) -> str:
        return f"{self.base}/sse"

    @property
    def ws_url(self) -> str:
        return f"{self.base.replace('http://', 'ws://', 1)}/mcp"

    @property
    def metrics_url(self) -> str:
        return f"{self.base}/metrics"


def missing(what: str) -> NoReturn:
    """Skip loudly when a tool is missing here; fail under CI=true, where it must be present."""
    message = f"MCP SDK TEST NOT RUN: {what}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    print(f"\n*** {message} ***", file=sys.stderr)
    pytest.skip(message)


@contextmanager
def _reference() -> Iterator[McpTarget]:
    """tests/interop/mcp/reference_server.py in a subprocess (its own event loop, killed by its
    PID)."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "reference_server.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        # readline blocks, but the server prints its port before serving or dies trying.
        line = process.stdout.readline()
        match = re.fullmatch(r"PORT (\d+)\n", line)
        if match is None:
            raise RuntimeError(f"reference server did not start (its stderr is above): {line!r}")
        base = f"http://127.0.0.1:{match.group(1)}"
        _wait_until_serving(base)
        yield McpTarget(kind="reference", base=base, has_sse=True, has_ws=False)
    finally:
        process.terminate()
        try:
            process.communicate(timeout=STARTUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _wait_until_serving(base: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            httpx.get(f"{base}/metrics", timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def _diaproto(runtime: str) -> Iterator[McpTarget]:
    """``diaproto serve``'s service in a thread on ``runtime``, with the synthetic voice
    paced 10x faster than Dia: long texts still take seconds, so a test can tell a
    cancelled generation from a finished one."""
    source = SyntheticSource(real_time_factor=0.04, first_chunk_latency=0.005)
    if runtime == "trio":  # the anyio adapter, as tests/apps/serve's fixture runs it
        with running_server(source, backend=runtime) as server:
            yield McpTarget(kind="diaproto", base=server.url, has_sse=True, has_ws=True)
        return
    handle = start_in_thread(runtime, DiaService(source))
    try:
        base = f"http://127.0.0.1:{handle.port}"
        yield McpTarget(kind="diaproto", base=base, has_sse=True, has_ws=True)
    finally:
        assert handle.stop(), f"the {runtime} server did not stop"


@contextmanager
def mcp_server(kind: str) -> Iterator[McpTarget]:
    """A running MCP server of ``kind`` ("reference" or "diaproto") for the duration."""
    if kind == "reference":
        with _reference() as target:
            yield target
    elif kind.startswith("diaproto"):
        with _diaproto(kind.partition("-")[2] or "asyncio") as target:
            yield target
    else:
        raise ValueError(f"unknown MCP target {kind!r}")


def active_generations(target: McpTarget) -> int:
    """The ``diaproto_active_generations`` gauge from GET /metrics."""
    text = httpx.get(target.metrics_url, timeout=5.0).text
    match = re.search(r"^diaproto_active_generations(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
    assert match is not None, f"no diaproto_active_generations in /metrics:\n{text}"
    return int(float(match.group(1)))


def settled_generations(target: McpTarget, timeout: float = IDLE_TIMEOUT) -> int:
    """Poll the gauge until it reads 0 or ``timeout`` passes; return the last reading."""
    deadline = time.monotonic() + timeout
    value = active_generations(target)
    while value != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        value = active_generations(target)
    return value
