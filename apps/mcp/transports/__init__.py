"""The MCP transports of ``diaproto serve``, one module each, all on the service's one port.

Each moves messages between its connections and the peers' sessions and answers its own
requests; what they share (tools, calls, routes, audio links, session expiry) is
:class:`~diaproto.apps.mcp.service.McpService`'s.
"""
