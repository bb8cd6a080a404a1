"""The :class:`diaproto.runtime.Runtime` an application gets, written once: the core's clock,
calls onto the loop thread (from a worker, returning once the loop ran them), timers, and the
worker policy of :mod:`diaproto.adapters._workers`.

An adapter supplies how to schedule a callback from the loop thread (``soon``), how to run a
function on the loop from another thread (``_from_thread``) and ``call_later``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from diaproto.adapters._pump import now
from diaproto.adapters._workers import WorkerThreads
from diaproto.runtime import Application, Cancellable, Runtime

T = TypeVar("T")


def tell_started(app: Application, runtime: Runtime) -> None:
    """Loop thread, once the server listens: hand the application its runtime, if it asks
    for it (``started``), for work that is not a connection's (a job queue's)."""
    started = getattr(app, "started", None)
    if callable(started):
        started(runtime)


class LoopRuntime:
    """The runtime of one server whose loop runs on one thread."""

    def __init__(self) -> None:
        self.loop_thread: int | None = threading.get_ident()
        self.closed = False  # the loop is done: calls onto it raise, no worker starts
        self.workers = WorkerThreads()

    def now(self) -> float:
        return now()

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        if threading.get_ident() == self.loop_thread:
            self.soon(callback)
        else:
            # Blocks the worker until the loop ran it: a producer can never outrun the loop.
            self.run_on_loop(callback)

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the loop thread (from any thread); its result or exception."""
        if threading.get_ident() == self.loop_thread:
            return function()
        return self.run_on_loop(function)

    def run_on_loop(self, function: Callable[[], T]) -> T:
        """From another thread: ``function``'s result once the loop ran it; RuntimeError if
        the loop has ended."""
        if self.closed:
            raise RuntimeError("the server's loop has ended")
        return self._from_thread(function)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        raise NotImplementedError

    def start_worker(self, target: Callable[[], None], name: str = "worker") -> None:
        self.workers.start(target, name)

    def close(self) -> None:
        """The loop is done: workers still blocked on it see RuntimeError; no new ones start.
        (Then ``workers.join()``, off the loop where it still runs.)"""
        self.closed = True
        self.workers.close()

    def soon(self, callback: Callable[[], None]) -> None:
        """Loop thread: run ``callback`` on the loop soon."""
        raise NotImplementedError

    def _from_thread(self, function: Callable[[], T]) -> T:
        raise NotImplementedError
