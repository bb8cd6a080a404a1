"""MCP Streamable HTTP sessions on two workers sharing one real Valkey: a session made on one
worker serves requests on the other (the failure users of the MCP SDKs meet behind a balancer
is a 404 there); what cannot move (a call's stream) is refused explicitly; a session nobody
has is 404 everywhere, and a store that does not answer is a 503."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import POLL_LIMIT, initialize, rpc, session, wait_until
from valkey_server import ValkeyServer, valkey_server
from worker_support import Worker, shared_workers


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    with valkey_server(tmp_path) as server:
        yield server


@pytest.fixture
def workers(valkey: ValkeyServer) -> Iterator[tuple[Worker, Worker]]:
    with shared_workers(valkey.url, "mcp-a", "mcp-b") as (a, b):
        yield a, b


def mcp(worker: Worker) -> str:
    return f"{worker.app.url}/mcp"


def saved(worker: Worker, session_id: str, text: str = '"ready"') -> bool:
    """Whether ``worker`` holds the session and has saved state with ``text`` in it."""
    peer = worker.call(lambda: worker.service.mcp.sessions.get(session_id, 0.0))
    return peer is not None and text in peer.saved_state


def test_a_session_made_on_one_worker_serves_requests_on_the_other(
    workers: tuple[Worker, Worker],
) -> None:
    a, b = workers
    with httpx.Client(trust_env=False, timeout=POLL_LIMIT) as http:
        session_id = initialize(http, mcp(a))
        wait_until(lambda: saved(a, session_id), "worker a kept the ready session in Valkey")
        level = http.post(
            mcp(a), json=rpc("logging/setLevel", {"level": "warning"}), headers=session(session_id)
        )
        assert level.status_code == 200, level.text
        wait_until(lambda: saved(a, session_id, '"warning"'), "worker a kept the log level")
        listed = http.post(mcp(b), json=rpc("tools/list"), headers=session(session_id))
        assert listed.status_code == 200, listed.text
        names = {tool["name"] for tool in listed.json()["result"]["tools"]}
        assert "speak" in names
        adopted = b.call(lambda: b.service.mcp.sessions.get(session_id, 0.0))
        assert adopted is not None, "worker b holds the session now, under the same id"
        assert b.call(lambda: adopted.session.log_level) == "warning"
        assert b.call(lambda: adopted.session.client_info["name"]) == "diaproto-tests"
        # A resume of a stream worker a sent is not something b can honour: said so.
        resumed = http.get(mcp(b), headers={**session(session_id), "last-event-id": "s1.3"})
        assert resumed.status_code == 400
        assert "unknown event id" in resumed.text
        # Ended on b: gone from the store, so a third worker would not find it.
        assert http.delete(mcp(b), headers=session(session_id)).status_code == 204
        wait_until(lambda: not _in_store(b, session_id), "the store forgot the session")


def test_a_session_nobody_has_is_404_on_every_worker(workers: tuple[Worker, Worker]) -> None:
    _, b = workers
    with httpx.Client(trust_env=False, timeout=POLL_LIMIT) as http:
        answer = http.post(mcp(b), json=rpc("tools/list"), headers=session("ab" * 16))
    assert answer.status_code == 404


def test_a_store_that_does_not_answer_is_a_503(
    workers: tuple[Worker, Worker], valkey: ValkeyServer
) -> None:
    _, b = workers
    valkey.kill()
    with httpx.Client(trust_env=False, timeout=POLL_LIMIT) as http:
        answer = http.post(mcp(b), json=rpc("tools/list"), headers=session("cd" * 16))
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"


def _in_store(worker: Worker, session_id: str) -> bool:
    import redis  # noqa: PLC0415

    from diaproto.cluster import keys  # noqa: PLC0415

    with redis.Redis.from_url(worker.journal.url) as client:
        return bool(client.exists(keys.session(session_id)))
