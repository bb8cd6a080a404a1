"""Medians, percentiles and ratios: the only figures the suite quotes."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in 0..100."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


@dataclass
class Series:
    """One system's figures in one scenario.

    ``rounds``: one figure per round (throughput, memory); ``samples``: every sample of every
    round (latencies). The median and p99 come from the samples when there are any.
    """

    system: str
    rounds: list[float] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)
    error: str | None = None

    def values(self) -> list[float]:
        return self.samples or self.rounds

    def median(self) -> float:
        values = self.values()
        return statistics.median(values) if values else float("nan")

    def p99(self, higher_is_better: bool) -> float:
        """The 99th percentile on the bad side: p1 of a throughput, p99 of a latency."""
        return percentile(self.values(), 1.0 if higher_is_better else 99.0)


def ratio(ours: float, theirs: float, higher_is_better: bool) -> float:
    """How many times better ``ours`` is (> 1: better), whatever the direction of the unit."""
    if not ours or not theirs or math.isnan(ours) or math.isnan(theirs):
        return float("nan")
    return ours / theirs if higher_is_better else theirs / ours
