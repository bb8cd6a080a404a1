"""A server on a thread of its own, the same for every adapter: the
:class:`diaproto.runtime.ServerHandle` that ``start_in_thread`` returns, and the wait for a
callback posted to a loop from another thread.

Each adapter supplies only what is specific to its runtime: how to run a function on its loop
(``call``) and, where it differs from ``call(server.stop)``, how to ask the server to stop.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
S = TypeVar("S", bound="Stoppable")
A = TypeVar("A", bound="AsyncServer")

STARTUP_TIMEOUT = 10.0
LOOP_GONE_POLL = 0.1  # how often a waiting thread checks that the loop still runs


class Stoppable(Protocol):
    def stop(self) -> None: ...


class LoopCall(Protocol):
    """Run ``function`` on the server's loop thread and return its result (or raise)."""

    def __call__(self, function: Callable[[], T], /) -> T: ...


class CallsOnLoop(Protocol):
    def call(self, function: Callable[[], T], /) -> T: ...


class AsyncServer(Stoppable, Protocol):
    """A server that serves in a coroutine until ``stop()`` (the asyncio and tornado ones)."""

    @property
    def runtime(self) -> CallsOnLoop: ...

    async def serve(
        self, host: str, port: int, ready: Callable[[str, int], None] | None = None
    ) -> None: ...


#: Runs a coroutine to its end on a new event loop (``asyncio.run``, or on uvloop).
RunLoop = Callable[[Coroutine[Any, Any, None]], None]


class ThreadedServer(Generic[S]):
    """A :class:`diaproto.runtime.ServerHandle` for a server on its own thread and loop."""

    def __init__(
        self,
        server: S,
        port: int,
        thread: threading.Thread,
        call: LoopCall,
        request_stop: Callable[[], None] | None = None,
    ) -> None:
        self.server = server
        self._port = port
        self.thread = thread
        self._call = call
        self._request_stop = request_stop

    @property
    def port(self) -> int:
        return self._port

    def call(self, function: Callable[[], T]) -> T:
        return self._call(function)

    def stop(self, timeout: float = 15.0) -> bool:
        if self.thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already ended
                if self._request_stop is not None:
                    self._request_stop()
                else:
                    self.call(self.server.stop)
        self.thread.join(timeout)
        return not self.thread.is_alive()


#: Called on the loop thread once the server listens: the server, its port, its ``call``.
Listening = Callable[[S, int, LoopCall], None]


def start_loop_thread(name: str, main: Callable[[Listening[S]], None]) -> ThreadedServer[S]:
    """Run ``main(listening)`` on a new daemon thread; it runs the loop and calls
    ``listening`` once the server listens. Returns the handle then, or raises RuntimeError if
    the loop failed or did not listen within ``STARTUP_TIMEOUT``."""
    started = threading.Event()
    box: list[ThreadedServer[S]] = []
    failure: list[BaseException] = []

    def listening(server: S, port: int, call: LoopCall) -> None:
        box.append(ThreadedServer(server, port, thread, call))
        started.set()

    def target() -> None:
        try:
            main(listening)
        except BaseException as exc:  # reported to the caller of start_in_thread
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    if not started.wait(STARTUP_TIMEOUT) or failure or not box:
        raise RuntimeError(f"the server did not start: {failure or 'timed out'}")
    return box[0]


def start_serving_thread(
    name: str, make: Callable[[], A], host: str, port: int, run: RunLoop
) -> ThreadedServer[A]:
    """``make()`` a server on a new loop on a new thread and serve until it stops; returns
    once it listens (raises if it cannot start)."""

    async def serve(listening: Listening[A]) -> None:
        server = make()  # on the running loop: its runtime binds to that loop

        def ready(_host: str, bound: int) -> None:
            listening(server, bound, server.runtime.call)

        await server.serve(host, port, ready)

    def main(listening: Listening[A]) -> None:
        run(serve(listening))

    return start_loop_thread(name, main)


def wait_on_loop(
    post: Callable[[Callable[[], None]], None],
    loop_ended: Callable[[], bool],
    function: Callable[[], T],
) -> T:
    """Run ``function`` on a loop from another thread: ``post`` hands the loop a callback
    (which it may drop silently once closed). Returns only once the loop ran it, with its
    result or exception; raises RuntimeError if the loop ends first."""
    done = threading.Event()
    box: list[Any] = []

    def call() -> None:
        try:
            box.append((True, function()))
        except BaseException as exc:  # re-raised in the calling thread
            box.append((False, exc))
        finally:
            done.set()

    if loop_ended():
        raise RuntimeError("the server's loop has ended")
    post(call)
    while not done.wait(LOOP_GONE_POLL):
        if loop_ended():
            raise RuntimeError("the server's loop has ended")
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]
