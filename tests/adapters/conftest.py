"""The conformance suite runs every test on every runtime: asyncio and trio (the anyio
adapter), tornado and sockets. A runtime whose adapter does not import yet is skipped with
the reason (see ``conformance_support.start_server``)."""

from __future__ import annotations

import pytest
from conformance_support import RUNTIMES


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name
