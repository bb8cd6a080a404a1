"""The MCP server of diaproto serve (see service.py)."""
