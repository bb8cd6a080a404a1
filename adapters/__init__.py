"""Runtime adapters, importable as ``diaproto.adapters.<module>``.

Each adapter is the same small pump loop around the core's connections and makes no protocol
decision. Every adapter module offers ``run(app, host, port, *, config=None, ready=None)``
and ``start_in_thread(app, host="127.0.0.1", port=0, config=None) -> ServerHandle``; the two
functions here pick the module by runtime name, for the command line and the test suites.
"""

from __future__ import annotations

import importlib
import ssl as _ssl
from collections.abc import Callable
from typing import Any

from diaproto.config import ConnectionConfig
from diaproto.runtime import Application, ServerHandle

#: runtime name -> (adapter module, keyword options it needs). ``asyncio`` is the native
#: Protocol adapter; ``anyio`` is the anyio adapter on asyncio (the one ``trio`` runs on).
RUNTIMES: dict[str, tuple[str, dict[str, Any]]] = {
    "asyncio": ("asyncio", {}),
    "trio": ("anyio", {"backend": "trio"}),
    "anyio": ("anyio", {"backend": "asyncio"}),
    "tornado": ("tornado", {}),
    "sockets": ("sockets", {}),
}
#: The runtimes that serve TLS (``ssl=``). The sockets runtime does not: its one selector
#: loop would need TLS's own states (a write that waits for a read, decrypted bytes the
#: selector cannot see); put a reverse proxy in front of it instead (docs/operations.md).
TLS_RUNTIMES = frozenset({"asyncio", "trio", "anyio", "tornado"})


def _adapter(
    runtime: str, use_uvloop: bool, ssl: _ssl.SSLContext | None = None
) -> tuple[Any, dict[str, Any]]:
    if runtime not in RUNTIMES:
        msg = f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}"
        raise ValueError(msg)
    if ssl is not None and runtime not in TLS_RUNTIMES:
        msg = f"the {runtime} runtime does not serve TLS; choose one of {', '.join(TLS_RUNTIMES)}"
        raise ValueError(msg)
    module_name, options = RUNTIMES[runtime]
    module = importlib.import_module(f"diaproto.adapters.{module_name}")
    chosen = {**options, "use_uvloop": True} if use_uvloop else dict(options)
    if ssl is not None:
        chosen["ssl"] = ssl
    return module, chosen


def run(
    runtime: str,
    app: Application,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    config: ConnectionConfig | None = None,
    ready: Callable[[str, int], None] | None = None,
    use_uvloop: bool = False,
    ssl: _ssl.SSLContext | None = None,
) -> None:
    """Serve ``app`` on ``runtime`` until SIGINT or SIGTERM (HTTPS and WSS with ``ssl``)."""
    module, options = _adapter(runtime, use_uvloop, ssl)
    module.run(app, host, port, config=config, ready=ready, **options)


def start_in_thread(
    runtime: str,
    app: Application,
    host: str = "127.0.0.1",
    port: int = 0,
    config: ConnectionConfig | None = None,
    *,
    use_uvloop: bool = False,
    ssl: _ssl.SSLContext | None = None,
) -> ServerHandle:
    """Serve ``app`` on ``runtime`` in a thread of its own; returns once it listens."""
    module, options = _adapter(runtime, use_uvloop, ssl)
    handle: ServerHandle = module.start_in_thread(app, host, port, config, **options)
    return handle
