"""The conformance suite runs every test on every runtime: asyncio, anyio and trio (the anyio
adapter), tornado and sockets; an adapter that fails to import is a failure. Behaviours that
each loop implements on its own (stopping, workers) also run on asyncio with uvloop."""

from __future__ import annotations

import pytest
from conformance_support import RUNTIMES


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(params=[*RUNTIMES, "asyncio+uvloop"])
def runtime_or_uvloop(request: pytest.FixtureRequest) -> str:
    """Every runtime, and the asyncio adapter on uvloop (``support.start`` reads the name)."""
    name: str = request.param
    return name
