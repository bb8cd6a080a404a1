"""The worker threads of one server, the same policy on every runtime.

Blocking work (a model generating audio) runs on threads, never on the loop. The policy:

- bounded: at most :data:`WORKER_THREADS` run at once; a worker started past the bound waits
  in order for a running one to return, on that one's thread;
- tracked: the server knows every thread it started;
- refused after shutdown: ``start`` then raises :class:`RuntimeError` (as
  ``ThreadPoolExecutor.submit`` does), and workers still waiting are dropped;
- joined at stop: ``join`` waits up to :data:`WORKER_JOIN` seconds for the running ones.

Daemon threads: a model call that never returns must not hold the process open at exit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("diaproto.adapters")

WORKER_THREADS = 256
WORKER_JOIN = 2.0  # seconds a stopping server waits for its workers to return

Target = Callable[[], None]


class WorkerThreads:
    """Starts, bounds, refuses and joins the worker threads of one server."""

    def __init__(self, limit: int = WORKER_THREADS) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._running: set[threading.Thread] = set()
        self._waiting: deque[tuple[Target, str]] = deque()
        self._closed = False

    def start(self, target: Target, name: str = "worker") -> None:
        """Run ``target`` on a worker thread, now or once one of the running ones returns."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the server has stopped: no new worker starts")
            if len(self._running) >= self._limit:
                self._waiting.append((target, name))
                return
            thread = threading.Thread(
                target=self._work, args=(target, name), name=f"diaproto-{name}", daemon=True
            )
            self._running.add(thread)
        thread.start()

    def _work(self, target: Target, name: str) -> None:
        while True:
            try:
                target()
            except Exception:
                log.exception("worker %s failed", name)
            with self._lock:
                if self._closed or not self._waiting:
                    self._running.discard(threading.current_thread())
                    return
                target, name = self._waiting.popleft()  # this thread takes the next one
            threading.current_thread().name = f"diaproto-{name}"

    def close(self) -> None:
        """No new worker from now on; the waiting ones never start."""
        with self._lock:
            self._closed = True
            self._waiting.clear()

    def join(self, timeout: float = WORKER_JOIN) -> None:
        """Close, then wait up to ``timeout`` seconds in all for the running workers."""
        self.close()
        with self._lock:
            threads = list(self._running)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
            if thread.is_alive():
                log.warning("worker %s still running after shutdown", thread.name)
