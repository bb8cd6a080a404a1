"""Where a Streamable HTTP session keeps what it sent, so a client can resume a stream.

Event ids encode their stream (``<stream>.<n>``), are unique within the session, and are
assigned in the order events leave the server (see ``ServerConnection.accept_sse``'s
``stamp``), so "everything after id X" is exact even when priorities reorder messages.
:meth:`EventStore.replay_after` returns only the named stream's events: a resume never
crosses into another stream. The store is bounded per stream; a resume from an id that has
been evicted is a gap and is refused rather than answered with holes.

:class:`MemoryEventStore` is the default; anything with the same three methods (a Redis
stream, a database table) can take its place.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from diaproto.errors import DiaprotoError, LocalProtocolError


class ReplayRefused(DiaprotoError):
    """The id is unknown here, or older than what the store still holds."""


class EventStore(Protocol):
    def store(self, stream: str, message: str) -> str:
        """Record one message of ``stream``; return its event id."""
        ...

    def replay_after(self, event_id: str) -> tuple[str, list[tuple[str, str]]]:
        """``(stream, [(id, message), ...])`` sent on that stream after ``event_id``.

        Raises :class:`ReplayRefused` for an unknown id or a gap."""
        ...

    def forget(self, stream: str) -> None:
        """The stream is complete and acknowledged (or its session ended): free it."""
        ...


@dataclass(slots=True)
class _Log:
    first: int = 1  # the number of the oldest event still held
    events: deque[str] = field(default_factory=deque)
    size: int = 0


class MemoryEventStore:
    """In memory, per session: at most ``max_events`` and ``max_bytes`` per stream, and at
    most ``max_streams`` streams (the oldest is forgotten first)."""

    def __init__(
        self, *, max_events: int = 4096, max_bytes: int = 8 << 20, max_streams: int = 64
    ) -> None:
        if min(max_events, max_bytes, max_streams) <= 0:
            raise LocalProtocolError("event store bounds must be positive")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_streams = max_streams
        self._logs: dict[str, _Log] = {}

    def store(self, stream: str, message: str) -> str:
        if "." in stream or not stream:
            raise LocalProtocolError("a stream name is non-empty and has no '.'")
        log = self._logs.get(stream)
        if log is None:
            while len(self._logs) >= self.max_streams:
                del self._logs[next(iter(self._logs))]
            log = self._logs[stream] = _Log()
        log.events.append(message)
        log.size += len(message)
        while len(log.events) > self.max_events or (
            log.size > self.max_bytes and len(log.events) > 1
        ):
            log.size -= len(log.events.popleft())
            log.first += 1
        return f"{stream}.{log.first + len(log.events) - 1}"

    def replay_after(self, event_id: str) -> tuple[str, list[tuple[str, str]]]:
        stream, _, number = event_id.rpartition(".")
        log = self._logs.get(stream)
        # ASCII digits only ("²" is a digit to str.isdigit), and few enough for int().
        if log is None or not (number.isascii() and number.isdigit()) or len(number) > 20:
            raise ReplayRefused(f"unknown event id {event_id!r}")
        after = int(number)
        last = log.first + len(log.events) - 1
        if after > last:
            raise ReplayRefused(f"event id {event_id!r} was never sent")
        if after < log.first - 1:
            raise ReplayRefused(f"events after {event_id!r} are no longer held")
        skip = after - log.first + 1
        return stream, [
            (f"{stream}.{log.first + index}", message)
            for index, message in enumerate(log.events)
            if index >= skip
        ]

    def forget(self, stream: str) -> None:
        self._logs.pop(stream, None)

    def __len__(self) -> int:
        return len(self._logs)
