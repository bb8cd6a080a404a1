"""MCP (Model Context Protocol) in the sans-IO core: JSON-RPC, the session state machine,
scheduling by message kind, the HTTP rules, sessions and the event store. Pure, like the
rest of the core: the application and an adapter supply the sockets and the clock.
"""

from diaproto.mcp.channel import BULK, McpChannel
from diaproto.mcp.events import CallCancelled, ToolCall
from diaproto.mcp.eventstore import EventStore, MemoryEventStore, ReplayRefused
from diaproto.mcp.features import Tool
from diaproto.mcp.http import HttpRefusal, McpHttpConfig, check_access, check_post, check_stream
from diaproto.mcp.jsonrpc import (
    JsonRpcError,
    JsonRpcErrorResponse,
    JsonRpcNotification,
    JsonRpcRequest,
    JsonRpcResponse,
    Message,
    RequestId,
    encode_message,
    parse_message,
)
from diaproto.mcp.negotiation import ServerInfo
from diaproto.mcp.outbox import Outbound
from diaproto.mcp.protocol import SUPPORTED_VERSIONS, Kind
from diaproto.mcp.registry import SessionRegistry
from diaproto.mcp.session import McpSession, SessionState

__all__ = [
    "BULK",
    "SUPPORTED_VERSIONS",
    "CallCancelled",
    "EventStore",
    "HttpRefusal",
    "JsonRpcError",
    "JsonRpcErrorResponse",
    "JsonRpcNotification",
    "JsonRpcRequest",
    "JsonRpcResponse",
    "Kind",
    "McpChannel",
    "McpHttpConfig",
    "McpSession",
    "MemoryEventStore",
    "Message",
    "Outbound",
    "ReplayRefused",
    "RequestId",
    "ServerInfo",
    "SessionRegistry",
    "SessionState",
    "Tool",
    "ToolCall",
    "check_access",
    "check_post",
    "check_stream",
    "encode_message",
    "parse_message",
]
