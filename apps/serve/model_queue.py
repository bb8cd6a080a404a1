"""Turns at a model that runs one generation at a time: first come, first served, bounded.

A GPU holds one Dia generation at a time (``slots=1``). Each request takes a :class:`Ticket`
per generation call; a request with several sentences queues again for each, so concurrent
requests take turns rather than one long text holding the model until it is done. The
number waiting is bounded: past ``max_waiting`` a new request is refused at once
(:class:`ModelBusy`) instead of waiting behind an unbounded line.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

DEFAULT_MAX_WAITING = 32
STOP_POLL = 0.05  # seconds between looks at a waiting request's stop signal


class ModelBusy(RuntimeError):
    """Too many requests are already waiting for the model."""


@dataclass(frozen=True)
class QueueStats:
    running: int
    waiting: int
    max_waiting: int
    served: int  # turns granted since start
    refused: int  # requests turned away because the line was full


class Ticket:
    """One place in the line. ``wait`` for the turn, ``release`` when done (or to leave)."""

    def __init__(self, queue: ModelQueue) -> None:
        self._queue = queue
        self.granted = False
        self.released = False

    def wait(self, stop: threading.Event | None = None) -> bool:
        """Block until it is this ticket's turn; False if it was released first, or if
        ``stop`` was set first (the ticket then leaves the line)."""
        return self._queue._wait(self, stop)

    def release(self) -> None:
        """Give the turn back, or leave the line; safe to call more than once."""
        self._queue._release(self)

    def withdraw(self) -> None:
        """Leave the line if the turn has not come yet (a granted turn is kept)."""
        self._queue._withdraw(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class ModelQueue:
    def __init__(self, *, slots: int = 1, max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        if slots < 1 or max_waiting < 0:
            raise ValueError("slots must be at least 1 and max_waiting not negative")
        self.slots = slots
        self.max_waiting = max_waiting
        self._changed = threading.Condition()
        self._line: deque[Ticket] = deque()
        self._running = 0
        self._served = 0
        self._refused = 0

    def join(self) -> Ticket:
        """A place at the end of the line; raises :class:`ModelBusy` if the line is full."""
        with self._changed:
            refusal = self._refusal()
            if refusal is not None:
                self._refused += 1
                raise ModelBusy(refusal)
            ticket = Ticket(self)
            self._line.append(ticket)
            self._grant()
            return ticket

    def refusal(self) -> str | None:
        """Why a request arriving now is refused (counted as refused), or None if it may
        queue: for a front door that answers 503 before starting anything."""
        with self._changed:
            refusal = self._refusal()
            if refusal is not None:
                self._refused += 1
            return refusal

    def _refusal(self) -> str | None:
        if len(self._line) < self.max_waiting or self._running < self.slots:
            return None
        return (
            f"the model is busy: {len(self._line)} requests are already waiting "
            f"(limit {self.max_waiting}); try again shortly"
        )

    def stats(self) -> QueueStats:
        with self._changed:
            return QueueStats(
                self._running, len(self._line), self.max_waiting, self._served, self._refused
            )

    def _grant(self) -> None:
        # Called with the lock held: hand free slots to the oldest tickets in line.
        while self._line and self._running < self.slots:
            ticket = self._line.popleft()
            ticket.granted = True
            self._running += 1
            self._served += 1
        self._changed.notify_all()

    def _wait(self, ticket: Ticket, stop: threading.Event | None) -> bool:
        with self._changed:
            while not ticket.granted and not ticket.released:
                if stop is not None and stop.is_set():
                    self._release_locked(ticket)
                    return False
                # An Event cannot wake a Condition: with a stop to watch, look every STOP_POLL.
                self._changed.wait(None if stop is None else STOP_POLL)
            return ticket.granted and not ticket.released

    def _withdraw(self, ticket: Ticket) -> None:
        with self._changed:
            if not ticket.granted:
                self._release_locked(ticket)

    def _release(self, ticket: Ticket) -> None:
        with self._changed:
            self._release_locked(ticket)

    def _release_locked(self, ticket: Ticket) -> None:
        if ticket.released:
            return
        ticket.released = True
        if ticket.granted:
            self._running -= 1
        else:
            self._line.remove(ticket)
        self._grant()
