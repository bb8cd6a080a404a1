"""The outbound scheduler: which queued message leaves next, how many together, and when.

It knows nothing of framing or sockets. Messages go in with :meth:`Scheduler.enqueue`; a
framing layer takes due batches with :meth:`Scheduler.take` and turns them into bytes.

The scheduler holds the streams and their queues, and composes two small objects that each
keep one rule: :class:`~diaproto.scheduler.budget.Budget` (the byte budget, the watermarks,
PAUSE and resume, the DISCONNECT grace) and :class:`~diaproto.scheduler.fairness.Fairness`
(strict priority, deficit round-robin, batching with linger, the write window, credit).
Each policy's answer to a stream over its share is here, in :meth:`Scheduler.enqueue`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

from diaproto.config import SchedulerConfig
from diaproto.errors import LocalProtocolError
from diaproto.events import Event, SlowConsumer, StreamFinished, StreamPaused, StreamResumed
from diaproto.metrics import StreamMetrics
from diaproto.scheduler._types import (
    LINGERING_CLASSES,
    Outgoing,
    Policy,
    StreamOptions,
    StreamRecord,
)
from diaproto.scheduler.budget import MESSAGE_OVERHEAD, Budget, resume_point
from diaproto.scheduler.fairness import Fairness

T = TypeVar("T")


class Scheduler(Generic[T]):
    """Priority, fairness, batching and backpressure for one connection's outbound messages."""

    __slots__ = ("_budget", "_events", "_fairness", "_paced", "_streams", "config")

    def __init__(
        self, config: SchedulerConfig | None = None, *, message_overhead: int = MESSAGE_OVERHEAD
    ) -> None:
        """``message_overhead``: bytes charged to the budget for each queued message on top
        of its size (the default fits ``bytes`` and ``str`` payloads; see
        :data:`~diaproto.scheduler.budget.MESSAGE_OVERHEAD`)."""
        self.config = config or SchedulerConfig()
        self._streams: dict[int, StreamRecord[T]] = {}
        self._budget = Budget(self.config, message_overhead)
        self._fairness: Fairness[T] = Fairness(self.config, self._forget)
        # A deque costs ~760 B even when empty: the event queue is made on first use, so an
        # idle connection holds none.
        self._events: deque[Event] | None = None
        self._paced: list[StreamRecord[T]] | None = None  # streams the clock grants credit to

    # --- streams ---------------------------------------------------------------------------

    def open_stream(
        self, stream_id: int, now: float, options: StreamOptions[T] | None = None
    ) -> None:
        """Register a stream, scheduled as ``options`` say (default: a PAUSE stream in the
        STREAM class with the high watermark as its share; see :class:`StreamOptions`)."""
        if stream_id in self._streams:
            raise LocalProtocolError(f"stream {stream_id} is already open")
        if options is None:
            options = StreamOptions()
        limit = self.config.high_watermark if options.limit is None else options.limit
        replay = options.replay
        self._streams[stream_id] = StreamRecord(
            stream_id=stream_id,
            options=options,
            policy=options.policy,
            limit=limit,
            resume_at=resume_point(limit),
            recorder=replay if options.record else None,
            lingering=options.priority in LINGERING_CLASSES,
            credit=options.credit,
            metrics=StreamMetrics(opened_at=now),
            next_seq=(replay.last_seq + 1) if replay is not None else 1,
            allowance=options.lead,
            paced_at=now,
        )
        if options.pace is not None:
            if self._paced is None:
                self._paced = []
            self._paced.append(self._streams[stream_id])

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
        self._clear(stream)
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
        if not self._coalesce(self._get(stream_id), key):
            return False
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
        """Payload bytes queued on the stream (None: on the connection): the sizes given to
        :meth:`enqueue`, what is still to be framed and written. The budget counts more:
        see :meth:`charged_bytes`."""
        return self._budget.queued if stream_id is None else self._get(stream_id).queued_bytes

    def charged_bytes(self, stream_id: int | None = None) -> int:
        """What the budget counts for the queue of the stream (None: of the connection):
        each message's size plus the per-message overhead. A stream's share and the
        watermarks compare this; ``charged_bytes() + in_flight_bytes`` never passes
        ``max_buffered`` after an enqueue."""
        if stream_id is None:
            return self._budget.charged_queue
        return self._budget.charge(self._get(stream_id))

    def last_seq(self, stream_id: int) -> int:
        """The sequence number given to the stream's latest message (0: none yet)."""
        return self._get(stream_id).next_seq - 1

    def credit(self, stream_id: int) -> int | None:
        return self._get(stream_id).credit

    def options(self, stream_id: int) -> StreamOptions[T]:
        """The options the stream was opened with."""
        return self._get(stream_id).options

    def allowance(self, stream_id: int) -> int | None:
        """What the clock allows a paced stream now, as of the last ``take``; None: unpaced."""
        return self._get(stream_id).allowance

    @property
    def stream_ids(self) -> list[int]:
        return list(self._streams)

    # --- budget ----------------------------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        """Payload bytes queued here plus bytes handed to the transport and not yet
        written (``queued_bytes() + in_flight_bytes``)."""
        return self._budget.buffered

    @property
    def in_flight_bytes(self) -> int:
        """Bytes handed to the transport and not yet written, as last reported by
        :meth:`set_in_flight`."""
        return self._budget.in_flight

    def set_in_flight(self, nbytes: int) -> None:
        """Bytes released by :meth:`take` that the transport has not written yet."""
        if nbytes == self._budget.in_flight:
            return  # reported per write and per step: most reports change nothing
        self._budget.set_in_flight(nbytes)
        self._update_pauses()

    def grant_credit(self, stream_id: int, nbytes: int) -> None:
        """The consumer may take ``nbytes`` more of this stream (ignored if not credit-based)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.credit is None:
            return
        stream.credit += nbytes
        self._fairness.activate(stream)

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
        if stream is None or stream.finishing or size < 0:
            raise self._refusal(stream_id, stream)
        removed = 0  # what a lossy stream's policy removed to make room
        if stream.policy is Policy.PAUSE:
            overhead = self._budget.overhead
            if size + overhead > self._budget.room():
                raise LocalProtocolError(
                    f"stream {stream_id}: {size} bytes (+{overhead} per message) would "
                    f"pass the connection budget of {self.config.max_buffered}; the producer "
                    "must wait for StreamResumed"
                )
        else:
            charged = self._budget.charged
            room = self._make_room(stream, size, key)
            removed = charged - self._budget.charged
            if not room:
                stream.metrics.drops += 1
                if removed:
                    self._update_pauses()
                return None
        seq = stream.next_seq
        stream.next_seq = seq + 1
        if stream.recorder is not None:
            stream.recorder.append(seq, payload, size)
        item = Outgoing(stream_id, seq, payload, size, key)
        if key is not None and stream.policy is Policy.LATEST:
            stream.latest[key] = item
        self._queue(stream, item)
        if self._budget.check(stream, now):
            self._emit(StreamPaused(stream_id))
        if removed:
            # Room was made by dropping or replacing: the connection may be back under its
            # low mark, and a paused stream must hear so now, not at the next write.
            self._update_pauses()
        return seq

    def _refusal(self, stream_id: int, stream: StreamRecord[T] | None) -> LocalProtocolError:
        """Why a message cannot be queued on ``stream`` (open, not finished, a valid size)."""
        if stream is None:
            return LocalProtocolError(f"no open stream {stream_id}")
        if stream.finishing:
            return LocalProtocolError(f"stream {stream_id} is finished")
        return LocalProtocolError("size cannot be negative")

    def _make_room(self, stream: StreamRecord[T], size: int, key: Hashable | None) -> bool:
        """A lossy stream's policy at work before it queues ``size`` bytes: False when the
        message must be dropped instead.

        LATEST replaces the queued message of the same key; DROP_OLDEST drops from the
        front of its own queue to stay within its share. Past the hard budget a DISCONNECT
        stream is declared too slow, the others drop their own oldest messages to fit.
        Each message counts its size plus the overhead."""
        budget = self._budget
        cost = size + budget.overhead
        if stream.policy is Policy.LATEST:
            if key is None:
                raise LocalProtocolError("a LATEST stream needs a key for every message")
            self._coalesce(stream, key)
        elif stream.policy is Policy.DROP_OLDEST:
            while stream.queue and budget.charge(stream) + cost > stream.limit:
                self._drop_oldest(stream)
        if cost <= budget.room():
            return True
        if stream.policy is Policy.DISCONNECT:
            self._report_slow(stream)
            return False
        while stream.queue and cost > budget.room():
            self._drop_oldest(stream)
        return cost <= budget.room()

    def enqueue_many(
        self, stream_id: int, payloads: Sequence[T], sizes: Sequence[int], now: float
    ) -> int | None:
        """:meth:`enqueue` of each payload in turn (no keys); returns the last one's result
        (``None`` also when ``payloads`` is empty).

        On a PAUSE stream with room for all of them under the hard budget, the stream is
        looked up, accounted and checked for pausing once for the whole list (its sizes
        and its messages' overhead): the same queue, sequence numbers, metrics and events as
        one call per message.
        """
        if not payloads:
            return None
        stream = self._get(stream_id)
        total = sum(sizes)
        count = len(payloads)
        if (
            stream.policy is not Policy.PAUSE
            or stream.finishing
            or total + count * self._budget.overhead > self._budget.room()
            or min(sizes) < 0
        ):
            seq: int | None = None
            for payload, size in zip(payloads, sizes, strict=True):
                seq = self.enqueue(stream_id, payload, size, now)
            return seq
        first = stream.next_seq
        recorder = stream.recorder
        queue = stream.queue
        for seq, (payload, size) in enumerate(zip(payloads, sizes, strict=True), first):
            if recorder is not None:
                recorder.append(seq, payload, size)
            queue.append(Outgoing(stream_id, seq, payload, size))
        stream.next_seq = first + count
        self._account(stream, total, count)
        self._fairness.activate(stream)
        self._check(stream, now)
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
        replay = stream.options.replay
        if replay is None:
            raise LocalProtocolError(f"stream {stream_id} was opened without a replay buffer")
        missed = replay.since(after)
        self._clear(stream)
        for entry in missed:
            self._queue(stream, Outgoing(stream_id, entry.seq, entry.payload, entry.size))
        # Judged on the result as a whole: a DISCONNECT stream over its share before and
        # after keeps its clock running.
        self._check(stream, now)
        if stream.finishing and not stream.queue:
            self._forget(stream)
        self._update_pauses()
        return len(missed)

    def pass_through(self, stream_id: int, payload: T, size: int, now: float) -> Outgoing[T] | None:
        """The message, sequence numbered, recorded and counted as sent, when queueing it
        and taking the next batch would give it alone and change nothing else; else None
        (and nothing happened: :meth:`enqueue` it).

        That is so when nothing is queued on the connection and nothing is in flight (no
        message is ahead of it and the write window is open), the stream is open, not
        paused and not LATEST, its credit is positive, the message fits its share and the
        watermarks (queueing it would pause nothing), and, on a lingering class, linger is
        over. A connection with an idle transport then frames and writes it at once. Until
        the transport reports, its size counts as in flight, so only one message passes
        this way before the queue is used again.

        It leaves with the next batch, ahead of it: the caller reports that batch with
        :meth:`took` when :meth:`take` is not called (linger counts from it)."""
        budget = self._budget
        if budget.messages or budget.in_flight:
            return None
        stream = self._streams.get(stream_id)
        if (
            stream is None
            or stream.finishing
            or stream.paused  # (its producer was told to wait: it queues, as told)
            or stream.policy is Policy.LATEST
            or size < 0
        ):
            return None
        cost = size + budget.overhead
        if cost > stream.limit or cost > self.config.max_buffered:
            return None
        if stream.policy is Policy.PAUSE and cost > self.config.high_watermark:
            return None
        if stream.allowance is not None:
            self._refill(stream, now)
        credit, allowance = stream.credit, stream.allowance
        if (credit is not None and credit <= 0) or (allowance is not None and allowance <= 0):
            return None
        fairness = self._fairness
        if stream.lingering and not fairness.lingering_due(now, size):
            return None
        seq = stream.next_seq
        stream.next_seq = seq + 1
        if stream.recorder is not None:
            stream.recorder.append(seq, payload, size)
        if credit is not None:
            stream.credit = credit - size
        if allowance is not None:
            stream.allowance = allowance - size
        metrics = stream.metrics
        # As if queued for a moment, as enqueue counts it.
        metrics.queue_high_water = max(metrics.queue_high_water, size)
        metrics.record_sends(now, 1, size)
        budget.in_flight = size
        return Outgoing(stream_id, seq, payload, size, None)

    # --- take ------------------------------------------------------------------------------

    def take(self, now: float) -> list[Outgoing[T]]:
        """The batch due now, highest class first; empty when nothing is due (see
        :class:`~diaproto.scheduler.fairness.Fairness` for the order and the room)."""
        budget = self._budget
        if self._paced:
            for stream in self._paced:
                self._refill(stream, now)
        batch, nbytes = self._fairness.take(now, self.config.write_window - budget.in_flight)
        budget.queued -= nbytes
        budget.messages -= len(batch)
        # Even after an empty take: bytes may have been freed by coalescing or drops.
        self._update_pauses()
        return batch

    def took(self, now: float) -> None:
        """A message let through by :meth:`pass_through` left alone, with no :meth:`take`."""
        self._fairness.took(now)

    # --- timers ----------------------------------------------------------------------------

    def next_deadline(self, *, linger: bool = True) -> float | None:
        """When :meth:`take` or :meth:`handle_timer` next has something to do by the clock.

        ``linger=False`` leaves out the linger deadline (for a caller that will not call
        :meth:`take` for now, so that deadline could only stay due)."""
        deadlines = [Budget.grace_deadline(self._streams.values())]
        if linger and self._budget.in_flight < self.config.write_window:
            deadlines.append(self._fairness.linger_deadline())
            if self._paced:
                deadlines.append(self._pace_deadline())
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> None:
        """Declare DISCONNECT streams whose grace period has run out."""
        for stream in Budget.out_of_grace(self._streams.values(), now):
            self._report_slow(stream)

    @property
    def has_queued(self) -> bool:
        """Whether any message is queued (a message of size 0 counts)."""
        return self._budget.messages > 0

    @property
    def has_events(self) -> bool:
        """Whether :meth:`next_event` has an event to hand out."""
        return bool(self._events)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # --- internals -------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        if self._events is None:
            self._events = deque()
        self._events.append(event)

    def _get(self, stream_id: int) -> StreamRecord[T]:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"no open stream {stream_id}")
        return stream

    def _account(self, stream: StreamRecord[T], nbytes: int, count: int) -> None:
        """``count`` messages of ``nbytes`` more queued on the stream (fewer, when
        negative); the stream's own count is its queue's length."""
        queued = stream.queued_bytes = stream.queued_bytes + nbytes
        budget = self._budget
        budget.queued += nbytes
        budget.messages += count
        if stream.lingering:
            self._fairness.queued_low += nbytes
        if nbytes > 0 and queued > stream.metrics.queue_high_water:
            stream.metrics.queue_high_water = queued

    def _queue(self, stream: StreamRecord[T], item: Outgoing[T]) -> None:
        stream.queue.append(item)
        self._account(stream, item.size, 1)
        if not stream.active:  # (the common case asks no more: this runs for every message)
            self._fairness.activate(stream)

    def _unqueue(self, stream: StreamRecord[T], item: Outgoing[T]) -> None:
        """Account for ``item``, already out of the stream's queue."""
        self._account(stream, -item.size, -1)
        if item.key is not None and stream.latest.get(item.key) is item:
            del stream.latest[item.key]

    def _clear(self, stream: StreamRecord[T]) -> None:
        while stream.queue:
            self._unqueue(stream, stream.queue.pop())

    def _coalesce(self, stream: StreamRecord[T], key: Hashable) -> bool:
        """Take the queued message of ``key`` out (it is replaced or moot); True if one was."""
        item = stream.latest.get(key)
        if item is None:
            return False
        stream.queue.remove(item)
        self._unqueue(stream, item)
        stream.metrics.coalesced += 1
        return True

    def _drop_oldest(self, stream: StreamRecord[T]) -> None:
        self._unqueue(stream, stream.queue.popleft())
        stream.metrics.drops += 1

    def _forget(self, stream: StreamRecord[T]) -> None:
        del self._streams[stream.stream_id]
        self._fairness.remove(stream)
        if self._paced and stream.options.pace is not None:
            self._paced.remove(stream)
        self._emit(StreamFinished(stream.stream_id, stream.metrics))

    def _refill(self, stream: StreamRecord[T], now: float) -> None:
        """What the clock has allowed a paced stream since ``paced_at``, whole bytes, up
        to its burst (which the first lead may exceed); time not yet worth a byte carries
        over."""
        options, allowance = stream.options, stream.allowance
        pace, cap = options.pace, options.burst or options.lead
        assert pace is not None and cap is not None and allowance is not None  # (paced)
        earned = int((now - stream.paced_at) * pace)
        if allowance + earned >= cap:
            # Full: time spent full earns nothing (no bunch above the burst later).
            if allowance < cap:
                stream.allowance = cap
                self._fairness.activate(stream)
            stream.paced_at = now
        elif earned > 0:
            stream.allowance = allowance + earned
            stream.paced_at += earned / pace
            self._fairness.activate(stream)

    def _pace_deadline(self) -> float | None:
        """When the clock next lets a paced stream that waits for it send: its allowance
        above 0 (half a byte's time later, so that the refill then surely gives it). A
        stream that also waits for its consumer's credit waits for that instead."""
        soonest = None
        for stream in self._paced or ():
            allowance, pace = stream.allowance, stream.options.pace
            assert allowance is not None and pace is not None  # (paced)
            if stream.queue and allowance <= 0 and (stream.credit is None or stream.credit > 0):
                due = stream.paced_at + (1.5 - allowance) / pace
                soonest = due if soonest is None else min(soonest, due)
        return soonest

    def _check(self, stream: StreamRecord[T], now: float) -> None:
        if self._budget.check(stream, now):
            self._emit(StreamPaused(stream.stream_id))

    def _update_pauses(self) -> None:
        """Resume paused streams once below the low marks; stop the clock of DISCONNECT
        streams back within their share."""
        budget = self._budget
        for stream in self._streams.values():
            if budget.release(stream):
                self._emit(StreamResumed(stream.stream_id))

    def _report_slow(self, stream: StreamRecord[T]) -> None:
        if Budget.declare_slow(stream):
            self._emit(SlowConsumer(stream.stream_id, stream.queued_bytes))
