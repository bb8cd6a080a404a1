"""A short run of every fuzz target (``fuzz/targets_*.py``), and the harness's own rules."""

from __future__ import annotations

import pytest

from diaproto.errors import LocalProtocolError, RemoteProtocolError
from diaproto.wire import WireError
from fuzz.__main__ import main
from fuzz.harness import (
    TARGETS,
    FuzzFailure,
    Target,
    check,
    load_targets,
    run_hypothesis,
    target,
)

ALL_TARGETS = load_targets()


def test_codec_targets_are_registered() -> None:
    assert {"wire_text", "wire_records", "sse_parser"} <= set(ALL_TARGETS)


def test_mcp_targets_are_registered() -> None:
    assert {"mcp_jsonrpc", "mcp_session", "mcp_http"} <= set(ALL_TARGETS)


@pytest.mark.fuzz
@pytest.mark.parametrize("name", sorted(ALL_TARGETS))
def test_target_smoke(name: str) -> None:
    stats = run_hypothesis(ALL_TARGETS[name], max_examples=200)
    assert stats.examples == 200


@pytest.mark.parametrize("name", sorted(ALL_TARGETS))
def test_target_seeds_obey_the_rule(name: str) -> None:
    for seed in ALL_TARGETS[name].seeds:
        check(ALL_TARGETS[name], seed)


def _raising(error: BaseException) -> Target:
    def function(data: bytes) -> None:
        if data:
            raise error

    return Target("raises", function)


@pytest.mark.parametrize(
    "error", [RemoteProtocolError("bad"), WireError("bad_message", "bad")], ids=repr
)
def test_documented_exceptions_are_allowed(error: BaseException) -> None:
    check(_raising(error), b"x")


@pytest.mark.parametrize(
    "error", [ValueError("boom"), LocalProtocolError("misuse"), AssertionError()], ids=repr
)
def test_any_other_exception_is_a_failure_with_the_input(error: BaseException) -> None:
    with pytest.raises(FuzzFailure) as info:
        check(_raising(error), b"\x00\xff")
    assert info.value.data == b"\x00\xff"
    assert info.value.error is error
    assert "input (hex): 00ff" in info.value.report()


def test_hypothesis_run_finds_and_shrinks_a_failure() -> None:
    def function(data: bytes) -> None:
        if b"\x07" in data:
            raise KeyError("found")

    with pytest.raises(FuzzFailure) as info:
        run_hypothesis(Target("needle", function), max_examples=2000)
    assert info.value.data == b"\x07"  # shrunk to the minimal input


def test_timed_run_repeats_rounds_until_the_time_is_up() -> None:
    ticks = iter(float(n) for n in range(1000))
    stats = run_hypothesis(
        Target("noop", lambda data: None), seconds=5.5, max_examples=10, clock=lambda: next(ticks)
    )
    assert len(stats.rounds) > 1
    assert stats.examples == sum(stats.rounds)
    assert stats.seconds >= 5.5


def test_a_name_registers_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fuzz.harness.TARGETS", dict(TARGETS))

    @target("twice")
    def first(data: bytes) -> None: ...

    with pytest.raises(ValueError, match="twice"):

        @target("twice")
        def second(data: bytes) -> None: ...


def test_cli_lists_targets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    assert capsys.readouterr().out.split() == sorted(ALL_TARGETS)


def test_cli_refuses_an_unknown_target() -> None:
    with pytest.raises(SystemExit) as info:
        main(["--target", "nope", "--seconds", "1"])
    assert info.value.code == 2


def test_cli_runs_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--target", "wire_records", "--seconds", "0.2"]) == 0
    assert "wire_records:" in capsys.readouterr().out


def test_cli_reports_a_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(data: bytes) -> None:
        raise RuntimeError("always")

    monkeypatch.setitem(TARGETS, "broken", Target("broken", broken))
    assert main(["--target", "broken", "--seconds", "0.2"]) == 1
    err = capsys.readouterr().err
    assert "input (hex): " in err
    assert "RuntimeError: always" in err


def test_cli_atheris_engine_needs_atheris(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(SystemExit) as info:
        main(["--engine", "atheris", "--seconds", "1"])
    assert info.value.code == 2
