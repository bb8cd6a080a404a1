"""Fair shares: which queued messages leave in the next batch, and when the low classes wait.

One :class:`Fairness` per scheduler keeps a ring of the streams with something to send, one
ring per priority class, and builds each batch by these rules:

- **Strict priority** between classes: a class is served only once every class above it is
  empty or out of room. CONTROL is never held back, not by the window, the batch cap or
  linger.
- **Deficit round-robin** (by bytes) between the streams of a class: each turn adds a
  ``quantum`` to the stream's deficit, and it sends messages while the next one fits in
  the deficit. What is left carries to its next turn, so a stream of large messages gets
  the same bytes over time as a stream of small ones. A turn cut short by the batch or
  the window keeps its place and its deficit.
- **Room**: a batch carries at most ``batch_bytes``, and no more than the ``write_window``
  left after the bytes in flight.
- **Linger**: the lingering classes (STREAM, BACKGROUND) wait for company up to ``linger``
  seconds after the last batch, but only under load: the first message after a quiet
  ``linger`` leaves at once, and so does a full batch's worth.
- **Credit**: a credit-based stream sends only while its credit is positive; it leaves the
  ring when it runs out and comes back when credit is granted. A paced stream's allowance
  (the clock's credit) is the same rule, given back by the scheduler's refill.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from diaproto.config import SchedulerConfig
from diaproto.scheduler._types import LINGERING_CLASSES, Outgoing, Priority, StreamRecord

T = TypeVar("T")


class Fairness(Generic[T]):
    """The rings of one scheduler; ``on_drained`` is told of a finishing stream whose last
    message has just been taken."""

    __slots__ = ("_last_take", "_on_drained", "_rings", "config", "queued_low")

    def __init__(
        self, config: SchedulerConfig, on_drained: Callable[[StreamRecord[T]], None]
    ) -> None:
        self.config = config
        self._on_drained = on_drained
        # A deque costs ~760 B even when empty: a ring is made on first use, so an idle
        # connection holds none.
        self._rings: list[deque[StreamRecord[T]] | None] = [None] * len(Priority)
        self._last_take: float | None = None
        self.queued_low = 0  # bytes queued in the lingering classes

    def activate(self, stream: StreamRecord[T]) -> None:
        """Give the stream a place in its ring if it has something it may send."""
        if not stream.active and stream.eligible():
            stream.active = True
            self._ring(stream.priority).append(stream)

    def remove(self, stream: StreamRecord[T]) -> None:
        """Take a closed stream out of its ring."""
        if stream.active:
            self._ring(stream.priority).remove(stream)
            stream.active = False

    def take(self, now: float, window: int) -> tuple[list[Outgoing[T]], int]:
        """The batch due now, highest class first, and its bytes; ``window`` is what the
        transport may still be given."""
        batch: list[Outgoing[T]] = []
        budget = self.config.batch_bytes
        total = 0
        for priority, ring in enumerate(self._rings):
            if not ring:
                continue
            if priority == Priority.CONTROL:
                total += self._drain_ring(ring, batch, None, now)
                continue
            if window <= 0 or budget <= 0:
                break
            if priority >= Priority.STREAM and not batch and not self.lingering_due(now):
                break
            used = self._drain_ring(ring, batch, min(window, budget), now)
            window -= used
            budget -= used
            total += used
        if batch:
            self._last_take = now
        return batch, total

    def linger_deadline(self) -> float | None:
        """When the lingering classes' wait for company ends (None: nothing waits)."""
        if self._last_take is None:
            return None
        for priority in LINGERING_CLASSES:
            if any(stream.eligible() for stream in self._rings[priority] or ()):
                return self._last_take + self.config.linger
        return None

    def lingering_due(self, now: float, coming: int = 0) -> bool:
        """Whether the lingering classes may leave now, with ``coming`` bytes more queued."""
        return (
            self._last_take is None
            or now >= self._last_take + self.config.linger
            or self.queued_low + coming >= self.config.batch_bytes
        )

    def took(self, now: float) -> None:
        """A batch left outside :meth:`take` (a message the scheduler let through): linger
        counts from it."""
        self._last_take = now

    def _ring(self, priority: Priority) -> deque[StreamRecord[T]]:
        ring = self._rings[priority]
        if ring is None:
            ring = self._rings[priority] = deque()
        return ring

    def _drain_ring(
        self,
        ring: deque[StreamRecord[T]],
        batch: list[Outgoing[T]],
        room: int | None,
        now: float,
    ) -> int:
        """Deficit round-robin over one class, up to ``room`` bytes; returns the bytes taken."""
        used = 0
        stop = sys.maxsize if room is None else room
        quantum = self.config.quantum
        while ring and used < stop:
            stream = ring[0]
            if stream.needs_quantum:
                stream.deficit += quantum
                stream.needs_quantum = False
            taken, out_of_room = self._turn(stream, batch, stop - used, now)
            used += taken
            if out_of_room:
                break  # mid-turn: the stream keeps its place and its deficit
            ring.popleft()
            stream.needs_quantum = True
            if stream.eligible():
                ring.append(stream)  # its turn is over; the deficit carries to the next
            else:
                stream.active = False
                stream.deficit = 0
                if stream.finishing and not stream.queue:
                    self._on_drained(stream)
        return used

    def _turn(
        self, stream: StreamRecord[T], batch: list[Outgoing[T]], room: int, now: float
    ) -> tuple[int, bool]:
        """One stream's turn: its messages that fit its deficit and credit, while ``room``
        lasts. Returns the bytes taken and whether the room ran out before the turn ended.

        The bytes and metrics are accounted once for the turn, not per message."""
        queue = stream.queue
        deficit = stream.deficit
        credit = stream.credit
        allowance = stream.allowance
        taken = 0
        count = 0
        out_of_room = False
        while queue:
            item = queue[0]
            size = item.size
            if size > deficit:
                break
            if taken >= room:
                out_of_room = True
                break
            if (credit is not None and credit <= 0) or (allowance is not None and allowance <= 0):
                break
            if credit is not None:
                credit -= size
            if allowance is not None:
                allowance -= size
            queue.popleft()
            if item.key is not None and stream.latest.get(item.key) is item:
                del stream.latest[item.key]
            deficit -= size
            taken += size
            count += 1
            batch.append(item)
        stream.deficit = deficit
        stream.credit = credit
        stream.allowance = allowance
        if count:
            stream.queued_bytes -= taken
            if stream.lingering:
                self.queued_low -= taken
            stream.metrics.record_sends(now, count, taken)
        return taken, out_of_room
