"""A generation's chunks written to a shared journal, for listeners on other workers.

The worker that runs a generation (its owner) hears it first-hand; a listener that reconnects
to another worker hears it through the journal (:mod:`.mirror`). A :class:`Publication` is the
owner's side: every chunk goes to a :class:`~diaproto.journal.Batcher` (a chunk after a quiet
spell leaves at once, so the time to first audio elsewhere is one hop; under a steady stream
chunks wait up to 25 ms for company), and the generation's end is written after its last
record. It also keeps what the other workers report of their listeners, so the owner's gate
and grace count listeners everywhere: a generation whose listener moved to another worker goes
on, and pauses when that listener pauses.

Reports are refreshed every :data:`REPORT_EVERY` seconds by the worker that makes them; one not
refreshed for :data:`REPORT_STALE` seconds (the worker died or lost the journal) counts no more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from diaproto.journal import Batcher, Ending, Journal, ListenerReport, StreamHead
from diaproto.runtime import Cancellable, Runtime

REPORT_EVERY = 2.0
REPORT_STALE = 3 * REPORT_EVERY


@dataclass(frozen=True)
class Elsewhere:
    """Other workers' listeners of a generation: how many, and whether one is paused."""

    listeners: int = 0
    paused: bool = False


class Publication:
    """One generation's journal writes and the reports of its listeners elsewhere."""

    def __init__(
        self,
        journal: Journal,
        token: str,
        epoch: str,
        runtime: Runtime,
        changed: Callable[[], None],
        *,
        lease: int = 0,
        credit_based: bool = False,
    ) -> None:
        self.journal = journal
        self.token = token
        self.runtime = runtime
        self._changed = changed
        self.lease = lease
        self._batcher = Batcher(lease=lease)
        self._flush_timer: Cancellable | None = None
        self._expiry_timer: Cancellable | None = None
        self._reports: dict[str, tuple[ListenerReport, float]] = {}
        self.ended = False
        journal.begin(token, StreamHead(epoch, journal.worker, credit_based))
        self._watch = journal.watch_reports(token, self._report_arrived)

    def frame(self, data: bytes, now: float) -> None:
        """The generation's next chunk (the journal numbers it as the replay does)."""
        if self.ended:
            return
        record = self._batcher.add(data, now)
        if record is not None:
            self.journal.append(self.token, record)
        elif self._flush_timer is None:
            deadline = self._batcher.deadline()
            assert deadline is not None  # a frame waits
            self._flush_timer = self.runtime.call_later(max(0.0, deadline - now), self._due)

    def end(self, ending: Ending) -> None:
        """Write what waits, then the ending; stop listening for reports."""
        if self.ended:
            return
        self.ended = True
        record = self._batcher.flush()
        if record is not None:
            self.journal.append(self.token, record)
        self.journal.end(self.token, replace(ending, lease=self.lease))
        self._watch.cancel()
        for timer in (self._flush_timer, self._expiry_timer):
            if timer is not None:
                timer.cancel()
        self._flush_timer = self._expiry_timer = None
        self._reports.clear()

    def elsewhere(self, now: float) -> Elsewhere:
        """Listeners on other workers, by their reports still fresh at ``now``."""
        fresh = [report for report, at in self._reports.values() if now - at < REPORT_STALE]
        return Elsewhere(
            sum(report.listeners for report in fresh),
            any(report.paused and report.listeners for report in fresh),
        )

    def _due(self) -> None:
        self._flush_timer = None
        record = self._batcher.due(self.runtime.now())
        if record is not None:
            self.journal.append(self.token, record)
        elif self._batcher.waiting:  # the timer fired early: wait for the rest
            deadline = self._batcher.deadline()
            assert deadline is not None
            delay = max(0.0, deadline - self.runtime.now())
            self._flush_timer = self.runtime.call_later(delay, self._due)

    def _report_arrived(self, report: ListenerReport) -> None:
        # Any thread (the journal's reader): the reports are the loop's.
        self.runtime.call_soon_threadsafe(partial(self._take_report, report))

    def _take_report(self, report: ListenerReport) -> None:
        if self.ended or report.worker == self.journal.worker:
            return
        now = self.runtime.now()
        if report.listeners:
            self._reports[report.worker] = (report, now)
        else:
            self._reports.pop(report.worker, None)
        self._arm_expiry(now)
        self._changed()

    def _arm_expiry(self, now: float) -> None:
        # One timer, at the moment the oldest fresh report goes stale.
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        if self._reports:
            oldest = min(at for _, at in self._reports.values())
            delay = max(0.0, oldest + REPORT_STALE - now)
            self._expiry_timer = self.runtime.call_later(delay, self._expire)

    def _expire(self) -> None:
        self._expiry_timer = None
        now = self.runtime.now()
        stale = [w for w, (_, at) in self._reports.items() if now - at >= REPORT_STALE]
        for worker in stale:
            del self._reports[worker]
        self._arm_expiry(now)
        if stale:
            self._changed()
