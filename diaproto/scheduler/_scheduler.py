"""The outbound scheduler: which queued message leaves next, how many together, and when.

It knows nothing of framing or sockets. Messages go in with :meth:`Scheduler.enqueue`; a
framing layer takes due batches with :meth:`Scheduler.take` and turns them into bytes.

- **Priority**: strict between classes; deficit round-robin (by bytes) between the streams of
  a class, so concurrent streams share the connection fairly.
- **Batching**: everything due leaves in one batch, up to ``batch_bytes``. The lower classes
  (STREAM, BACKGROUND) linger up to ``linger`` seconds for company, but only under load: on
  a connection that has not sent for ``linger`` seconds the first message leaves at once.
- **Window**: only ``write_window`` bytes are released to the transport at a time (CONTROL is
  exempt), so queued bulk stays here where a later control message can overtake it.
- **Budget**: queued + in-flight bytes never exceed ``max_buffered``; each stream's policy
  decides what happens when it is over its share. A PAUSE stream is also paused while the
  connection is over ``high_watermark``; a DISCONNECT stream is judged by its own share only
  (its grace clock runs while its queued bytes exceed its limit).
- **Credit**: a stream opened with credit sends only while its credit is positive.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Generic, TypeVar

from diaproto.config import SchedulerConfig
from diaproto.errors import LocalProtocolError
from diaproto.events import Event, SlowConsumer, StreamFinished, StreamPaused, StreamResumed
from diaproto.metrics import StreamMetrics
from diaproto.replay import ReplayBuffer

T = TypeVar("T")


class Priority(IntEnum):
    """Classes in strict order: a lower value always goes first."""

    CONTROL = 0  # handshakes, closes, errors, cancels, credit, pings, MCP responses
    INTERACTIVE = 1
    STREAM = 2  # audio, tokens
    BACKGROUND = 3  # logs, telemetry


LINGERING_CLASSES = (Priority.STREAM, Priority.BACKGROUND)


class Policy(Enum):
    """What a stream does when it is over its share of the budget."""

    PAUSE = "pause"  # lossless: the producer is told to stop, then to go on
    DROP_OLDEST = "drop_oldest"  # the oldest queued messages of the stream are dropped
    LATEST = "latest"  # one message per key: a newer one replaces the queued older one
    DISCONNECT = "disconnect"  # after a grace period the consumer is declared too slow


@dataclass(slots=True, eq=False)
class Outgoing(Generic[T]):
    """One queued message."""

    stream_id: int
    seq: int
    payload: T
    size: int
    key: Hashable | None = None


@dataclass(slots=True, eq=False)
class _Stream(Generic[T]):
    stream_id: int
    priority: Priority
    policy: Policy
    limit: int
    credit: int | None
    grace: float
    replay: ReplayBuffer[T] | None
    record: bool
    metrics: StreamMetrics
    next_seq: int
    lingering: bool  # in a class that lingers for company (priority in LINGERING_CLASSES)
    queue: deque[Outgoing[T]] = field(default_factory=deque)
    queued_bytes: int = 0
    latest: dict[Hashable, Outgoing[T]] = field(default_factory=dict)
    deficit: int = 0
    needs_quantum: bool = True
    active: bool = False
    paused: bool = False
    over_since: float | None = None
    slow_reported: bool = False
    finishing: bool = False

    def eligible(self) -> bool:
        return bool(self.queue) and (self.credit is None or self.credit > 0)


class Scheduler(Generic[T]):
    """Priority, fairness, batching and backpressure for one connection's outbound messages."""

    __slots__ = (
        "_events",
        "_in_flight",
        "_last_take",
        "_queued",
        "_queued_low",
        "_rings",
        "_streams",
        "config",
    )

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        self._streams: dict[int, _Stream[T]] = {}
        # A deque costs ~760 B even when empty: the rings and the event queue are made on
        # first use, so an idle connection holds none.
        self._rings: list[deque[_Stream[T]] | None] = [None] * len(Priority)
        self._events: deque[Event] | None = None
        self._queued = 0
        self._queued_low = 0  # bytes queued in the lingering classes
        self._in_flight = 0
        self._last_take: float | None = None

    # --- streams ---------------------------------------------------------------------------

    def open_stream(
        self,
        stream_id: int,
        now: float,
        *,
        priority: Priority = Priority.STREAM,
        policy: Policy = Policy.PAUSE,
        limit: int | None = None,
        credit: int | None = None,
        grace: float = 5.0,
        replay: ReplayBuffer[T] | None = None,
        record: bool = True,
    ) -> None:
        """Register a stream. ``limit`` is its share in queued bytes (default: high watermark,
        which a config may set to 0: then the stream is over its share with anything queued).

        With ``replay``, sequence numbers continue after the buffer's last one and every
        message is recorded in it. ``record=False`` shares a buffer that its owner fills (one
        generation fanned out to several listeners): the stream numbers its messages from the
        buffer and resumes from it, but appends nothing, so the owner must append each message
        before sending it to the listeners.
        """
        if stream_id in self._streams:
            raise LocalProtocolError(f"stream {stream_id} is already open")
        if limit is not None and limit <= 0:
            raise LocalProtocolError("a stream's limit must be positive")
        share = self.config.high_watermark if limit is None else limit
        self._streams[stream_id] = _Stream(
            stream_id=stream_id,
            priority=Priority(priority),
            policy=policy,
            limit=share,
            credit=credit,
            grace=grace,
            replay=replay,
            record=record,
            metrics=StreamMetrics(opened_at=now),
            next_seq=(replay.last_seq + 1) if replay is not None else 1,
            lingering=priority in LINGERING_CLASSES,
        )

    def has_stream(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def finish_stream(self, stream_id: int) -> None:
        """No more messages will come; forget the stream once its queue has drained."""
        stream = self._get(stream_id)
        stream.finishing = True
        if not stream.queue:
            self._forget(stream)

    def discard_stream(self, stream_id: int) -> int:
        """Drop the stream and everything it still has queued (cancel). Returns bytes dropped."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return 0
        dropped = stream.queued_bytes
        stream.metrics.drops += len(stream.queue)
        while stream.queue:
            self._unqueue(stream, stream.queue.pop())
        self._forget(stream)
        self._update_pauses()
        return dropped

    def queued_items(self) -> list[Outgoing[T]]:
        """Everything still queued, in the order it would leave: highest class first, each
        stream's messages in order (a snapshot; nothing is removed)."""
        streams = sorted(self._streams.values(), key=lambda stream: stream.priority)
        return [item for stream in streams for item in stream.queue]

    def withdraw(self, stream_id: int, key: Hashable) -> bool:
        """Take back the queued message of ``key`` on a LATEST stream (it became moot: a
        progress report for a request that has just been answered). True if one was queued."""
        stream = self._get(stream_id)
        item = stream.latest.get(key)
        if item is None:
            return False
        stream.queue.remove(item)
        self._unqueue(stream, item)
        stream.metrics.coalesced += 1
        self._update_pauses()
        return True

    def metrics(self, stream_id: int) -> StreamMetrics:
        return self._get(stream_id).metrics

    def is_paused(self, stream_id: int) -> bool:
        stream = self._streams.get(stream_id)  # (not _get: producers ask this per message)
        if stream is None:
            raise LocalProtocolError(f"no open stream {stream_id}")
        return stream.paused

    def queued_bytes(self, stream_id: int | None = None) -> int:
        return self._queued if stream_id is None else self._get(stream_id).queued_bytes

    def last_seq(self, stream_id: int) -> int:
        """The sequence number given to the stream's latest message (0: none yet)."""
        return self._get(stream_id).next_seq - 1

    def credit(self, stream_id: int) -> int | None:
        return self._get(stream_id).credit

    @property
    def stream_ids(self) -> list[int]:
        return list(self._streams)

    # --- budget ----------------------------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        """Queued here plus handed to the transport and not yet written."""
        return self._queued + self._in_flight

    def set_in_flight(self, nbytes: int) -> None:
        """Bytes released by :meth:`take` that the transport has not written yet."""
        if nbytes < 0:
            raise LocalProtocolError("in-flight bytes cannot be negative")
        self._in_flight = nbytes
        self._update_pauses()

    def grant_credit(self, stream_id: int, nbytes: int) -> None:
        """The consumer may take ``nbytes`` more of this stream (ignored if not credit-based)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.credit is None:
            return
        stream.credit += nbytes
        self._activate(stream)

    # --- enqueue ---------------------------------------------------------------------------

    def enqueue(
        self,
        stream_id: int,
        payload: T,
        size: int,
        now: float,
        *,
        key: Hashable | None = None,
    ) -> int | None:
        """Queue one message; return its sequence number, or ``None`` if the policy dropped it.

        A PAUSE stream that has been told to pause may still queue up to the hard budget
        (``max_buffered``); past it this raises :class:`LocalProtocolError`, since a lossless
        stream can neither drop nor grow without bound.
        """
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"no open stream {stream_id}")
        if stream.finishing:
            raise LocalProtocolError(f"stream {stream_id} is finished")
        if size < 0:
            raise LocalProtocolError("size cannot be negative")
        policy = stream.policy
        if policy is Policy.LATEST:
            if key is None:
                raise LocalProtocolError("a LATEST stream needs a key for every message")
            older = stream.latest.get(key)
            if older is not None:
                stream.queue.remove(older)
                self._unqueue(stream, older)
                stream.metrics.coalesced += 1
        elif policy is Policy.DROP_OLDEST:
            while stream.queue and stream.queued_bytes + size > stream.limit:
                self._drop_oldest(stream)

        config = self.config
        if size > config.max_buffered - self._queued - self._in_flight:
            if policy is Policy.PAUSE:
                raise LocalProtocolError(
                    f"stream {stream_id}: {size} bytes would pass the connection budget of "
                    f"{config.max_buffered}; the producer must wait for StreamResumed"
                )
            if policy is Policy.DISCONNECT:
                self._report_slow(stream)
                stream.metrics.drops += 1
                return None
            while stream.queue and size > config.max_buffered - self.buffered_bytes:
                self._drop_oldest(stream)
            if size > config.max_buffered - self.buffered_bytes:
                stream.metrics.drops += 1
                return None

        seq = stream.next_seq
        stream.next_seq = seq + 1
        if stream.replay is not None and stream.record:
            stream.replay.append(seq, payload, size)
        # _append, inline: this runs for every message.
        item = Outgoing(stream_id, seq, payload, size, key)
        stream.queue.append(item)
        queued = stream.queued_bytes = stream.queued_bytes + size
        self._queued += size
        if stream.lingering:
            self._queued_low += size
        if key is not None and policy is Policy.LATEST:
            stream.latest[key] = item
        metrics = stream.metrics
        metrics.queue_high_water = max(metrics.queue_high_water, queued)
        if not stream.active and (stream.credit is None or stream.credit > 0):
            stream.active = True
            self._ring(stream.priority).append(stream)
        if policy is Policy.PAUSE:
            # _check_over for the common case, inline: this runs for every message.
            if not stream.paused and (
                queued > stream.limit or self._queued + self._in_flight > config.high_watermark
            ):
                stream.paused = True
                self._emit(StreamPaused(stream_id))
        else:
            self._check_over(stream, now)
        return seq

    def enqueue_many(
        self, stream_id: int, payloads: Sequence[T], sizes: Sequence[int], now: float
    ) -> int | None:
        """:meth:`enqueue` of each payload in turn (no keys); returns the last one's result
        (``None`` also when ``payloads`` is empty).

        On a PAUSE stream with room for all of them under the hard budget, the stream is
        looked up, accounted and checked for pausing once for the whole list: the same
        queue, sequence numbers, metrics and events as one call per message.
        """
        if not payloads:
            return None
        stream = self._get(stream_id)
        total = sum(sizes)
        if (
            stream.policy is not Policy.PAUSE
            or stream.finishing
            or total > self.config.max_buffered - self._queued - self._in_flight
            or min(sizes) < 0
        ):
            seq: int | None = None
            for payload, size in zip(payloads, sizes, strict=True):
                seq = self.enqueue(stream_id, payload, size, now)
            return seq
        first = stream.next_seq
        record = stream.replay if stream.record else None
        queue = stream.queue
        for seq, (payload, size) in enumerate(zip(payloads, sizes, strict=True), first):
            if record is not None:
                record.append(seq, payload, size)
            queue.append(Outgoing(stream_id, seq, payload, size))
        stream.next_seq = first + len(payloads)
        queued = stream.queued_bytes = stream.queued_bytes + total
        self._queued += total
        if stream.lingering:
            self._queued_low += total
        stream.metrics.queue_high_water = max(stream.metrics.queue_high_water, queued)
        self._activate(stream)
        self._check_over(stream, now)
        return stream.next_seq - 1

    def resume(self, stream_id: int, after: int, now: float) -> int:
        """Queue again what the consumer missed after sequence ``after``, with the original
        sequence numbers; return how many. Raises :class:`~diaproto.errors.ReplayGap` when
        part of it has left the replay window, so nothing is lost silently (the queue is then
        left as it was).

        The stream's queue is replaced: what it still held is either at or before ``after``
        (the consumer has it) or among the replayed messages, so nothing is sent twice and
        sequence numbers keep increasing.

        Replayed payloads are shared with the replay buffer, so they may pass the budget:
        producers are paused until they drain.
        """
        stream = self._get(stream_id)
        if stream.replay is None:
            raise LocalProtocolError(f"stream {stream_id} was opened without a replay buffer")
        missed = stream.replay.since(after)
        while stream.queue:
            self._unqueue(stream, stream.queue.pop())
        for entry in missed:
            self._append(stream, Outgoing(stream_id, entry.seq, entry.payload, entry.size))
        # Judged on the result as a whole: a DISCONNECT stream over its share before and
        # after keeps its clock running.
        self._check_over(stream, now)
        if stream.finishing and not stream.queue:
            self._forget(stream)
        self._update_pauses()
        return len(missed)

    def _append(self, stream: _Stream[T], item: Outgoing[T]) -> None:
        """Queue a replayed message (enqueue has its own copy of this, with keys)."""
        size = item.size
        stream.queue.append(item)
        queued = stream.queued_bytes = stream.queued_bytes + size
        self._queued += size
        if stream.lingering:
            self._queued_low += size
        metrics = stream.metrics
        metrics.queue_high_water = max(metrics.queue_high_water, queued)
        if not stream.active and (stream.credit is None or stream.credit > 0):
            stream.active = True
            self._ring(stream.priority).append(stream)

    # --- take ------------------------------------------------------------------------------

    def take(self, now: float) -> list[Outgoing[T]]:
        """The batch due now, highest class first; empty when nothing is due."""
        batch: list[Outgoing[T]] = []
        budget = self.config.batch_bytes
        window = self.config.write_window - self._in_flight
        for priority, ring in enumerate(self._rings):
            if not ring:
                continue
            if priority == Priority.CONTROL:
                # Control is never held back: not by the window, the batch cap or linger.
                self._drain_ring(ring, batch, None, now)
                continue
            if window <= 0 or budget <= 0:
                break
            if priority >= Priority.STREAM and not batch and not self._lingering_due(now):
                break
            used = self._drain_ring(ring, batch, min(window, budget), now)
            window -= used
            budget -= used
        if batch:
            self._last_take = now
        # Even after an empty take: bytes may have been freed by coalescing or drops.
        self._update_pauses()
        return batch

    def _lingering_due(self, now: float) -> bool:
        return (
            self._last_take is None
            or now >= self._last_take + self.config.linger
            or self._queued_low >= self.config.batch_bytes
        )

    def _drain_ring(
        self, ring: deque[_Stream[T]], batch: list[Outgoing[T]], room: int | None, now: float
    ) -> int:
        """Deficit round-robin over one class; returns the bytes taken.

        Each turn's bytes and metrics are accounted once for the turn, not per message."""
        used = 0
        stop = sys.maxsize if room is None else room
        quantum = self.config.quantum
        while ring and used < stop:
            stream = ring[0]
            if stream.needs_quantum:
                stream.deficit += quantum
                stream.needs_quantum = False
            queue = stream.queue
            deficit = stream.deficit
            credit = stream.credit
            taken = 0
            count = 0
            out_of_room = False
            while queue:
                item = queue[0]
                size = item.size
                if size > deficit:
                    break
                if used >= stop:
                    out_of_room = True  # mid-turn: keep the turn and the deficit
                    break
                if credit is not None:
                    if credit <= 0:
                        break
                    credit -= size
                queue.popleft()
                if item.key is not None and stream.latest.get(item.key) is item:
                    del stream.latest[item.key]
                deficit -= size
                taken += size
                count += 1
                batch.append(item)
                used += size
            stream.deficit = deficit
            stream.credit = credit
            if count:
                stream.queued_bytes -= taken
                self._queued -= taken
                if stream.lingering:
                    self._queued_low -= taken
                stream.metrics.record_sends(now, count, taken)
            if out_of_room:
                return used
            ring.popleft()
            stream.needs_quantum = True
            if stream.eligible():
                ring.append(stream)  # its turn is over; the deficit carries to the next
            else:
                stream.active = False
                stream.deficit = 0
                if stream.finishing and not stream.queue:
                    self._forget(stream)
        return used

    # --- timers ----------------------------------------------------------------------------

    def next_deadline(self, *, linger: bool = True) -> float | None:
        """When :meth:`take` or :meth:`handle_timer` next has something to do by the clock.

        ``linger=False`` leaves out the linger deadline (for a caller that will not call
        :meth:`take` for now, so that deadline could only stay due)."""
        deadlines: list[float] = []
        if (
            linger
            and self._last_take is not None
            and self._in_flight < self.config.write_window
            and any(s.eligible() for p in LINGERING_CLASSES for s in self._rings[p] or ())
        ):
            deadlines.append(self._last_take + self.config.linger)
        for stream in self._streams.values():
            if stream.over_since is not None and not stream.slow_reported:
                deadlines.append(stream.over_since + stream.grace)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Declare DISCONNECT streams whose grace period has run out."""
        for stream in self._streams.values():
            if (
                stream.over_since is not None
                and not stream.slow_reported
                and now >= stream.over_since + stream.grace
            ):
                self._report_slow(stream)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # --- internals -------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if self._events is None:
            self._events = deque()
        self._events.append(event)

    def _ring(self, priority: Priority) -> deque[_Stream[T]]:
        ring = self._rings[priority]
        if ring is None:
            ring = self._rings[priority] = deque()
        return ring

    def _get(self, stream_id: int) -> _Stream[T]:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"no open stream {stream_id}")
        return stream

    def _activate(self, stream: _Stream[T]) -> None:
        if not stream.active and stream.eligible():
            stream.active = True
            self._ring(stream.priority).append(stream)

    def _unqueue(self, stream: _Stream[T], item: Outgoing[T]) -> None:
        stream.queued_bytes -= item.size
        self._queued -= item.size
        if stream.lingering:
            self._queued_low -= item.size
        if item.key is not None and stream.latest.get(item.key) is item:
            del stream.latest[item.key]

    def _drop_oldest(self, stream: _Stream[T]) -> None:
        self._unqueue(stream, stream.queue.popleft())
        stream.metrics.drops += 1

    def _forget(self, stream: _Stream[T]) -> None:
        del self._streams[stream.stream_id]
        if stream.active:
            self._ring(stream.priority).remove(stream)
            stream.active = False
        self._emit(StreamFinished(stream.stream_id, stream.metrics))

    def _is_over(self, stream: _Stream[T]) -> bool:
        if stream.queued_bytes > stream.limit:
            return True
        # Only lossless producers answer for the whole connection: a DISCONNECT stream within
        # its own share is keeping up, whatever the other streams hold.
        return stream.policy is Policy.PAUSE and self.buffered_bytes > self.config.high_watermark

    def _check_over(self, stream: _Stream[T], now: float) -> None:
        # (enqueue has its own copy of the PAUSE branch, for speed)
        if stream.policy is Policy.PAUSE:
            if not stream.paused and self._is_over(stream):
                stream.paused = True
                self._emit(StreamPaused(stream.stream_id))
        elif stream.policy is Policy.DISCONNECT:
            if self._is_over(stream):
                if stream.over_since is None:
                    stream.over_since = now
            else:
                stream.over_since = None

    def _update_pauses(self) -> None:
        """Resume paused streams once below the low marks; stop the clock of DISCONNECT
        streams back within their share."""
        total_low = self.buffered_bytes <= self.config.low_watermark
        for stream in self._streams.values():
            if stream.paused and total_low and stream.queued_bytes <= stream.limit // 4:
                stream.paused = False
                self._emit(StreamResumed(stream.stream_id))
            elif stream.over_since is not None and not self._is_over(stream):
                stream.over_since = None

    def _report_slow(self, stream: _Stream[T]) -> None:
        if not stream.slow_reported:
            stream.slow_reported = True
            self._emit(SlowConsumer(stream.stream_id, stream.queued_bytes))
