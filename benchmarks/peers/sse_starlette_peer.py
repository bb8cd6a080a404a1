"""sse-starlette on uvicorn: an ``EventSourceResponse`` over an async generator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import uvicorn
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from . import route


async def sse(request: Request) -> EventSourceResponse:
    _, params = route(str(request.url))
    n, payload = int(params.get("n", 1000)), "x" * int(params.get("size", 32))

    async def events() -> AsyncIterator[dict[str, str]]:
        for _ in range(n):
            yield {"data": payload}

    return EventSourceResponse(events(), ping=3600)


app = Starlette(routes=[Route("/sse", sse)])


def serve(port: int) -> None:
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
