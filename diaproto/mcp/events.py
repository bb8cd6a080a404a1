"""What an MCP session hands the application: the requests only it can answer, and news.

The session answers what the protocol decides by itself; these events are the rest. Each
request event is answered once, with :meth:`~diaproto.mcp.session.McpSession.respond` or
:meth:`~diaproto.mcp.session.McpSession.fail`; :class:`CallCancelled` and
:class:`ClientReply` need no answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diaproto.mcp.jsonrpc import JsonRpcErrorResponse, RequestId


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The client called a tool; answer with ``respond``/``fail`` (once)."""

    request_id: RequestId
    name: str
    arguments: dict[str, Any]
    progress_token: str | int | None
    partial_token: str | int | None  # set: the client takes partial results (SEP-2998)
    #: The request's whole ``params``: ``_meta``, and at 2026-07-28 a retried call's
    #: ``inputResponses`` and ``requestState`` (see ``mrtr``).
    params: dict[str, Any] = field(default_factory=dict)
    #: The call may become a task (SEP-2663): the tool supports tasks and the request's
    #: client declared the extension. The application decides (see ``apps/mcp/catalog``).
    task: bool = False


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """``tasks/get``, ``tasks/update`` or ``tasks/cancel`` from a client that declared the
    tasks extension, for a string ``task_id`` (the application's store decides the rest)."""

    request_id: RequestId
    method: str
    task_id: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResourceRead:
    """``resources/read`` of a URI the server offers (a resource or a template's match)."""

    request_id: RequestId
    uri: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PromptGet:
    """``prompts/get`` of an offered prompt, its required arguments present."""

    request_id: RequestId
    name: str
    arguments: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """``completion/complete``: ``ref`` (a prompt or resource template), ``argument``
    ``{name, value}``, and ``context`` (arguments already given) as the client sent them."""

    request_id: RequestId
    ref: dict[str, Any]
    argument: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClientReply:
    """The client answered a request of ours (:meth:`~diaproto.mcp.session.McpSession.request`)."""

    request_id: RequestId  # ours
    method: str
    related: RequestId | None  # the client's request it was sent for
    result: dict[str, Any] | None  # None: an error
    error: JsonRpcErrorResponse | None = None


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """The client cancelled a call (or the session ended under it): stop its work."""

    request_id: RequestId
    reason: str | None


McpEvent = (
    ToolCall
    | ResourceRead
    | PromptGet
    | CompletionRequest
    | TaskRequest
    | CallCancelled
    | ClientReply
)
