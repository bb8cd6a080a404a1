"""The ``call_later`` timers of one loop in one heap, for the adapters whose runtime has no
timer of its own to lend (sockets: a selector loop; anyio: a task group).

A cancelled timer stays in the heap until it is due, or until cancelled ones are most of it
(more than :data:`SWEEP_AT`): then they are swept out, so a deadline moved at every write
does not grow the heap without bound. A callback that raises is logged, as asyncio's loop
does, and the other timers still fire.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable

log = logging.getLogger("diaproto.adapters")

SWEEP_AT = 256
"""Cancelled timers the heap keeps before it sweeps them out (when they are over half)."""


class Timer:
    """One ``call_later``; ``cancel()`` before it fires and it never does."""

    __slots__ = ("callback", "done", "heap")

    def __init__(self, heap: TimerHeap, callback: Callable[[], None]) -> None:
        self.heap = heap
        self.callback = callback
        self.done = False  # fired or cancelled

    def cancel(self) -> None:
        if not self.done:
            self.done = True
            self.heap.cancelled += 1


class TimerHeap:
    """Timers by deadline (ties in the order they were armed)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self.cancelled = 0  # cancelled timers still in the heap

    def push(self, deadline: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(self, callback)
        heapq.heappush(self._heap, (deadline, next(self._order), timer))
        if self.cancelled > SWEEP_AT and self.cancelled * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if not entry[2].done]
            heapq.heapify(self._heap)
            self.cancelled = 0
        return timer

    def first(self) -> Timer | None:
        """The timer that fires next (None: none is armed)."""
        self._drop_cancelled()
        return self._heap[0][2] if self._heap else None

    def next_deadline(self) -> float | None:
        """When the next timer is due (None: none is armed)."""
        self._drop_cancelled()
        return self._heap[0][0] if self._heap else None

    def run_due(self, now: Callable[[], float]) -> None:
        """Fire every timer due by ``now()``, asked again after each (a callback takes
        time, and may arm timers of its own)."""
        while (deadline := self.next_deadline()) is not None and deadline <= now():
            timer = heapq.heappop(self._heap)[2]
            timer.done = True
            try:
                timer.callback()
            except Exception:
                log.exception("a call_later callback failed: %r", timer.callback)

    def _drop_cancelled(self) -> None:
        while self._heap and self._heap[0][2].done:
            heapq.heappop(self._heap)
            self.cancelled = max(self.cancelled - 1, 0)
