"""``diaproto mcp --stdio``'s session: the MCP service of ``diaproto serve`` for one client on
this process's stdin and stdout (run by :mod:`diaproto.adapters.stdio`).

Besides the lines, the service's own log records (those ``--log-level`` lets through) go to
the client as ``notifications/message`` at or above the level it asked for.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from diaproto.apps.mcp.transports.stdio import StdioTransport
from diaproto.runtime import Runtime

if TYPE_CHECKING:
    from diaproto.apps.serve.app import DiaService

log = logging.getLogger("diaproto.mcp")

#: The command line's model options, from its arguments (``diaproto.apps.cli``'s).
ModelOptions = Callable[[argparse.Namespace], dict[str, object]]
#: Post a call to the loop from any thread, never blocking.
Post = Callable[[Callable[[], None]], None]


class ServiceRefused(Exception):
    """The service cannot be made as asked (the one line says why)."""


def make_service(args: argparse.Namespace, model_options: ModelOptions) -> DiaService:
    """The service ``--model`` names, with every result's audio inline (no HTTP server here
    answers a link)."""
    try:
        from diaproto.apps.serve.app import DiaService  # noqa: PLC0415 (an extra's modules)
        from diaproto.apps.serve.sources import SourceUnavailable, load_source  # noqa: PLC0415
        from diaproto.mcp import McpHttpConfig  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        raise ServiceRefused(
            f"diaproto mcp needs {exc.name}, which is not installed: pip install 'diaproto[serve]'"
        ) from exc
    try:
        source = load_source(args.model, **model_options(args))
    except (SourceUnavailable, ValueError) as exc:
        raise ServiceRefused(str(exc)) from exc
    config = McpHttpConfig(max_inline_audio_bytes=sys.maxsize)
    return DiaService(source, mcp_config=config)


class StdioSession:
    """One client's session: its transport, and the service's logs forwarded to it."""

    def __init__(
        self,
        service: DiaService,
        runtime: Runtime,
        write_line: Callable[[str], None],
        post: Post,
    ) -> None:
        self.service = service
        self.transport = StdioTransport(service.mcp, runtime, write_line)
        # Before forwarding starts: the client has not even initialized yet.
        log.info("MCP over stdio (model %s): reading JSON-RPC lines on stdin", service.source.name)
        self._forward = ForwardLogs(self.transport, post)
        logging.getLogger("diaproto").addHandler(self._forward)

    def receive_data(self, data: bytes) -> None:
        self.transport.receive_data(data)

    def receive_eof(self) -> None:
        self.transport.receive_eof()

    def close(self) -> None:
        """The session ended: calls in flight are cancelled, the service stops."""
        logging.getLogger("diaproto").removeHandler(self._forward)
        self.transport.close()
        self.service.shutdown()
        log.info("MCP over stdio: the session ended")


class ForwardLogs(logging.Handler):
    """diaproto's log records also go to the client, as ``notifications/message``."""

    def __init__(self, transport: StdioTransport, post: Post) -> None:
        super().__init__()
        self._transport = transport
        self._post = post

    def emit(self, record: logging.LogRecord) -> None:
        level = mcp_level(record.levelno)
        forward = partial(self._transport.log, level, record.getMessage(), record.name)
        # Always later on the loop, never inside the code that logged (it may be writing a
        # message, or on a worker thread); never blocking, so no one waits on the loop for it.
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._post(forward)


def mcp_level(levelno: int) -> str:
    """The MCP (RFC 5424) name of a Python logging level."""
    for threshold, name in _LEVELS:
        if levelno >= threshold:
            return name
    return "debug"


_LEVELS = (
    (logging.CRITICAL, "critical"),
    (logging.ERROR, "error"),
    (logging.WARNING, "warning"),
    (logging.INFO, "info"),
)
