"""The byte budget of one connection's outbound messages, and when a producer must wait.

One :class:`Budget` per scheduler counts the bytes queued and the bytes handed to the
transport and not yet written (in flight), and judges each stream against them:

- **Hard budget**: queued + in flight never pass ``max_buffered``. A message that would pass
  it is refused (PAUSE: an error, since a lossless stream can neither drop nor grow) or
  dropped (the lossy policies).
- **Pause**: a PAUSE stream is paused when its own queue is over its share (``limit``) or
  the connection is over ``high_watermark``.
- **Resume**: a paused stream goes on once the connection is at or below ``low_watermark``
  and its own queue at or below :data:`RESUME_FRACTION` of its share. Resuming only well
  below the marks leaves room for a burst, so a producer is not paused and resumed for
  every message.
- **Grace**: a DISCONNECT stream answers for its own share only (within it, it is keeping
  up, whatever the other streams hold). Its grace clock runs while its queue is over its
  share and stops when it is back within; when ``grace`` seconds have run out it is
  declared too slow, once.

The per-stream state (``paused``, ``over_since``, ``slow_reported``) lives on the
:class:`~diaproto.scheduler._types.StreamRecord`; the methods here change it and say what
changed, and the scheduler reports it as events.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from diaproto.config import SchedulerConfig
from diaproto.errors import LocalProtocolError
from diaproto.scheduler._types import Policy, StreamRecord

RESUME_FRACTION = Fraction(1, 4)
"""A paused stream resumes once its queue is at most this part of its share."""


def resume_point(limit: int) -> int:
    """The queued bytes at or below which a paused stream with share ``limit`` resumes."""
    return math.floor(limit * RESUME_FRACTION)


class Budget:
    """Bytes queued and in flight on one connection, against the watermarks of ``config``."""

    __slots__ = ("config", "in_flight", "queued")

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.queued = 0  # in the scheduler's queues
        self.in_flight = 0  # taken from them, not yet written by the transport

    @property
    def buffered(self) -> int:
        return self.queued + self.in_flight

    def room(self) -> int:
        """Bytes that may still be queued under the hard budget."""
        return self.config.max_buffered - self.queued - self.in_flight

    def set_in_flight(self, nbytes: int) -> None:
        if nbytes < 0:
            raise LocalProtocolError("in-flight bytes cannot be negative")
        self.in_flight = nbytes

    def is_over(self, stream: StreamRecord[Any]) -> bool:
        """Over its share; for a PAUSE stream also while the connection is over the high mark."""
        if stream.queued_bytes > stream.limit:
            return True
        return stream.policy is Policy.PAUSE and self.buffered > self.config.high_watermark

    def check(self, stream: StreamRecord[Any], now: float) -> bool:
        """Judge a stream after its queue grew; True when it has just been paused.

        Starts a DISCONNECT stream's grace clock when it is over its share (or stops it
        when it is back within: a resume may shrink a queue as well as grow it)."""
        if stream.policy is Policy.PAUSE:
            if stream.paused or not self.is_over(stream):
                return False
            stream.paused = True
            return True
        elif stream.policy is Policy.DISCONNECT:
            if not self.is_over(stream):
                stream.over_since = None
            elif stream.over_since is None:
                stream.over_since = now
        return False

    def release(self, stream: StreamRecord[Any]) -> bool:
        """Judge a stream after bytes left the budget; True when it has just been resumed.

        Also stops the grace clock of a DISCONNECT stream back within its share."""
        if stream.paused:
            if (
                stream.queued_bytes <= stream.resume_at
                and self.buffered <= self.config.low_watermark
            ):
                stream.paused = False
                return True
        elif stream.over_since is not None and not self.is_over(stream):
            stream.over_since = None
        return False

    @staticmethod
    def grace_deadline(streams: Iterable[StreamRecord[Any]]) -> float | None:
        """When the first running grace clock of ``streams`` runs out (None: none runs)."""
        return min(
            (
                stream.over_since + stream.options.grace
                for stream in streams
                if stream.over_since is not None and not stream.slow_reported
            ),
            default=None,
        )

    @staticmethod
    def out_of_grace(streams: Iterable[StreamRecord[Any]], now: float) -> list[StreamRecord[Any]]:
        """The streams of ``streams`` whose grace has run out by ``now``, not yet declared."""
        return [
            stream
            for stream in streams
            if stream.over_since is not None
            and not stream.slow_reported
            and now >= stream.over_since + stream.options.grace
        ]

    @staticmethod
    def declare_slow(stream: StreamRecord[Any]) -> bool:
        """Mark the stream too slow; True the first time only."""
        if stream.slow_reported:
            return False
        stream.slow_reported = True
        return True
