"""The fuzz target registry, the one rule every target obeys, and the two engines.

A target is a function taking ``bytes``. The rule: it may raise only the documented
exceptions (:class:`~diaproto.errors.RemoteProtocolError` and its subclasses, such as
:class:`~diaproto.wire.WireError`): what a peer's garbage is allowed to cause. Anything
else (an ``AssertionError`` from a target's own consistency check included) is a failure,
reported with the input in hex.

Targets register with ``@target("name")`` in a ``fuzz/targets_*.py`` module;
:func:`load_targets` imports every such module, so a new file needs no other wiring.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from diaproto.errors import RemoteProtocolError

TargetFunction = Callable[[bytes], None]

#: Exceptions a target may raise: the peer sent garbage and the code said so.
ALLOWED: tuple[type[BaseException], ...] = (RemoteProtocolError,)


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    function: TargetFunction
    seeds: tuple[bytes, ...] = ()  # known-interesting inputs that mutations start from


TARGETS: dict[str, Target] = {}


def target(name: str, *, seeds: Sequence[bytes] = ()) -> Callable[[TargetFunction], TargetFunction]:
    """Register a fuzz target under ``name``; ``seeds`` are valid or near-valid inputs."""

    def register(function: TargetFunction) -> TargetFunction:
        if name in TARGETS:
            msg = f"fuzz target {name!r} is registered twice"
            raise ValueError(msg)
        TARGETS[name] = Target(name, function, tuple(seeds))
        return function

    return register


def load_targets() -> dict[str, Target]:
    """Import every ``fuzz/targets_*.py`` module (each registers its targets) once."""
    folder = Path(__file__).parent
    for module in sorted(pkgutil.iter_modules([str(folder)]), key=lambda m: m.name):
        if module.name.startswith("targets_"):
            importlib.import_module(f"{__package__}.{module.name}")
    return TARGETS


class FuzzFailure(Exception):
    """A target raised something the rule does not allow."""

    def __init__(self, name: str, data: bytes, error: BaseException) -> None:
        super().__init__(f"{name}: {type(error).__name__}: {error}")
        self.name = name
        self.data = data
        self.error = error

    def report(self) -> str:
        trace = "".join(traceback.format_exception(self.error))
        return (
            f"fuzz target {self.name!r} failed on {len(self.data)} bytes\n"
            f"input (hex): {self.data.hex()}\n{trace}"
        )


def check(entry: Target, data: bytes) -> None:
    """Run one input; raise :class:`FuzzFailure` if the target breaks the rule."""
    try:
        entry.function(data)
    except ALLOWED:
        pass
    except Exception as exc:  # every other exception is the finding
        raise FuzzFailure(entry.name, data, exc) from exc


def _splice(seed: bytes, start: int, length: int, insert: bytes) -> bytes:
    start = min(start, len(seed))
    return seed[:start] + insert + seed[start + length :]


def inputs(entry: Target) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, and, when the target has seeds, seeds with a slice replaced."""
    arbitrary = st.binary(max_size=4096)
    if not entry.seeds:
        return arbitrary
    seeds = st.sampled_from(entry.seeds)
    # Replace a slice with a few random bytes, or with a long run of a short pattern (what
    # it takes to reach length limits, which random bytes seldom do).
    inserts = st.binary(max_size=16) | st.builds(
        bytes.__mul__, st.binary(min_size=1, max_size=4), st.integers(1, 2048)
    )
    mutated = st.builds(_splice, seeds, st.integers(0, 512), st.integers(0, 16), inserts)
    return st.one_of(arbitrary, seeds, mutated, st.builds(bytes.__add__, mutated, mutated))


@dataclass(slots=True)
class RunStats:
    name: str
    examples: int = 0
    seconds: float = 0.0
    rounds: list[int] = field(default_factory=list)


def run_hypothesis(
    entry: Target,
    *,
    seconds: float | None = None,
    max_examples: int = 200,
    clock: Callable[[], float] = time.monotonic,
) -> RunStats:
    """Feed the target hypothesis-generated inputs.

    With ``seconds`` None this is one run of ``max_examples`` (the test-suite smoke run).
    Otherwise runs repeat, each sized from the measured speed to fit the time left, until
    ``seconds`` have passed. A failure is shrunk by hypothesis and raised as
    :class:`FuzzFailure`.
    """
    stats = RunStats(entry.name)
    start = clock()
    budget = max_examples
    while True:
        round_start = clock()
        _one_round(entry, budget)
        stats.rounds.append(budget)
        stats.examples += budget
        now = clock()
        stats.seconds = now - start
        if seconds is None:
            return stats
        left = seconds - stats.seconds
        if left <= 0:
            return stats
        # Inputs grow as hypothesis explores, so take the slower of the last round's and the
        # overall rate, and plan for half the time left: the rounds converge on the end.
        per_example = max((now - round_start) / budget, stats.seconds / stats.examples, 1e-6)
        budget = max(10, min(100_000, int(0.5 * left / per_example)))


def _one_round(entry: Target, max_examples: int) -> None:
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        derandomize=False,
    )
    @given(inputs(entry))
    def one(data: bytes) -> None:
        check(entry, data)

    one()


def run_atheris(entry: Target, seconds: float, argv: Sequence[str] = ()) -> None:
    """Coverage-guided fuzzing of one target with atheris (libFuzzer). Never returns:
    libFuzzer exits the process when ``seconds`` are up or on the first failure."""
    import atheris  # noqa: PLC0415  (optional dependency: only this engine needs it)

    def one_input(data: bytes) -> None:
        try:
            check(entry, data)
        except FuzzFailure as failure:
            print(failure.report(), flush=True)
            raise

    atheris.instrument_all()
    atheris.Setup(["fuzz", f"-max_total_time={max(1, int(seconds))}", *argv], one_input)
    atheris.Fuzz()
