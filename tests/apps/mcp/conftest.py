"""The running ``diaproto serve`` the MCP service tests share, one per test module.

pytest puts this folder on ``sys.path`` when it loads this file, so the tests in
``transports/`` import ``mcp_service_support`` as the tests here do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_fixture import RunningServer, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running
