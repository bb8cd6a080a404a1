"""Per-stream counters. Plain numbers in the core; applications export them."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class StreamMetrics:
    """What one stream did. Times are the caller's clock (monotonic seconds)."""

    opened_at: float
    first_send_at: float | None = None
    last_send_at: float | None = None
    messages_sent: int = 0
    bytes_sent: int = 0
    drops: int = 0
    coalesced: int = 0
    queue_high_water: int = 0
    intervals: int = 0
    interval_sum: float = 0.0
    interval_sq_sum: float = 0.0
    interval_max: float = 0.0

    @property
    def time_to_first_byte(self) -> float | None:
        """Seconds from opening the stream to its first message leaving the scheduler."""
        return None if self.first_send_at is None else self.first_send_at - self.opened_at

    @property
    def interval_mean(self) -> float | None:
        return self.interval_sum / self.intervals if self.intervals else None

    @property
    def jitter(self) -> float | None:
        """Standard deviation of the gaps between sends (seconds)."""
        if self.intervals < 2:
            return None
        mean = self.interval_sum / self.intervals
        variance = max(self.interval_sq_sum / self.intervals - mean * mean, 0.0)
        return math.sqrt(variance)

    def record_send(self, now: float, size: int) -> float | None:
        """Count one message sent; return the gap since the previous send, if any."""
        return self.record_sends(now, 1, size)

    def record_sends(self, now: float, count: int, nbytes: int) -> float | None:
        """Count ``count`` messages (``nbytes`` in all) that left together at ``now``.

        The figures are exactly those of ``count`` calls of :meth:`record_send` at ``now``:
        every message is one interval, and the messages after the first in a batch follow
        their predecessor by a gap of zero (which adds nothing to the sums or the maximum),
        so the scheduler can account a whole batch in one call. Returns the gap before the
        first of them, if there was a previous send.
        """
        gap: float | None = None
        if self.first_send_at is None:
            self.first_send_at = now
        if self.last_send_at is None:
            self.intervals += count - 1
        else:
            gap = now - self.last_send_at
            self.intervals += count
            self.interval_sum += gap
            self.interval_sq_sum += gap * gap
            self.interval_max = max(self.interval_max, gap)
        self.last_send_at = now
        self.messages_sent += count
        self.bytes_sent += nbytes
        return gap

    def record_queue_depth(self, queued_bytes: int) -> None:
        self.queue_high_water = max(self.queue_high_water, queued_bytes)
