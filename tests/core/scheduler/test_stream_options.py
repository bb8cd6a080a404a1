"""The options a stream is opened with: checked when built, and the same names and defaults
wherever a stream is opened."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from diaproto.errors import LocalProtocolError
from diaproto.scheduler import Policy, Priority, Scheduler, StreamOptions
from diaproto.server import ServerConnection


def test_defaults() -> None:
    options: StreamOptions[str] = StreamOptions()
    assert options == StreamOptions(
        priority=Priority.STREAM,
        policy=Policy.PAUSE,
        limit=None,
        credit=None,
        grace=5.0,
        replay=None,
        record=True,
    )


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_is_refused_when_the_options_are_built(limit: int) -> None:
    with pytest.raises(LocalProtocolError, match="limit must be positive"):
        StreamOptions(limit=limit)


def test_a_priority_given_as_a_number_becomes_its_class() -> None:
    options: StreamOptions[str] = StreamOptions(priority=1)  # type: ignore[arg-type]
    assert options.priority is Priority.INTERACTIVE


def test_frozen() -> None:
    options: StreamOptions[str] = StreamOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.limit = 5  # type: ignore[misc]


def test_one_options_object_opens_several_streams() -> None:
    scheduler: Scheduler[str] = Scheduler()
    shared: StreamOptions[str] = StreamOptions(policy=Policy.LATEST, limit=10)
    scheduler.open_stream(1, 0.0, shared)
    scheduler.open_stream(2, 0.0, shared)
    scheduler.enqueue(1, "a", 8, 0.0, key="k")
    scheduler.enqueue(2, "b", 8, 0.0, key="k")
    assert scheduler.queued_bytes(1) == scheduler.queued_bytes(2) == 8


def test_the_server_takes_the_same_options_with_the_same_defaults() -> None:
    parameters = inspect.signature(ServerConnection.open_stream).parameters
    for option in dataclasses.fields(StreamOptions):
        parameter = parameters[option.name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, option.name
        assert parameter.default == option.default, option.name
