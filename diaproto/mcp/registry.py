"""Streamable HTTP sessions by id, with idle expiry driven by the caller's clock.

Ids are 32 hex characters from :mod:`secrets` (visible ASCII, 128 bits): unguessable, so a
session id is a capability. A session is registered only once its ``initialize`` has been
answered successfully (a refused request leaves nothing behind), and leaves on DELETE, on
expiry, or when the server stops. Expiry skips sessions the caller reports busy (an open
stream, a call in flight): idle means nobody is using it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from diaproto.errors import LocalProtocolError

T = TypeVar("T")


def new_session_id() -> str:
    return secrets.token_hex(16)


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T
    last_active: float


class SessionRegistry(Generic[T]):
    def __init__(
        self,
        idle_timeout: float,
        *,
        max_sessions: int = 10_000,
        new_id: Callable[[], str] = new_session_id,
    ) -> None:
        if idle_timeout <= 0:
            raise LocalProtocolError("idle_timeout must be positive")
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self._new_id = new_id
        self._entries: dict[str, _Entry[T]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    @property
    def full(self) -> bool:
        return len(self._entries) >= self.max_sessions

    def add(self, value: T, now: float) -> str:
        """Register a session; returns its new id."""
        if self.full:
            raise LocalProtocolError("too many sessions")
        session_id = self._new_id()
        while session_id in self._entries:  # only a broken id source repeats itself
            session_id = self._new_id()
        self._entries[session_id] = _Entry(value, now)
        return session_id

    def get(self, session_id: str, now: float) -> T | None:
        """The session, marked active now; None if unknown or ended."""
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        entry.last_active = max(entry.last_active, now)
        return entry.value

    def remove(self, session_id: str) -> T | None:
        entry = self._entries.pop(session_id, None)
        return None if entry is None else entry.value

    def expire(self, now: float, busy: Callable[[T], bool]) -> list[T]:
        """Remove and return the sessions idle for longer than the timeout."""
        expired: list[T] = []
        for session_id, entry in list(self._entries.items()):
            if busy(entry.value):
                entry.last_active = now  # in use counts as activity
            elif now - entry.last_active >= self.idle_timeout:
                del self._entries[session_id]
                expired.append(entry.value)
        return expired

    def next_deadline(self) -> float | None:
        """When the next session could expire (call :meth:`expire` then)."""
        if not self._entries:
            return None
        return min(entry.last_active for entry in self._entries.values()) + self.idle_timeout
