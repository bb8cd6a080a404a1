"""A clock that moves only when told to."""

from __future__ import annotations


class FakeClock:
    """Monotonic seconds under test control: pass ``clock.now`` wherever the core wants time."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            msg = "a monotonic clock does not go back"
            raise ValueError(msg)
        self.now += seconds
        return self.now

    def __call__(self) -> float:
        return self.now
