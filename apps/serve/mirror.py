"""A generation run by another worker, heard here through the shared journal.

A client that reconnects to a worker other than the one running its generation (a balancer
sent it elsewhere, its worker died) resumes from a :class:`MirroredGeneration`: the
generation's history read from the journal (:class:`~diaproto.journal.History`), then its
records as the owner writes them. Listeners attach to it as to a local generation, with the
same replay buffer and sequence numbers, so a resume continues exactly where it stopped, or is
told which records cannot be had.

Nothing here is silently continuous: a hole in the records (the journal lost some, the owner
was fenced) fails the listeners with ``replay_gap``; an owner that stops before the end, or a
journal that stops answering, fails them with ``generation_lost`` or ``going_away``. This
worker reports its listeners (how many, whether one is paused) to the owner every
:data:`~.publication.REPORT_EVERY` seconds and at every change, so the owner keeps producing
for them and pauses with them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from diaproto.apps.serve.generation import (
    REPLAY_BYTES,
    REPLAY_MESSAGES,
    Listener,
)
from diaproto.apps.serve.publication import REPORT_EVERY
from diaproto.errors import ReplayGap
from diaproto.journal import (
    Ending,
    History,
    Journal,
    ListenerReport,
    Record,
    Subscription,
    Unavailable,
    contiguous,
)
from diaproto.replay import ReplayBuffer
from diaproto.runtime import Cancellable, Runtime
from diaproto.server.framing import Payload
from diaproto.wire import ErrorCode

log = logging.getLogger("diaproto.serve")

REACH_TIMEOUT = 2.0
"""How long a resume waits for the records it names to reach this worker through the journal
(the owner writes each within 25 ms; a client rarely reconnects faster)."""


@dataclass(eq=False)
class _Waiter:
    seq: int
    then: Callable[[bool], None]
    timer: Cancellable | None = None


@dataclass(eq=False)
class MirroredGeneration:
    token: str
    epoch: str
    runtime: Runtime
    journal: Journal
    on_idle: Callable[[MirroredGeneration], None]
    replay: ReplayBuffer[Payload] = field(init=False)
    listeners: list[Listener] = field(default_factory=list)
    finished: bool = False
    failed: str | None = None
    failed_code: str = ErrorCode.INTERNAL
    owner: str = ""  # started by another worker: no peer of this one is counted for it
    credit_based: bool = False  # as its journal head says
    admission: None = None
    _stopped: bool = False
    _subscription: Subscription | None = None
    _grace_timer: Cancellable | None = None
    _report_timer: Cancellable | None = None
    _waiters: list[_Waiter] = field(default_factory=list)
    _transient: bool = False
    _lease: int = 0  # the highest writer's lease seen: records under a lower one are fenced

    def __post_init__(self) -> None:
        self.replay = ReplayBuffer(0, max_messages=REPLAY_MESSAGES, max_bytes=REPLAY_BYTES)

    @classmethod
    def from_history(
        cls,
        token: str,
        history: History,
        runtime: Runtime,
        journal: Journal,
        on_idle: Callable[[MirroredGeneration], None],
        *,
        grace: float = 10.0,
    ) -> MirroredGeneration:
        """A mirror holding what the journal still has, following what comes next; it
        stops following after ``grace`` seconds unless a listener attaches."""
        mirror = cls(token, history.head.epoch, runtime, journal, on_idle)
        mirror.credit_based = history.head.credit_based
        # A job run again by another model worker began its ring afresh under a higher
        # lease: whatever a lower one wrote since is a fenced (zombie) writer's.
        lease = mirror._lease = max((record.lease for record in history.records), default=0)
        ending = history.ending
        history = replace(
            history,
            records=tuple(record for record in history.records if record.lease >= lease),
            ending=ending if ending is None or ending.lease >= lease else None,
        )
        for seq, frame in _after_the_last_hole(history):
            mirror.replay.append(seq, frame, len(frame))
        ending = history.ending
        if ending is not None and ending.last_seq > mirror.replay.last_seq:
            mirror._ended(_lost_before(ending, mirror.replay.last_seq))
        elif ending is not None:
            mirror._ended(ending)
        else:
            mirror._subscription = journal.follow(
                token, mirror.replay.last_seq, mirror._records_arrived, mirror._end_arrived
            )
            mirror._grace_timer = runtime.call_later(grace, mirror._grace_over)
        return mirror

    @property
    def lasting(self) -> bool:
        """Whether its outcome holds for later listeners here: not when this worker only
        lost its view of it (the journal went away, records went missing on the way),
        which a fresh read of the journal may not repeat."""
        return not self._transient

    # --- what listeners and the service see (as of a local Generation) ---------------------

    @property
    def running(self) -> bool:
        return False  # no source runs here

    @property
    def stopped(self) -> bool:
        return self._stopped

    def attach(self, listener: Listener) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        self.listeners.append(listener)
        self.update_gate()

    def detach(self, listener: Listener, *, cancelled: bool, grace: float) -> None:
        if listener not in self.listeners:
            return
        self.listeners.remove(listener)
        self.update_gate()
        if self.listeners:
            return
        if self.finished or cancelled or grace <= 0:
            self.stop()
        elif self._grace_timer is None:
            # Kept a while, following, for a listener that reconnects here.
            self._grace_timer = self.runtime.call_later(grace, self._grace_over)

    def update_gate(self) -> None:
        """Tell the owner of this worker's listeners (it gates the generation on them)."""
        if self.finished or self._stopped:
            return
        self._report()

    def stop(self, reason: str = "") -> None:
        """Stop following (the owner decides for itself, from the reports, when to stop)."""
        if self._stopped:
            return
        self._stopped = True
        self._cancel_timers()
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        if not self.finished:
            self.journal.report(self.token, ListenerReport(self.journal.worker, 0, False))
        for waiter in self._take_waiters():
            waiter.then(False)
        self.on_idle(self)

    def when_reached(self, seq: int, then: Callable[[bool], None]) -> None:
        """``then(True)`` once the record ``seq`` is here, ``then(False)`` if it does not come
        within :data:`REACH_TIMEOUT` (or the mirror ends first)."""
        if seq <= self.replay.last_seq:
            then(True)
            return
        if self.finished or self._stopped:
            then(False)
            return
        waiter = _Waiter(seq, then)
        waiter.timer = self.runtime.call_later(REACH_TIMEOUT, partial(self._give_up, waiter))
        self._waiters.append(waiter)

    # --- the journal's side ----------------------------------------------------------------

    def _records_arrived(self, records: Sequence[Record]) -> None:
        self.runtime.call_soon_threadsafe(partial(self._take_records, tuple(records)))

    def _end_arrived(self, ending: Ending | Unavailable) -> None:
        self.runtime.call_soon_threadsafe(partial(self._take_end, ending))

    def _take_records(self, records: tuple[Record, ...]) -> None:
        if self.finished or self._stopped:
            return
        after = self.replay.last_seq
        newest = max(record.lease for record in records)
        if newest > self._lease:
            first = min(r.first_seq for r in records if r.lease == newest)
            if first <= after:
                # Another worker took the job over and ran it again from an earlier point:
                # what it writes does not continue what was heard here.
                self._fail(
                    "the generation was started again by another model worker after "
                    f"record {after} was heard; what follows would not continue it",
                    ErrorCode.GENERATION_LOST,
                )
                return
            self._lease = newest
        # Written under a lease since taken over: a fenced (zombie) writer's, ignored.
        records = tuple(record for record in records if record.lease >= self._lease)
        try:
            frames = contiguous(records, after)
        except ReplayGap as gap:
            self._transient = True
            self._fail(
                f"records {after + 1} to {gap.oldest_available - 1} of this stream were lost "
                "on their way between workers; what follows cannot be heard as continuous",
                ErrorCode.REPLAY_GAP,
            )
            return
        now = self.runtime.now()
        for seq, frame in frames:
            self.replay.append(seq, frame, len(frame))
            for listener in list(self.listeners):
                listener.chunk(frame, now)
                listener.session.wake()
        self._wake_waiters()

    def _take_end(self, ending: Ending | Unavailable) -> None:
        if self.finished or self._stopped:
            return
        if isinstance(ending, Ending) and ending.lease < self._lease:
            return  # a fenced writer's ending (the readers of Redis stop following at an end)
        if isinstance(ending, Unavailable):
            log.warning("generation %s: the journal stopped answering: %s", self.token, ending)
            self._transient = True
            self._fail(
                f"this worker lost the shared journal ({ending.reason}); resume later",
                ErrorCode.GOING_AWAY,
            )
        elif ending.last_seq > self.replay.last_seq:
            self._transient = True
            lost = _lost_before(ending, self.replay.last_seq)
            self._fail(lost.error or "", lost.code)
        else:
            self._ended(ending)
            self._notify_end()

    # --- inside ------------------------------------------------------------------------------

    def _ended(self, ending: Ending) -> None:
        self.finished = True
        if ending.error is not None:
            self.failed = ending.error
            self.failed_code = ending.code or ErrorCode.INTERNAL

    def _fail(self, message: str, code: str) -> None:
        self._ended(Ending(self.replay.last_seq, message, code))
        self._notify_end()

    def _notify_end(self) -> None:
        now = self.runtime.now()
        for listener in list(self.listeners):
            if self.failed is None:
                listener.end(now)
            else:
                listener.fail(self.failed, now, self.failed_code)
            listener.session.wake()
        self.listeners.clear()
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        for waiter in self._take_waiters():
            waiter.then(False)
        self._cancel_timers()
        self.on_idle(self)

    def _report(self) -> None:
        if self._report_timer is not None:
            self._report_timer.cancel()
            self._report_timer = None
        paused = any(listener.paused for listener in self.listeners)
        report = ListenerReport(self.journal.worker, len(self.listeners), paused)
        self.journal.report(self.token, report)
        if self.listeners:  # refreshed, or the owner counts them no more
            self._report_timer = self.runtime.call_later(REPORT_EVERY, self._report)

    def _grace_over(self) -> None:
        self._grace_timer = None
        if not self.listeners:
            self.stop()

    def _wake_waiters(self) -> None:
        reached = [w for w in self._waiters if w.seq <= self.replay.last_seq]
        for waiter in reached:
            self._waiters.remove(waiter)
            if waiter.timer is not None:
                waiter.timer.cancel()
            waiter.then(True)

    def _give_up(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            waiter.then(False)

    def _take_waiters(self) -> list[_Waiter]:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.timer is not None:
                waiter.timer.cancel()
        return waiters

    def _cancel_timers(self) -> None:
        for timer in (self._grace_timer, self._report_timer):
            if timer is not None:
                timer.cancel()
        self._grace_timer = self._report_timer = None


def _after_the_last_hole(history: History) -> list[tuple[int, bytes]]:
    """The frames held from the last hole on (a resume from before it is a gap)."""
    after = 0
    if history.records:
        after = min(record.first_seq for record in history.records) - 1
    while True:
        try:
            return contiguous(history.records, after)
        except ReplayGap as gap:
            after = gap.oldest_available - 1


def _lost_before(ending: Ending, last_seq: int) -> Ending:
    """An ending past the records this worker has: those between are missing."""
    return Ending(
        last_seq,
        f"the stream ended after record {ending.last_seq}, but records after {last_seq} "
        "are missing from the journal",
        ErrorCode.REPLAY_GAP,
    )
