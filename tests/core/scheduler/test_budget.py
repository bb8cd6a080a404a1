"""The byte budget's rules, on the budget alone: when a stream pauses, where it resumes, and
how a DISCONNECT stream's grace clock runs."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from diaproto.config import SchedulerConfig
from diaproto.metrics import StreamMetrics
from diaproto.scheduler import Policy, StreamOptions
from diaproto.scheduler._types import StreamRecord
from diaproto.scheduler.budget import RESUME_FRACTION, Budget, resume_point

CONFIG = SchedulerConfig(high_watermark=1000, low_watermark=500, max_buffered=2000)


def record(
    policy: Policy = Policy.PAUSE, limit: int = 400, grace: float = 1.0
) -> StreamRecord[str]:
    options: StreamOptions[str] = StreamOptions(policy=policy, limit=limit, grace=grace)
    return StreamRecord(
        stream_id=1,
        options=options,
        policy=policy,
        limit=limit,
        resume_at=resume_point(limit),
        recorder=None,
        lingering=True,
        credit=None,
        metrics=StreamMetrics(opened_at=0.0),
        next_seq=1,
    )


def holding(budget: Budget, stream: StreamRecord[str], nbytes: int) -> None:
    stream.queued_bytes += nbytes
    budget.queued += nbytes


class TestResumePoint:
    def test_a_quarter_of_the_share(self) -> None:
        assert Fraction(1, 4) == RESUME_FRACTION
        assert resume_point(400) == 100
        assert resume_point(3) == 0

    @given(st.integers(1, 2**62))
    def test_exact_for_any_share(self, limit: int) -> None:
        assert resume_point(limit) == limit // 4


class TestPause:
    def test_over_its_share_pauses_once(self) -> None:
        budget, stream = Budget(CONFIG), record(limit=400)
        holding(budget, stream, 400)
        assert not budget.check(stream, 0.0)
        holding(budget, stream, 1)
        assert budget.check(stream, 0.0)
        assert stream.paused
        assert not budget.check(stream, 0.0)  # already paused: nothing new to say

    def test_the_connection_over_its_high_mark_pauses_a_stream_within_its_share(self) -> None:
        budget, stream = Budget(CONFIG), record(limit=400)
        holding(budget, stream, 100)
        budget.set_in_flight(901)
        assert budget.check(stream, 0.0)

    def test_resumes_at_the_resume_point_with_the_connection_at_its_low_mark(self) -> None:
        budget, stream = Budget(CONFIG), record(limit=400)
        holding(budget, stream, 401)
        budget.check(stream, 0.0)
        budget.set_in_flight(400)
        holding(budget, stream, -300)  # 101 queued: above the resume point of 100
        assert not budget.release(stream)
        holding(budget, stream, -1)  # 100 queued, 500 buffered: both at their marks
        assert budget.release(stream)
        assert not stream.paused

    def test_no_resume_while_the_connection_is_above_its_low_mark(self) -> None:
        budget, stream = Budget(CONFIG), record(limit=400)
        holding(budget, stream, 401)
        budget.check(stream, 0.0)
        holding(budget, stream, -401)
        budget.set_in_flight(501)
        assert not budget.release(stream)
        budget.set_in_flight(500)
        assert budget.release(stream)


class TestGrace:
    def test_the_clock_runs_while_over_the_share_and_stops_within_it(self) -> None:
        budget, stream = Budget(CONFIG), record(Policy.DISCONNECT, limit=100, grace=2.0)
        holding(budget, stream, 101)
        assert not budget.check(stream, 5.0)  # a DISCONNECT stream is never paused
        assert Budget.grace_deadline([stream]) == 7.0
        budget.check(stream, 6.0)
        assert Budget.grace_deadline([stream]) == 7.0  # started once, not restarted
        assert Budget.out_of_grace([stream], 6.9) == []
        assert Budget.out_of_grace([stream], 7.0) == [stream]
        holding(budget, stream, -1)
        budget.release(stream)
        assert Budget.grace_deadline([stream]) is None

    def test_within_its_share_whatever_the_connection_holds(self) -> None:
        budget, stream = Budget(CONFIG), record(Policy.DISCONNECT, limit=100)
        holding(budget, stream, 100)
        budget.set_in_flight(1900)
        budget.check(stream, 0.0)
        assert stream.over_since is None

    def test_declared_slow_once(self) -> None:
        budget, stream = Budget(CONFIG), record(Policy.DISCONNECT, limit=100)
        holding(budget, stream, 101)
        budget.check(stream, 0.0)
        assert Budget.declare_slow(stream)
        assert not Budget.declare_slow(stream)
        assert Budget.grace_deadline([stream]) is None
        assert Budget.out_of_grace([stream], 100.0) == []


def test_room_is_what_the_hard_budget_leaves() -> None:
    budget, stream = Budget(CONFIG), record()
    holding(budget, stream, 300)
    budget.set_in_flight(200)
    assert budget.buffered == 500
    assert budget.room() == 1500
