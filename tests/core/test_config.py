"""Settings refuse inconsistent values at construction, not at the first busy moment."""

from __future__ import annotations

import pytest

from diaproto import ConnectionConfig, SchedulerConfig


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"low_watermark": 2, "high_watermark": 1}, "low_watermark <= high_watermark"),
        ({"high_watermark": 10, "max_buffered": 5, "low_watermark": 1}, "max_buffered"),
        ({"low_watermark": -1}, "0 <= low_watermark"),
        ({"batch_bytes": 0}, "must be positive"),
        ({"quantum": 0}, "must be positive"),
        ({"write_window": 0}, "must be positive"),
        ({"linger": -0.001}, "linger must not be negative"),
        ({"max_buffered": 0, "high_watermark": 0, "low_watermark": 0}, "max_buffered must be"),
    ],
)
def test_scheduler_config_rejects_inconsistent_values(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SchedulerConfig(**kwargs)  # type: ignore[arg-type]


def test_defaults_are_consistent_and_frozen() -> None:
    config = ConnectionConfig()
    s = config.scheduler
    assert 0 <= s.low_watermark <= s.high_watermark <= s.max_buffered
    with pytest.raises(AttributeError):
        config.sse_retry_ms = 5  # type: ignore[misc]


@pytest.mark.parametrize("size", [0, -1])
def test_send_buffer_must_be_positive(size: int) -> None:
    with pytest.raises(ValueError, match="send_buffer must be positive"):
        ConnectionConfig(send_buffer=size)


def test_send_buffer_defaults_to_the_kernels() -> None:
    assert ConnectionConfig().send_buffer is None
    assert ConnectionConfig(send_buffer=32 * 1024).send_buffer == 32 * 1024
