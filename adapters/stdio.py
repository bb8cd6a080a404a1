"""A line application on this process's stdin and stdout, on asyncio (``diaproto mcp --stdio``).

Thin I/O around a :class:`LineApplication` (the MCP service's stdio session): a thread reads
stdin and hands each chunk to the loop, waiting until the loop took it, so input is read no
faster than it is handled; the loop (with the adapters' runtime: timers, worker threads for
the model) runs the application, which writes each message as one line. stdout is the
protocol's alone: :func:`reserve_stdout` points the process's file descriptor 1 at stderr
before anything else runs, so a stray ``print`` cannot corrupt the stream. End of stdin (the
client's way to stop its server), a closed stdout, SIGINT or SIGTERM end the session.

A write blocks the loop until the client takes the line: there is one client, so a client
that stops reading holds back only its own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import BinaryIO, Protocol

from diaproto.adapters.asyncio import AsyncioRuntime
from diaproto.runtime import Runtime

log = logging.getLogger("diaproto.stdio")

READ_SIZE = 64 * 1024  # bytes read from stdin at a time (the loop holds at most one chunk)


class LineApplication(Protocol):
    """What runs on the lines: input as it comes, its end, and the session's end."""

    def receive_data(self, data: bytes) -> None: ...
    def receive_eof(self) -> None: ...
    def close(self) -> None: ...


#: Post a call to the loop from any thread, never blocking (a log record's forwarding).
Post = Callable[[Callable[[], None]], None]
#: Makes the application: the runtime, how to write one line, and how to post to the loop.
OpenApplication = Callable[[Runtime, Callable[[str], None], Post], LineApplication]


def reserve_stdout(stdout: int = 1, stderr: int = 2) -> BinaryIO:
    """The protocol's own handle on stdout; file descriptor ``stdout`` (and ``sys.stdout``)
    then lead to ``stderr``, so that nothing else can write to the client."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(stdout), "wb")
    os.dup2(stderr, stdout)
    sys.stdout = sys.stderr
    return protocol


def run_lines(open_application: OpenApplication, stdin: int, stdout: BinaryIO) -> None:
    """Serve until the session ends (see :func:`serve_lines`); then close ``stdout``."""
    try:
        asyncio.run(serve_lines(open_application, stdin, stdout))
    finally:
        with contextlib.suppress(OSError):  # a client gone: what it did not take is lost
            stdout.close()


async def serve_lines(open_application: OpenApplication, stdin: int, stdout: BinaryIO) -> None:
    """Serve one client on file descriptors ``stdin`` and ``stdout`` until either ends (or
    SIGINT / SIGTERM, in the main thread); then close the application and join its workers."""
    loop = asyncio.get_running_loop()
    runtime = AsyncioRuntime(loop)
    ended = asyncio.Event()
    writer = LineWriter(stdout, on_broken=ended.set)

    def post(call: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(call)

    application = open_application(runtime, writer.write, post)
    reader = threading.Thread(
        target=read_input,
        args=(stdin, runtime, application, ended.set),
        name="diaproto-stdin",
        daemon=True,  # a read blocked on a stdin that never ends must not hold the exit
    )
    reader.start()
    try:
        with _stop_on_signals(loop, ended.set):
            await ended.wait()
    finally:
        application.close()
        runtime.close()
        await asyncio.to_thread(runtime.workers.join)  # off the loop their calls wait on


def read_input(
    stdin: int, runtime: AsyncioRuntime, application: LineApplication, end: Callable[[], None]
) -> None:
    """The reader thread: each chunk to the loop, then the end of input; then ``end``."""
    try:
        while chunk := os.read(stdin, READ_SIZE):
            # Returns once the loop handled it: a fast writer cannot fill our memory.
            runtime.call_soon_threadsafe(partial(application.receive_data, chunk))
        runtime.call_soon_threadsafe(application.receive_eof)
    except OSError as exc:
        log.warning("stdio: reading stdin failed: %s", exc)
    except Exception:
        if runtime.closed:
            return  # the loop ended first (a signal, a closed stdout): nothing to tell it
        log.exception("stdio: handling the input failed")
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
            log.info("stdio: stdout closed (%s)", exc)
            self._on_broken()


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
