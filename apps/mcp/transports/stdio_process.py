"""``diaproto mcp --stdio``: the MCP service of ``diaproto serve`` on this process's stdin and
stdout, for a client that starts the server as its subprocess.

Thin I/O around :class:`~diaproto.apps.mcp.transports.stdio.StdioTransport`: a thread reads
stdin and hands each chunk to the loop (waiting until the loop took it, so input is read no
faster than it is handled), and the loop (asyncio, with the adapters' runtime: timers, worker
threads for the model) runs the service and writes each message as one line. stdout is the
protocol's alone: the process's file descriptor 1 is pointed at stderr before anything runs,
so that a stray ``print`` or a library writing to stdout cannot corrupt the stream, and logs
go to stderr. End of stdin (the client's way to stop its server), a closed stdout, SIGINT or
SIGTERM end the session and the process cleanly (exit 0).

A write blocks the loop until the client takes the line: one client, so a client that stops
reading holds back only its own calls (their producers wait on the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, BinaryIO

from diaproto.adapters.asyncio import AsyncioRuntime
from diaproto.apps.mcp.transports.stdio import StdioTransport

if TYPE_CHECKING:
    from diaproto.apps.serve.app import DiaService

log = logging.getLogger("diaproto.mcp")

READ_SIZE = 64 * 1024  # bytes read from stdin at a time (the loop holds at most one chunk)
USAGE_ERROR = 2

#: The command line's model options, from its arguments (``diaproto.apps.cli``'s).
ModelOptions = Callable[[argparse.Namespace], dict[str, object]]


def run_stdio(args: argparse.Namespace, model_options: ModelOptions) -> int:
    """``diaproto mcp --stdio``: serve until stdin ends; the exit status."""
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        service = _service(args, model_options)
    except _Refused as exc:
        print(f"diaproto: {exc}", file=sys.stderr)
        return USAGE_ERROR
    stdout = reserve_stdout()
    log.info("MCP over stdio (model %s): reading JSON-RPC lines on stdin", args.model)
    try:
        asyncio.run(serve_stdio(service, sys.stdin.fileno(), stdout))
    finally:
        with contextlib.suppress(OSError):  # a client gone: what it did not take is lost
            stdout.close()
    return 0


class _Refused(Exception):
    """The service cannot be made as asked (the one line says why)."""


def _service(args: argparse.Namespace, model_options: ModelOptions) -> DiaService:
    try:
        from diaproto.apps.serve.app import DiaService  # noqa: PLC0415 (an extra's modules)
        from diaproto.apps.serve.sources import SourceUnavailable, load_source  # noqa: PLC0415
        from diaproto.mcp import McpHttpConfig  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        raise _Refused(
            f"diaproto mcp needs {exc.name}, which is not installed: pip install 'diaproto[serve]'"
        ) from exc
    try:
        source = load_source(args.model, **model_options(args))
    except (SourceUnavailable, ValueError) as exc:
        raise _Refused(str(exc)) from exc
    # No HTTP server answers a link here: every result carries its audio inline.
    config = McpHttpConfig(max_inline_audio_bytes=sys.maxsize)
    return DiaService(source, mcp_config=config)


def reserve_stdout(stdout: int = 1, stderr: int = 2) -> BinaryIO:
    """The protocol's own handle on stdout; file descriptor ``stdout`` (and ``sys.stdout``)
    then lead to ``stderr``, so that nothing else can write to the client."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(stdout), "wb")
    os.dup2(stderr, stdout)
    sys.stdout = sys.stderr
    return protocol


async def serve_stdio(service: DiaService, stdin: int, stdout: BinaryIO) -> None:
    """Serve one MCP client on file descriptor ``stdin`` and ``stdout`` until either ends
    (or SIGINT / SIGTERM, in the main thread); then stop the service and its workers."""
    loop = asyncio.get_running_loop()
    runtime = AsyncioRuntime(loop)
    ended = asyncio.Event()
    writer = LineWriter(stdout, on_broken=ended.set)
    transport = StdioTransport(service.mcp, runtime, writer.write)
    reader = threading.Thread(
        target=read_input,
        args=(stdin, runtime, transport, ended.set),
        name="diaproto-stdin",
        daemon=True,  # a read blocked on a stdin that never ends must not hold the exit
    )
    forward = ForwardLogs(transport, loop)
    logging.getLogger("diaproto").addHandler(forward)
    reader.start()
    try:
        with _stop_on_signals(loop, ended.set):
            await ended.wait()
    finally:
        logging.getLogger("diaproto").removeHandler(forward)
        transport.close()
        service.shutdown()
        runtime.close()
        await asyncio.to_thread(runtime.workers.join)  # off the loop their calls wait on
    log.info("MCP over stdio: the session ended")


def read_input(
    stdin: int, runtime: AsyncioRuntime, transport: StdioTransport, end: Callable[[], None]
) -> None:
    """The reader thread: each chunk to the loop, then the end of input; then ``end``."""
    try:
        while chunk := os.read(stdin, READ_SIZE):
            # Returns once the loop handled it: a fast writer cannot fill our memory.
            runtime.call_soon_threadsafe(partial(transport.receive_data, chunk))
        runtime.call_soon_threadsafe(transport.receive_eof)
    except OSError as exc:
        log.warning("MCP over stdio: reading stdin failed: %s", exc)
    except Exception:
        if runtime.closed:
            return  # the loop ended first (a signal, a closed stdout): nothing to tell it
        log.exception("MCP over stdio: handling the input failed")
    with contextlib.suppress(RuntimeError):
        runtime.call_soon_threadsafe(end)


class LineWriter:
    """Writes each message as one line and flushes it; a client that closed its end of
    stdout ends the session (``on_broken``) and later lines are dropped."""

    def __init__(self, stdout: BinaryIO, on_broken: Callable[[], None]) -> None:
        self._stdout = stdout
        self._on_broken = on_broken
        self.broken = False

    def write(self, text: str) -> None:
        if self.broken:
            return
        try:
            self._stdout.write(text.encode("utf-8") + b"\n")
            self._stdout.flush()
        except OSError as exc:  # BrokenPipeError: the client is gone
            self.broken = True
            log.info("MCP over stdio: stdout closed (%s)", exc)
            self._on_broken()


class ForwardLogs(logging.Handler):
    """diaproto's log records (those ``--log-level`` lets through) also go to the client, as
    ``notifications/message`` at or above the level it asked for."""

    def __init__(self, transport: StdioTransport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop

    def emit(self, record: logging.LogRecord) -> None:
        level = mcp_level(record.levelno)
        forward = partial(self._transport.log, level, record.getMessage(), record.name)
        # Always later on the loop, never inside the code that logged (it may be writing a
        # message, or on a worker thread); never blocking, so no one waits on the loop for it.
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._loop.call_soon_threadsafe(forward)


def mcp_level(levelno: int) -> str:
    """The MCP (RFC 5424) name of a Python logging level."""
    for threshold, name in _LEVELS:
        if levelno >= threshold:
            return name
    return "debug"


_LEVELS = (
    (logging.CRITICAL, "critical"),
    (logging.ERROR, "error"),
    (logging.WARNING, "warning"),
    (logging.INFO, "info"),
)


@contextlib.contextmanager
def _stop_on_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM end the session (signal handlers belong to the main thread)."""
    handled = []
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # (not on Windows)
                loop.add_signal_handler(signum, stop)
                handled.append(signum)
    try:
        yield
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
