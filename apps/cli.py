"""The ``diaproto`` command: ``diaproto serve`` runs the Dia streaming service."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Sequence

RUNTIMES = ("asyncio", "anyio", "trio", "tornado", "sockets")  # see diaproto.adapters.RUNTIMES
MODELS = ("synthetic", "dia")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diaproto", description="diaproto: stream model output")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the Dia streaming service")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any)")
    serve.add_argument("--runtime", choices=RUNTIMES, default="asyncio")
    serve.add_argument("--uvloop", action="store_true", help="use uvloop (asyncio, anyio only)")
    serve.add_argument("--model", choices=MODELS, default="synthetic")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    mcp = serve.add_argument_group("MCP (/mcp, /sse)")
    mcp.add_argument(
        "--mcp-allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also accept this Host name (DNS-rebinding guard; loopback names always pass)",
    )
    mcp.add_argument(
        "--mcp-allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept this browser Origin, e.g. https://app.example",
    )
    mcp.add_argument(
        "--mcp-token",
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' on every MCP request",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from diaproto import adapters  # noqa: PLC0415 (keeps `--help` fast)
    from diaproto.apps.serve.app import DiaService  # noqa: PLC0415
    from diaproto.apps.serve.sources import SourceUnavailable, load_source  # noqa: PLC0415
    from diaproto.mcp.http import LOOPBACK_HOSTS, McpHttpConfig  # noqa: PLC0415

    if args.uvloop and args.runtime not in ("asyncio", "anyio"):
        print("diaproto: --uvloop needs --runtime asyncio (or anyio)", file=sys.stderr)
        return 2
    if args.uvloop and importlib.util.find_spec("uvloop") is None:
        print("diaproto: --uvloop needs uvloop: pip install 'diaproto[uvloop]'", file=sys.stderr)
        return 2
    try:
        source = load_source(args.model)
    except SourceUnavailable as exc:
        print(f"diaproto: {exc}", file=sys.stderr)
        return 2
    mcp_config = McpHttpConfig(
        allowed_hosts=(*LOOPBACK_HOSTS, *(name.lower() for name in args.mcp_allow_host)),
        allowed_origins=tuple(args.mcp_allow_origin),
        bearer_token=args.mcp_token,
    )
    service = DiaService(source, mcp_config=mcp_config)

    def ready(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        print(
            f"diaproto serving on http://{shown}:{port}/ "
            f"(runtime {args.runtime}{'+uvloop' if args.uvloop else ''}, model {args.model}); "
            f"open it in a browser; MCP at http://{shown}:{port}/mcp",
            flush=True,
        )

    adapters.run(args.runtime, service, args.host, args.port, ready=ready, use_uvloop=args.uvloop)
    print("diaproto: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
