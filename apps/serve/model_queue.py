"""Turns at a model that runs one generation at a time: first come, first served, bounded.

A GPU holds one Dia generation at a time (``slots=1``). A request is first *admitted*
(:meth:`ModelQueue.admit`), which is where the bound is: at most ``max_requests`` requests
are in progress at once (running, waiting for a turn, or between turns: paused by their
client, or playing what was generated), and past it a new one is refused at once
(:class:`ModelBusy`, before anything was sent). An admitted request then takes a
:class:`Ticket` per generation call; a request with several sentences queues again for each,
so concurrent requests take turns rather than one long text holding the model to its end,
and a request once admitted is never refused halfway.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

DEFAULT_MAX_REQUESTS = 32
STOP_POLL = 0.05  # seconds between looks at a waiting request's stop signal


class ModelBusy(RuntimeError):
    """The model has as many requests in progress as it takes."""


@dataclass(frozen=True)
class QueueStats:
    running: int  # turns being served
    waiting: int  # tickets in line
    admitted: int  # requests in progress (running, waiting, or between turns)
    max_requests: int
    served: int  # turns granted since start
    refused: int  # requests turned away because max_requests were in progress


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


class Admission:
    """One request's right to turns at the model, from admission to :meth:`close`."""

    def __init__(self, queue: ModelQueue) -> None:
        self._queue = queue
        self.closed = False

    def join(self) -> Ticket:
        """A place at the end of the line (never refused: the request was admitted)."""
        if self.closed:
            raise RuntimeError("this request's admission is closed")
        return self._queue._join()

    def close(self) -> None:
        """The request is done with the model; safe to call more than once."""
        self._queue._close(self)

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ModelQueue:
    def __init__(self, *, slots: int = 1, max_requests: int = DEFAULT_MAX_REQUESTS) -> None:
        if slots < 1 or max_requests < 1:
            raise ValueError("slots and max_requests must be at least 1")
        self.slots = slots
        self.max_requests = max_requests
        self._changed = threading.Condition()
        self._line: deque[Ticket] = deque()
        self._running = 0
        self._admitted = 0
        self._served = 0
        self._refused = 0

    def admit(self) -> Admission:
        """Take on a request, or raise :class:`ModelBusy` if ``max_requests`` are in progress."""
        with self._changed:
            if self._admitted >= self.max_requests:
                self._refused += 1
                raise ModelBusy(
                    f"the model is busy: {self._admitted} requests are in progress "
                    f"(limit {self.max_requests}); try again shortly"
                )
            self._admitted += 1
            return Admission(self)

    def stats(self) -> QueueStats:
        with self._changed:
            return QueueStats(
                self._running,
                len(self._line),
                self._admitted,
                self.max_requests,
                self._served,
                self._refused,
            )

    def _join(self) -> Ticket:
        with self._changed:
            ticket = Ticket(self)
            self._line.append(ticket)
            self._grant()
            return ticket

    def _close(self, admission: Admission) -> None:
        with self._changed:
            if not admission.closed:
                admission.closed = True
                self._admitted -= 1

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
