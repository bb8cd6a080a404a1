"""The scheduler's invariants, checked against a model the test keeps (hypothesis stateful).

The model mirrors every stream's queue, credit, pause state, DISCONNECT clock, replay window
and consumer log. Each rule calls the scheduler, predicts the outcome (return value, raised
error, events) from the model, and checks every batch ``take()`` returns item by item. Time
is a fake clock: a float the machine advances and passes as ``now``.

Invariants proved:

1. order within a stream: every taken item is the head of its stream's model queue, sequence
   numbers taken per stream strictly increase, and on a PAUSE stream they are consecutive;
2. nothing lost on a PAUSE stream: when the machine drains (credit granted, in_flight=0),
   every stream's consumer log is 1..last_seq, each exactly once;
3. a higher class never waits while a lower one is sent (CONTROL never waits at all);
4. an enqueue that does not raise leaves the charged total (each queued message's size plus
   the per-message overhead, plus in flight) ``<= max_buffered`` (and a PAUSE enqueue past
   the budget raises and changes nothing); shares and watermarks compare charged bytes too;
5. a LATEST stream holds exactly one item per key, the newest value enqueued for it;
6. SlowConsumer fires at the first handle_timer at or after over_since + grace, never
   before (or at once when an enqueue would pass the hard budget);
7. resume re-queues exactly the messages with seq > after, or raises ReplayGap exactly when
   one of them has left the replay window.

Also: next_deadline() equals the model's (linger and grace clocks), events are exactly
the predicted ones, and per-stream metrics match the model's counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from diaproto.config import SchedulerConfig
from diaproto.errors import LocalProtocolError, ReplayGap
from diaproto.events import Event, SlowConsumer, StreamFinished, StreamPaused, StreamResumed
from diaproto.metrics import StreamMetrics
from diaproto.replay import ReplayBuffer
from diaproto.scheduler import (
    LINGERING_CLASSES,
    Outgoing,
    Policy,
    Priority,
    Scheduler,
    StreamOptions,
)

MAX_OPEN = 5
TIMES = st.sampled_from([0.0, 0.125, 0.25, 0.5, 1.0, 3.0])  # exact in binary
# Small messages mostly, empty ones often (they have their own edge cases), big ones sometimes.
SIZES = st.one_of(st.just(0), st.integers(1, 48), st.integers(1, 48), st.integers(0, 400))


@st.composite
def configs(draw: st.DrawFn) -> SchedulerConfig:
    low = draw(st.integers(0, 150), label="low_watermark")
    high = draw(st.integers(low, 300), label="high_watermark")
    return SchedulerConfig(
        batch_bytes=draw(st.integers(1, 120), label="batch_bytes"),
        linger=draw(st.sampled_from([0.0, 0.25, 1.0]), label="linger"),
        quantum=draw(st.integers(1, 64), label="quantum"),
        write_window=draw(st.integers(1, 200), label="write_window"),
        high_watermark=high,
        low_watermark=low,
        max_buffered=draw(st.integers(max(high, 1), 500), label="max_buffered"),
    )


@dataclass
class Item:
    seq: int
    payload: int
    size: int
    key: int | None


@dataclass
class Model:
    """What the test believes about one open stream."""

    sid: int
    priority: Priority
    policy: Policy
    limit: int
    credit: int | None
    grace: float
    replay: ReplayBuffer[int] | None
    queue: list[Item] = field(default_factory=list)
    held: list[Item] = field(default_factory=list)  # the replay window, as the model sees it
    next_seq: int = 1
    log: list[int] = field(default_factory=list)  # seqs the consumer has, in order
    last_value: dict[int, int] = field(default_factory=dict)  # LATEST: newest per key
    paused: bool = False
    over_since: float | None = None
    slow_reported: bool = False
    finishing: bool = False
    first_send: float | None = None
    last_send: float | None = None
    sent_msgs: int = 0
    sent_bytes: int = 0
    drops: int = 0
    coalesced: int = 0
    high_water: int = 0

    @property
    def bytes(self) -> int:
        return sum(item.size for item in self.queue)

    @property
    def eligible(self) -> bool:
        return bool(self.queue) and (self.credit is None or self.credit > 0)

    def charged(self, overhead: int) -> int:
        return self.bytes + overhead * len(self.queue)

    def remember(self, item: Item) -> None:
        """The replay buffer's eviction rule, modelled independently."""
        if self.replay is None:
            return
        self.held.append(item)
        while len(self.held) > self.replay.max_messages or (
            sum(i.size for i in self.held) > self.replay.max_bytes and len(self.held) > 1
        ):
            self.held.pop(0)


def _placeholder_finished(stream_id: int) -> StreamFinished:
    return StreamFinished(stream_id, StreamMetrics(opened_at=0.0))  # metrics are not compared


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cfg = SchedulerConfig()
        self.overhead = 0
        self.sched: Scheduler[int] = Scheduler(self.cfg)
        self.now = 0.0
        self.in_flight = 0
        self.last_take: float | None = None
        self.streams: dict[int, Model] = {}
        self.gone: dict[int, Model] = {}  # forgotten streams, for StreamFinished metrics
        self.next_id = 1
        self.counter = 0

    # --- model helpers -------------------------------------------------------------------

    def charge(self, m: Model) -> int:
        return m.charged(self.overhead)

    def charged(self) -> int:
        """What the budget counts: queued messages with their overhead, plus in flight."""
        return sum(self.charge(m) for m in self.streams.values()) + self.in_flight

    def sched_charged(self) -> int:
        return self.sched.charged_bytes() + self.sched.in_flight_bytes

    def is_over(self, m: Model) -> bool:
        if self.charge(m) > m.limit:
            return True
        return m.policy is Policy.PAUSE and self.charged() > self.cfg.high_watermark

    def check_over(self, m: Model, events: list[Event]) -> None:
        if m.policy is Policy.PAUSE:
            if not m.paused and self.is_over(m):
                m.paused = True
                events.append(StreamPaused(m.sid))
        elif m.policy is Policy.DISCONNECT:
            if self.is_over(m):
                if m.over_since is None:
                    m.over_since = self.now
            else:
                m.over_since = None

    def update_pauses(self, events: list[Event]) -> None:
        total_low = self.charged() <= self.cfg.low_watermark
        for m in self.streams.values():
            if m.paused and total_low and self.charge(m) <= m.limit // 4:
                m.paused = False
                events.append(StreamResumed(m.sid))
            elif m.over_since is not None and not self.is_over(m):
                m.over_since = None

    def forget(self, m: Model, events: list[Event], *, discarded: bool) -> None:
        del self.streams[m.sid]
        self.gone[m.sid] = m
        events.append(_placeholder_finished(m.sid))
        if m.policy is Policy.PAUSE and not discarded:
            # Invariant 2: a PAUSE stream that finished delivered everything, once, in order.
            assert m.log == list(range(1, m.next_seq)), (m.sid, m.log)

    def expect(self, expected: list[Event]) -> None:
        actual: list[Event] = []
        while (event := self.sched.next_event()) is not None:
            actual.append(event)
        assert Counter(actual) == Counter(expected), (actual, expected)
        for event in actual:
            if isinstance(event, StreamFinished):
                m = self.gone[event.stream_id]
                got = event.metrics
                assert (got.messages_sent, got.bytes_sent, got.drops, got.coalesced) == (
                    m.sent_msgs,
                    m.sent_bytes,
                    m.drops,
                    m.coalesced,
                )

    def eligible_in(self, priority: Priority) -> bool:
        return any(m.eligible for m in self.streams.values() if m.priority is priority)

    def expected_deadline(self) -> float | None:
        deadlines: list[float] = []
        if (
            self.last_take is not None
            and self.in_flight < self.cfg.write_window
            and any(self.eligible_in(p) for p in LINGERING_CLASSES)
        ):
            deadlines.append(self.last_take + self.cfg.linger)
        for m in self.streams.values():
            if m.over_since is not None and not m.slow_reported:
                deadlines.append(m.over_since + m.grace)
        return min(deadlines) if deadlines else None

    def pick(self, data: st.DataObject, candidates: list[int]) -> Model:
        return self.streams[data.draw(st.sampled_from(sorted(candidates)), label="stream")]

    # --- scheduler calls with their checks ---------------------------------------------------

    def set_in_flight(self, nbytes: int) -> None:
        self.sched.set_in_flight(nbytes)
        self.in_flight = nbytes
        events: list[Event] = []
        self.update_pauses(events)
        self.expect(events)

    def sent(self, item: Outgoing[int]) -> Priority:
        """Check one message of a batch against the model, count it sent; its class."""
        m = self.streams[item.stream_id]
        assert m.queue, f"stream {m.sid} sent more than was queued"
        head = m.queue.pop(0)
        # Invariant 1 (and 5 for LATEST): exactly the next item the model holds.
        assert (item.seq, item.payload, item.size, item.key) == (
            head.seq,
            head.payload,
            head.size,
            head.key,
        )
        if m.credit is not None:
            assert m.credit > 0, "a credit-based stream sent without credit"
            m.credit -= item.size
        previous = m.log[-1] if m.log else 0
        assert item.seq > previous
        if m.policy is Policy.PAUSE:
            assert item.seq == previous + 1, "a PAUSE stream skipped a message"
        m.log.append(item.seq)
        if m.first_send is None:
            m.first_send = self.now
        m.last_send = self.now
        m.sent_msgs += 1
        m.sent_bytes += item.size
        return m.priority

    def take(self) -> list[Outgoing[int]]:
        cfg = self.cfg
        window = cfg.write_window - self.in_flight
        room = min(window, cfg.batch_bytes)
        queued_low = sum(m.bytes for m in self.streams.values() if m.priority in LINGERING_CLASSES)
        linger_due = (
            self.last_take is None
            or self.now >= self.last_take + cfg.linger
            or queued_low >= cfg.batch_bytes
        )

        batch = self.sched.take(self.now)

        classes = [self.sent(item) for item in batch]

        assert classes == sorted(classes), "the batch is highest class first"
        non_control = [
            item.size for item, c in zip(batch, classes, strict=True) if c is not Priority.CONTROL
        ]
        if window <= 0:
            assert not non_control, "only CONTROL passes a full write window"
        if non_control:
            assert sum(non_control[:-1]) < room, "a message started past the window or batch cap"
        company = any(c in (Priority.CONTROL, Priority.INTERACTIVE) for c in classes)
        if any(c in LINGERING_CLASSES for c in classes):
            assert company or linger_due, "a lingering class left before its time"
        # Invariant 3: nothing eligible waits above the lowest class sent; CONTROL never waits.
        assert not self.eligible_in(Priority.CONTROL)
        if classes:
            for p in Priority:
                if p < max(classes):
                    assert not self.eligible_in(p), (
                        f"{p.name} waited while {max(classes).name} went"
                    )
        # Nothing due is held back while the batch had room.
        if window > 0 and sum(non_control) < room:
            assert not self.eligible_in(Priority.INTERACTIVE)
            if company or linger_due:
                assert not any(self.eligible_in(p) for p in LINGERING_CLASSES)

        if batch:
            self.last_take = self.now
        events: list[Event] = []
        for m in list(self.streams.values()):
            if m.finishing and not m.queue:
                self.forget(m, events, discarded=False)
        self.update_pauses(events)
        self.expect(events)
        return batch

    def handle_timer(self) -> None:
        self.sched.handle_timer(self.now)
        events: list[Event] = []
        for m in self.streams.values():
            if (
                m.over_since is not None
                and not m.slow_reported
                and self.now >= m.over_since + m.grace
            ):
                m.slow_reported = True
                events.append(SlowConsumer(m.sid, m.bytes))
        self.expect(events)

    # --- rules ---------------------------------------------------------------------------

    @initialize(cfg=configs(), overhead=st.sampled_from([0, 1, 5, 24]))
    def setup(self, cfg: SchedulerConfig, overhead: int) -> None:
        self.cfg = cfg
        self.overhead = overhead
        self.sched = Scheduler(cfg, message_overhead=overhead)

    @precondition(lambda self: len(self.streams) < MAX_OPEN)
    @rule(
        priority=st.sampled_from(Priority),
        policy=st.sampled_from(Policy),
        limit=st.none() | st.integers(1, 300),
        credit=st.none() | st.integers(0, 100),
        grace=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
        replay=st.none() | st.tuples(st.integers(1, 8), st.integers(1, 200)),
    )
    def open_stream(
        self,
        *,
        priority: Priority,
        policy: Policy,
        limit: int | None,
        credit: int | None,
        grace: float,
        replay: tuple[int, int] | None,
    ) -> None:
        sid = self.next_id
        self.next_id += 1
        buffer: ReplayBuffer[int] | None = None
        if replay is not None and policy is not Policy.LATEST:
            # (LATEST + replay re-queues keyless copies: outside invariant 5, not modelled.)
            buffer = ReplayBuffer(sid, max_messages=replay[0], max_bytes=replay[1])
        self.sched.open_stream(
            sid,
            self.now,
            StreamOptions(
                priority=priority,
                policy=policy,
                limit=limit,
                credit=credit,
                grace=grace,
                replay=buffer,
            ),
        )
        self.streams[sid] = Model(
            sid=sid,
            priority=priority,
            policy=policy,
            limit=self.cfg.high_watermark if limit is None else limit,
            credit=credit,
            grace=grace,
            replay=buffer,
        )
        self.expect([])

    @precondition(lambda self: any(not m.finishing for m in self.streams.values()))
    @rule(data=st.data(), size=SIZES, key=st.none() | st.integers(0, 3))
    def enqueue(self, data: st.DataObject, size: int, key: int | None) -> None:
        m = self.pick(data, [sid for sid, m in self.streams.items() if not m.finishing])
        self.enqueue_on(m, size, key)

    @precondition(lambda self: any(not m.finishing for m in self.streams.values()))
    @rule(data=st.data(), share=st.booleans(), delta=st.sampled_from([-1, 0, 1]))
    def enqueue_at_the_edge(self, data: st.DataObject, share: bool, delta: int) -> None:
        """A message sized to the room left in the connection budget or in the stream's
        share (its overhead included), give or take one byte: where off-by-one errors live."""
        m = self.pick(data, [sid for sid, m in self.streams.items() if not m.finishing])
        room = m.limit - self.charge(m) if share else self.cfg.max_buffered - self.charged()
        room -= self.overhead
        key = m.sid % 4 if m.policy is Policy.LATEST else None
        self.enqueue_on(m, max(room + delta, 0), key)

    def enqueue_on(self, m: Model, size: int, key: int | None) -> None:
        if m.policy is Policy.LATEST and key is None:
            key = size % 4
        self.counter += 1
        payload = self.counter
        before = self.sched_charged()
        cfg = self.cfg
        cost = size + self.overhead  # what the message counts for

        # Predict: what the policy drops first, then whether the budget has room.
        new_queue = list(m.queue)
        drops = coalesced = 0
        if m.policy is Policy.LATEST:
            assert key is not None
            older = [item for item in new_queue if item.key == key]
            if older:
                new_queue.remove(older[0])
                coalesced = 1
            m.last_value[key] = payload
        elif m.policy is Policy.DROP_OLDEST:
            while (
                new_queue
                and sum(i.size for i in new_queue) + self.overhead * len(new_queue) + cost > m.limit
            ):
                new_queue.pop(0)
                drops += 1

        def room() -> int:
            held = sum(i.size for i in new_queue) + self.overhead * len(new_queue)
            return cfg.max_buffered - (self.charged() - self.charge(m) + held)

        events: list[Event] = []
        accepted = True
        if cost > room():
            if m.policy is Policy.PAUSE:
                with pytest.raises(LocalProtocolError, match="connection budget"):
                    self.sched.enqueue(m.sid, payload, size, self.now, key=key)
                # Invariant 4: the refused message left no trace.
                assert self.sched_charged() == before
                assert self.sched.last_seq(m.sid) == m.next_seq - 1
                self.expect([])
                return
            if m.policy is Policy.DISCONNECT:
                if not m.slow_reported:
                    m.slow_reported = True
                    events.append(SlowConsumer(m.sid, m.bytes))
                drops += 1
                accepted = False
            else:
                while new_queue and cost > room():
                    new_queue.pop(0)
                    drops += 1
                if cost > room():
                    drops += 1
                    accepted = False

        seq = self.sched.enqueue(m.sid, payload, size, self.now, key=key)

        # Bytes the policy removed to make room (a drop, a replaced LATEST value).
        removed = m.charged(self.overhead) - (
            sum(i.size for i in new_queue) + self.overhead * len(new_queue)
        )
        m.queue = new_queue
        m.drops += drops
        m.coalesced += coalesced
        if accepted:
            assert seq == m.next_seq
            item = Item(m.next_seq, payload, size, key)
            m.next_seq += 1
            m.queue.append(item)
            m.remember(item)
            m.high_water = max(m.high_water, m.bytes)
            self.check_over(m, events)
            # Invariant 4: what was accepted fits in the budget, overhead included.
            assert self.sched_charged() <= cfg.max_buffered
        else:
            assert seq is None
        if removed:
            # The connection may be back under its low mark: paused streams resume now.
            self.update_pauses(events)
        # Never growing past the budget (it may already be past it after a resume).
        assert self.sched_charged() <= max(before, cfg.max_buffered)
        self.expect(events)

    @rule(written=st.booleans())
    def take_batch(self, written: bool) -> None:
        batch = self.take()
        if not written:
            self.set_in_flight(self.in_flight + sum(item.size for item in batch))

    @precondition(lambda self: self.in_flight > 0)
    @rule(nbytes=st.integers(1, 200))
    def transport_wrote(self, nbytes: int) -> None:
        self.set_in_flight(max(self.in_flight - nbytes, 0))

    @rule(dt=TIMES)
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule()
    def timer(self) -> None:
        self.handle_timer()

    @rule()
    def sleep_until_deadline(self) -> None:
        deadline = self.sched.next_deadline()
        if deadline is not None and deadline > self.now:
            self.now = deadline
        self.handle_timer()

    @precondition(lambda self: any(m.credit is not None for m in self.streams.values()))
    @rule(data=st.data(), nbytes=st.integers(-20, 120))
    def grant_credit(self, data: st.DataObject, nbytes: int) -> None:
        m = self.pick(data, [sid for sid, m in self.streams.items() if m.credit is not None])
        self.sched.grant_credit(m.sid, nbytes)
        assert m.credit is not None
        m.credit += nbytes
        self.expect([])

    @precondition(lambda self: bool(self.streams))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        m = self.pick(data, list(self.streams))
        self.sched.finish_stream(m.sid)
        events: list[Event] = []
        m.finishing = True
        if not m.queue:
            self.forget(m, events, discarded=False)
        self.expect(events)

    @precondition(lambda self: bool(self.streams))
    @rule(data=st.data())
    def discard(self, data: st.DataObject) -> None:
        m = self.pick(data, list(self.streams))
        assert self.sched.discard_stream(m.sid) == m.bytes
        m.drops += len(m.queue)
        m.queue = []
        events: list[Event] = []
        self.forget(m, events, discarded=True)
        self.update_pauses(events)
        self.expect(events)

    @precondition(lambda self: any(m.replay is not None for m in self.streams.values()))
    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        m = self.pick(data, [sid for sid, m in self.streams.items() if m.replay is not None])
        last = m.next_seq - 1
        after = data.draw(st.integers(0, last), label="after")
        oldest = m.held[0].seq if m.held else last + 1
        if after < last and after + 1 < oldest:
            # Invariant 7: a gap is reported, and nothing changes.
            with pytest.raises(ReplayGap) as info:
                self.sched.resume(m.sid, after, self.now)
            assert info.value.oldest_available == oldest
            self.expect([])
            return
        missed = [item for item in m.held if item.seq > after]
        # Invariant 7: exactly the messages after ``after``, with their original numbers.
        assert self.sched.resume(m.sid, after, self.now) == len(missed)
        m.queue = [Item(i.seq, i.payload, i.size, None) for i in missed]
        m.high_water = max(m.high_water, m.bytes)
        # The consumer has exactly 1..after now (it says so).
        m.log = [s for s in m.log if s <= after]
        m.log.extend(range((m.log[-1] if m.log else 0) + 1, after + 1))
        events: list[Event] = []
        self.check_over(m, events)
        if m.finishing and not m.queue:
            self.forget(m, events, discarded=False)
        self.update_pauses(events)
        self.expect(events)

    @rule()
    def drain(self) -> None:
        """Grant all credit, let the transport write everything, and take until empty."""
        for m in self.streams.values():
            if m.credit is not None:
                self.sched.grant_credit(m.sid, 100_000)
                m.credit += 100_000
        self.set_in_flight(0)
        for _ in range(500):
            if not any(m.queue for m in self.streams.values()):
                break
            if self.take():
                self.set_in_flight(0)
                continue
            deadline = self.sched.next_deadline()
            # Liveness: something queued and nothing taken means a deadline to wake for.
            assert deadline is not None, "queued messages with no deadline to send them"
            self.now = max(self.now, deadline)
            self.handle_timer()
        assert not any(m.queue for m in self.streams.values())
        assert self.sched.queued_bytes() == 0
        assert self.sched.buffered_bytes == 0
        assert self.sched.charged_bytes() == 0
        for m in self.streams.values():
            # Invariant 2: everything accepted on a PAUSE stream was taken exactly once.
            if m.policy is Policy.PAUSE:
                assert m.log == list(range(1, m.next_seq))
            # ... and once all is written, no producer is left paused.
            assert not m.paused

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def state_matches_the_model(self) -> None:
        sched = self.sched
        assert sched.stream_ids == list(self.streams)
        for sid, m in self.streams.items():
            assert sched.queued_bytes(sid) == m.bytes
            assert sched.charged_bytes(sid) == self.charge(m)
            assert sched.is_paused(sid) == m.paused
            assert sched.credit(sid) == m.credit
            assert sched.last_seq(sid) == m.next_seq - 1
            metrics = sched.metrics(sid)
            assert (metrics.messages_sent, metrics.bytes_sent) == (m.sent_msgs, m.sent_bytes)
            assert (metrics.drops, metrics.coalesced) == (m.drops, m.coalesced)
            assert (metrics.first_send_at, metrics.last_send_at) == (m.first_send, m.last_send)
            assert metrics.queue_high_water == m.high_water
            if m.replay is not None:
                assert m.replay.last_seq == m.next_seq - 1
                assert [e.seq for e in m.replay.since(m.replay.oldest_seq - 1)] == [
                    i.seq for i in m.held
                ]
        total = sum(m.bytes for m in self.streams.values())
        assert sched.queued_bytes() == total
        assert sched.buffered_bytes == total + self.in_flight
        assert sched.in_flight_bytes == self.in_flight
        assert self.sched_charged() == self.charged()

    @invariant()
    def latest_keeps_the_newest_per_key(self) -> None:
        # Invariant 5 (the model is checked against every take, so this is about the real queue).
        for m in self.streams.values():
            if m.policy is Policy.LATEST:
                keys = [item.key for item in m.queue]
                assert len(keys) == len(set(keys))
                for item in m.queue:
                    assert item.key is not None
                    assert item.payload == m.last_value[item.key]

    @invariant()
    def deadline_matches_the_model(self) -> None:
        assert self.sched.next_deadline() == self.expected_deadline()

    def teardown(self) -> None:
        if self.streams:
            self.drain()


SchedulerMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None
)
TestSchedulerMachine = SchedulerMachine.TestCase
