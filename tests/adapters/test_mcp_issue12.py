"""Issue 12's MCP findings on every runtime (asyncio, anyio, trio, tornado, sockets): the
service decides, but each adapter carries the concurrent POSTs, the SSE framing and the Host.

- a request reusing the id of a call in flight is refused on its own POST (400, -32600) and
  the call keeps its stream and its result;
- a stream carries one ``retry`` field;
- a doubled ``Mcp-Session-Id`` is 400;
- a result too long to inline (the SDK's 1 MiB event cap) is an absolute link that serves
  the WAV.

The sans-IO and single-runtime tests are in tests/apps/mcp/test_mcp_service.py,
tests/core/mcp/test_mcp_http.py and tests/core/mcp/test_mcp_store.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from support import POLL_LIMIT, fast_source, initialize, rpc, serving, session

from diaproto.apps.serve.app import DiaService

TEXT = " ".join(f"word{i}" for i in range(40))  # about 12 s of audio: 1 MB of WAV


def messages(lines: Iterator[str], fields: list[str]) -> Iterator[dict[str, Any]]:
    """The JSON-RPC messages of an SSE stream (one ``data`` line each, as diaproto sends
    them); every field name seen goes to ``fields``."""
    for line in lines:
        name, _, value = line.partition(":")
        if line:
            fields.append(name)
        if name == "data" and value.strip():
            yield json.loads(value)


def test_mcp_issue12(runtime: str) -> None:
    with serving(runtime, DiaService(fast_source())) as handle:
        base = f"http://127.0.0.1:{handle.port}"
        url = f"{base}/mcp"
        with httpx.Client(timeout=POLL_LIMIT) as client:
            session_id = initialize(client, url)
            call = rpc(
                "tools/call",
                {"name": "speak", "arguments": {"text": TEXT}, "_meta": {"progressToken": "p"}},
                7,
            )
            with client.stream("POST", url, json=call, headers=session(session_id)) as r:
                assert r.status_code == 200
                fields: list[str] = []
                stream = messages(r.iter_lines(), fields)
                first = next(stream)
                assert first["method"] == "notifications/progress", first
                again = client.post(url, json=rpc("ping", rid=7), headers=session(session_id))
                assert again.status_code == 400, again.text
                assert again.json()["error"]["code"] == -32600 and again.json()["id"] == 7
                result = next(m for m in stream if "id" in m)
            assert result["id"] == 7 and "result" in result, result
            assert fields.count("retry") == 1, fields[:5]
            link, _summary = result["result"]["content"]
            assert link["type"] == "resource_link"
            assert link["uri"].startswith(f"{base}/mcp/audio/")
            clip = client.get(link["uri"])
            assert clip.content[:4] == b"RIFF" and len(clip.content) == link["size"]
            doubled = [*session(session_id).items(), ("mcp-session-id", session_id)]
            listed = client.post(url, json=rpc("tools/list", rid=8), headers=doubled)
            assert listed.status_code == 400, listed.text
