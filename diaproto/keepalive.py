"""Heartbeat and timeout bookkeeping of one WebSocket, by the caller's clock.

The connection asks :meth:`Keepalive.due` what to do at ``now``; the adapter only re-arms a
timer at :meth:`Keepalive.deadline`. Any byte from the peer counts as a sign of life; only
messages (not pings) count as activity, so heartbeats alone do not keep a forgotten
connection open past the idle timeout.
"""

from __future__ import annotations

from enum import Enum

from diaproto.config import Timeouts


class Due(Enum):
    NOTHING = "nothing"
    SEND_PING = "send_ping"
    PING_TIMEOUT = "ping_timeout"  # the peer is dead: close 1011
    IDLE_TIMEOUT = "idle_timeout"  # nothing either way for too long: close 1000
    CLOSE_TIMEOUT = "close_timeout"  # our close frame went unanswered: drop the transport


class Keepalive:
    def __init__(self, timeouts: Timeouts, now: float) -> None:
        self.timeouts = timeouts
        self.last_received = now
        self.last_activity = now
        self.ping_sent_at: float | None = None
        self.close_sent_at: float | None = None

    def on_receive(self, now: float) -> None:
        self.last_received = now
        self.ping_sent_at = None  # any byte answers the ping as well as a pong would

    def on_activity(self, now: float) -> None:
        """A message went either way."""
        self.last_activity = now

    def on_ping_sent(self, now: float) -> None:
        self.ping_sent_at = now

    def on_close_sent(self, now: float) -> None:
        self.close_sent_at = now

    def deadline(self) -> float | None:
        t = self.timeouts
        candidates: list[float] = []
        if self.close_sent_at is not None:
            if t.close_timeout is not None:
                candidates.append(self.close_sent_at + t.close_timeout)
            return min(candidates) if candidates else None
        if self.ping_sent_at is not None:
            if t.ping_timeout is not None:
                candidates.append(self.ping_sent_at + t.ping_timeout)
        elif t.ping_interval is not None:
            candidates.append(self.last_received + t.ping_interval)
        if t.idle is not None:
            candidates.append(self.last_activity + t.idle)
        return min(candidates) if candidates else None

    def due(self, now: float) -> Due:
        t = self.timeouts
        if self.close_sent_at is not None:
            if t.close_timeout is not None and now >= self.close_sent_at + t.close_timeout:
                return Due.CLOSE_TIMEOUT
            return Due.NOTHING
        if t.idle is not None and now >= self.last_activity + t.idle:
            return Due.IDLE_TIMEOUT
        if self.ping_sent_at is not None:
            if t.ping_timeout is not None and now >= self.ping_sent_at + t.ping_timeout:
                return Due.PING_TIMEOUT
        elif t.ping_interval is not None and now >= self.last_received + t.ping_interval:
            return Due.SEND_PING
        return Due.NOTHING
