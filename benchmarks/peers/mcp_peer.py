"""The official MCP SDK (``mcp``): an ``MCPServer`` tool that reports N progress notifications,
served over Streamable HTTP by uvicorn (the SDK's recommended HTTP deployment)."""

from __future__ import annotations

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

TOOL = "progress"

server = MCPServer("bench")


@server.tool(name=TOOL)
async def progress(count: int, ctx: Context) -> str:
    for i in range(count):
        await ctx.report_progress(i + 1, count)
    return f"sent {count}"


def serve(port: int) -> None:
    app = server.streamable_http_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
