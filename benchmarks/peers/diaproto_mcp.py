"""``diaproto serve``'s service with one more MCP tool, ``progress``: the same tool as the
official SDK's peer (``mcp_peer.py``), reporting ``count`` progress notifications and then
answering. Added through ``McpService.add_tool``, the way an embedding application would.

The tool yields to the loop after every report (as the SDK's handler yields at each
``await``), so the writer runs between them. diaproto coalesces progress per token (only the
newest unsent value goes out), so a client that lags receives fewer notifications carrying
the same information.
"""

from __future__ import annotations

from diaproto import adapters
from diaproto.apps.mcp.peer import McpPeer
from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.limits import ServiceLimits
from diaproto.apps.serve.sources import SyntheticSource
from diaproto.mcp import Tool, ToolCall

BATCH = 1  # one report per loop iteration, like one `await ctx.report_progress` each
PROGRESS = Tool(
    "progress",
    "Report `count` progress notifications, then answer.",
    {"type": "object", "properties": {"count": {"type": "integer", "minimum": 0}}},
)


def report_progress(peer: McpPeer, call: ToolCall, now: float) -> None:
    count = int(call.arguments.get("count", 0))
    done = 0

    def step() -> None:
        nonlocal done
        end = min(done + BATCH, count)
        for value in range(done + 1, end + 1):
            peer.session.progress(call.request_id, value, count)
        done = end
        if done >= count:
            result = {"content": [{"type": "text", "text": f"sent {count}"}], "isError": False}
            peer.session.respond(call.request_id, result)
        peer.pump(peer.runtime.now())
        if done < count:
            peer.runtime.call_later(0, step)

    step()


def serve(port: int) -> None:
    # All load comes from one address: lift the per-client generation bound.
    service = DiaService(
        SyntheticSource(), limits=ServiceLimits(max_generations_per_peer=1_000_000)
    )
    service.mcp.add_tool(PROGRESS, report_progress)
    adapters.run("asyncio", service, "127.0.0.1", port)
