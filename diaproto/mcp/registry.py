"""Streamable HTTP sessions by id, with idle expiry driven by the caller's clock.

Ids are 32 hex characters from :mod:`secrets` (visible ASCII, 128 bits): unguessable, so a
session id is a capability. A session is registered only once its ``initialize`` has been
answered successfully (a refused request leaves nothing behind), and leaves on DELETE, on
expiry, on eviction, or when the server stops. Expiry skips sessions the caller reports busy
(an open stream, a call in flight): idle means nobody is using it.

The table is bounded in all and per owner (a peer address). :meth:`SessionRegistry.make_room`
is asked before a session is added: past a bound it evicts idle sessions, never-used ones
first (an ``initialize`` and nothing since: what a flood leaves), then the least recently
active, so one client filling the table costs only its own idle sessions, not newcomers
their access. Busy sessions are never evicted; when only those remain, the newcomer is
refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from diaproto.errors import LocalProtocolError

T = TypeVar("T")


def new_session_id() -> str:
    return secrets.token_hex(16)


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T
    last_active: float
    owner: str = ""
    used: bool = False  # a request or stream since initialize


@dataclass(slots=True)
class Room(Generic[T]):
    """What :meth:`SessionRegistry.make_room` did: the sessions it evicted (the caller ends
    them), or why there is no room (``"owner"``: that owner's bound; ``"full"``: the table)."""

    evicted: list[T] = field(default_factory=list)
    refused: Literal["owner", "full"] | None = None


class SessionRegistry(Generic[T]):
    def __init__(
        self,
        idle_timeout: float,
        *,
        max_sessions: int = 10_000,
        max_per_owner: int | None = None,
        new_id: Callable[[], str] = new_session_id,
    ) -> None:
        if idle_timeout <= 0:
            raise LocalProtocolError("idle_timeout must be positive")
        if max_sessions <= 0 or (max_per_owner is not None and max_per_owner <= 0):
            raise LocalProtocolError("session bounds must be positive")
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.max_per_owner = max_per_owner
        self._new_id = new_id
        self._entries: dict[str, _Entry[T]] = {}  # oldest first
        self._owned: dict[str, dict[str, None]] = {}  # owner -> its session ids, oldest first

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._entries

    @property
    def full(self) -> bool:
        return len(self._entries) >= self.max_sessions

    def owned(self, owner: str) -> int:
        """How many sessions ``owner`` holds."""
        return len(self._owned.get(owner, ()))

    def make_room(self, owner: str, busy: Callable[[T], bool]) -> Room[T]:
        """Make room for one more session of ``owner``, evicting idle sessions if a bound is
        reached (first that owner's, then anyone's); nothing is evicted when that would
        still leave no room."""
        room: Room[T] = Room()
        if self.max_per_owner is not None and self.owned(owner) >= self.max_per_owner:
            # add() never lets a bound be passed, so one eviction always makes room.
            victim = self._victim(self._owned[owner], busy)
            if victim is None:
                return Room(refused="owner")
            room.evicted.append(self._pop(victim))
        if len(self._entries) >= self.max_sessions:
            victim = self._victim(self._entries, busy)
            if victim is None:
                return Room(room.evicted, refused="full")
            room.evicted.append(self._pop(victim))
        return room

    def _victim(self, session_ids: Iterable[str], busy: Callable[[T], bool]) -> str | None:
        """The idle session to evict: the oldest never used, else the least recently active
        (oldest first among equals); None if every session is busy."""
        least_recent: tuple[float, int, str] | None = None
        for order, session_id in enumerate(session_ids):
            entry = self._entries[session_id]
            if busy(entry.value):
                continue
            if not entry.used:
                return session_id  # ids are iterated oldest first
            candidate = (entry.last_active, order, session_id)
            if least_recent is None or candidate < least_recent:
                least_recent = candidate
        return None if least_recent is None else least_recent[2]

    def add(self, value: T, now: float, *, owner: str = "", session_id: str | None = None) -> str:
        """Register a session; returns its new id (or ``session_id``: a session another
        process made, adopted here). Call :meth:`make_room` first: a full table (or owner)
        raises, and so does an id already registered."""
        if self.full or (
            self.max_per_owner is not None and self.owned(owner) >= self.max_per_owner
        ):
            raise LocalProtocolError("too many sessions")
        if session_id is not None and session_id in self._entries:
            raise LocalProtocolError("that session id is registered already")
        session_id = session_id or self._new_id()
        while session_id in self._entries:  # only a broken id source repeats itself
            session_id = self._new_id()
        self._entries[session_id] = _Entry(value, now, owner)
        self._owned.setdefault(owner, {})[session_id] = None
        return session_id

    def get(self, session_id: str, now: float) -> T | None:
        """The session, marked active (and used) now; None if unknown or ended."""
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        entry.last_active = max(entry.last_active, now)
        entry.used = True
        return entry.value

    def remove(self, session_id: str) -> T | None:
        return self._pop(session_id) if session_id in self._entries else None

    def _pop(self, session_id: str) -> T:
        entry = self._entries.pop(session_id)
        mine = self._owned[entry.owner]
        del mine[session_id]
        if not mine:
            del self._owned[entry.owner]
        return entry.value

    def expire(self, now: float, busy: Callable[[T], bool]) -> list[T]:
        """Remove and return the sessions idle for longer than the timeout."""
        expired: list[T] = []
        for session_id, entry in list(self._entries.items()):
            if busy(entry.value):
                entry.last_active = now  # in use counts as activity
            elif now - entry.last_active >= self.idle_timeout:
                expired.append(self._pop(session_id))
        return expired

    def next_deadline(self) -> float | None:
        """When the next session could expire (call :meth:`expire` then)."""
        if not self._entries:
            return None
        return min(entry.last_active for entry in self._entries.values()) + self.idle_timeout
