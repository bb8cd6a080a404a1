"""The byte budget of one connection's outbound messages, and when a producer must wait.

One :class:`Budget` per scheduler counts the bytes queued and the bytes handed to the
transport and not yet written (in flight), and judges each stream against them (in charged
bytes: see *What is counted*, below):

- **Hard budget**: queued (charged) + in flight never pass ``max_buffered``. A message
  that would pass it is refused (PAUSE: an error, since a lossless stream can neither drop
  nor grow) or dropped (the lossy policies).
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

**What is counted.** Every queued message is charged its ``size`` plus the scheduler's
per-message overhead (:data:`MESSAGE_OVERHEAD` by default): what holding it costs beyond
its payload bytes. A stream's share, the watermarks and the hard budget all compare charged
bytes, so a stream of tiny messages cannot hold much more memory than its share says.
Bytes in flight are counted as the transport reports them (after framing), against the
connection only, not against the share of the stream they came from: the transport reports
one total for the connection, and the write window bounds it (see below).

**The bound, per connection.** At every enqueue, charged queued bytes + bytes in flight
<= ``max_buffered``. Outside it:

- taking a message moves it from the queue to in flight, where it counts with its framing
  instead of the overhead (a frame header is smaller than :data:`MESSAGE_OVERHEAD`, except
  for an SSE event of many lines);
- :meth:`~diaproto.scheduler.Scheduler.resume` queues again what the replay buffer holds,
  whatever the budget says (the payloads are shared with the buffer: no new copy);
- each replay buffer: its payloads, shared with the queue while queued, stay after they are
  sent, bounded by the buffer (at most ``max_bytes`` of payload and ``max_messages``
  entries of :data:`~diaproto.replay.ENTRY_OVERHEAD` bytes each);
- the stream records themselves (a few hundred bytes per open stream).

In flight, the write window holds the scheduler back: it releases a batch only while in
flight is under ``write_window``, and a batch passes the room left by less than one message
(CONTROL messages pass it). So behind a stalled reader a DROP_OLDEST or LATEST stream
holds at most its share queued, and the connection about ``write_window`` in flight on top
of its streams' queues, all of it within ``max_buffered``.

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

MESSAGE_OVERHEAD = 168
"""Bytes charged for each queued message on top of its size, for ``bytes`` and ``str``
payloads: what it costs to hold beyond its payload bytes (64-bit CPython 3.11, measured with
tracemalloc in ``tests/core/scheduler/test_overhead.py``):

- its :class:`~diaproto.scheduler.Outgoing` record, 72 (five slots and the GC header);
- its sequence number, 32 (a 28-byte int in a 32-byte block; the first 256 are shared);
- its slot in the stream's deque, 8 (and 1/64 of a 528-byte block);
- its payload's object header, 49 for an ASCII ``str`` (33 for ``bytes``), plus up to 7 of
  rounding of the payload's block.

A ``bytes`` message costs about 145, an ASCII ``str`` one about 161. A non-ASCII ``str``
costs more (its size counts code points; the payload is 1 to 4 bytes each).
"""

RESUME_FRACTION = Fraction(1, 4)
"""A paused stream resumes once its queue is at most this part of its share."""


def resume_point(limit: int) -> int:
    """The queued bytes at or below which a paused stream with share ``limit`` resumes."""
    return math.floor(limit * RESUME_FRACTION)


class Budget:
    """Bytes queued and in flight on one connection, against the watermarks of ``config``;
    each queued message is charged ``overhead`` bytes more than its size."""

    __slots__ = ("config", "in_flight", "messages", "overhead", "queued")

    def __init__(self, config: SchedulerConfig, overhead: int = MESSAGE_OVERHEAD) -> None:
        if overhead < 0:
            raise LocalProtocolError("the per-message overhead cannot be negative")
        self.config = config
        self.overhead = overhead
        self.queued = 0  # payload bytes in the scheduler's queues
        self.messages = 0  # messages in them
        self.in_flight = 0  # taken from them, not yet written by the transport

    @property
    def buffered(self) -> int:
        """Payload bytes queued, plus in flight."""
        return self.queued + self.in_flight

    @property
    def charged_queue(self) -> int:
        """The queued messages, each with its overhead."""
        return self.queued + self.messages * self.overhead

    @property
    def charged(self) -> int:
        """What the hard budget and the watermarks count: the charged queue plus in flight."""
        return self.charged_queue + self.in_flight

    def charge(self, stream: StreamRecord[Any]) -> int:
        """What the stream's queue counts against its share: its messages, each with its
        overhead."""
        return stream.queued_bytes + len(stream.queue) * self.overhead

    def room(self) -> int:
        """Bytes that may still be charged under the hard budget (a message takes its size
        plus the overhead)."""
        return self.config.max_buffered - self.charged

    def set_in_flight(self, nbytes: int) -> None:
        if nbytes < 0:
            raise LocalProtocolError("in-flight bytes cannot be negative")
        self.in_flight = nbytes

    def is_over(self, stream: StreamRecord[Any]) -> bool:
        """Over its share; for a PAUSE stream also while the connection is over the high mark."""
        if self.charge(stream) > stream.limit:
            return True
        return stream.policy is Policy.PAUSE and self.charged > self.config.high_watermark

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
                self.charge(stream) <= stream.resume_at
                and self.charged <= self.config.low_watermark
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
