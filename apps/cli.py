"""The ``diaproto`` command: ``diaproto serve`` runs the Dia streaming service."""

from __future__ import annotations

import argparse
import errno
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from diaproto import __version__
from diaproto.apps import logs, settings
from diaproto.apps.serve.limits import ServiceLimits
from diaproto.apps.tls import server_context

if TYPE_CHECKING:
    import ssl

    from diaproto.adapters.stdio import Post
    from diaproto.apps.mcp.transports.stdio_session import StdioSession
    from diaproto.apps.serve.model_worker import JobTaker, QueuedJob, TakeJobs
    from diaproto.cluster import RedisJournal
    from diaproto.runtime import Runtime

RUNTIMES = ("asyncio", "anyio", "trio", "tornado", "sockets")  # see diaproto.adapters.RUNTIMES
MODELS = ("synthetic", "dia")
MODEL_HELP = (
    "the speech source: synthetic (default), dia, or module:attr, a Source of your own "
    "(or a class or factory making one), imported from the current directory or installed"
)
#: What ``pip install diaproto`` lacks for ``serve``: module -> the extra that brings it.
#: The runtime's own modules are named with ``--runtime`` in the message.
EXTRAS = {
    "prometheus_client": "serve",
    "anyio": "serve",
    "trio": "serve",
    "tornado": "tornado",
    "redis": "cluster",
}
RUNTIME_MODULES = frozenset({"anyio", "trio", "tornado"})
USAGE_ERROR = 2  # argparse's status for a bad command line
#: Python's default GIL switch interval is 5 ms: a model thread could then hold the event loop
#: up that long, and a paced chunk (11.6 ms of audio) would arrive visibly late. 1 ms keeps
#: the loop's lateness within the seed's jitter claim at a small cost to the model thread.
GIL_SWITCH_MS = 1.0
CANNOT_LISTEN = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diaproto", description="diaproto: stream model output")
    parser.add_argument("--version", action="version", version=f"diaproto {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the Dia streaming service")
    _serve_arguments(serve, port=8000, worker=False)
    worker = commands.add_parser(
        "worker",
        help="run a model worker: the generations that 'serve --cluster URL --queue' queues",
    )
    _serve_arguments(worker, port=8001, worker=True)
    mcp = commands.add_parser(
        "mcp", help="serve MCP to one client on stdin/stdout ('serve' has it over HTTP at /mcp)"
    )
    _mcp_arguments(mcp)
    settings.add_options(parser)  # --config FILE, --<secret>-file PATH
    return parser


def _mcp_arguments(mcp: argparse.ArgumentParser) -> None:
    # Required, not implied: the transport is named in every client's config, and another
    # one (HTTP without the rest of serve) may join it.
    mcp.add_argument(
        "--stdio",
        action="store_true",
        required=True,
        help="speak MCP as newline-delimited JSON-RPC on stdin and stdout (logs go to stderr)",
    )
    mcp.add_argument("--model", type=_model, default="synthetic", help=MODEL_HELP)
    mcp.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    dia = mcp.add_argument_group("the Dia model (--model dia), as for serve")
    dia.add_argument("--weights", default=None, metavar="ID_OR_PATH")
    dia.add_argument("--device", default=None)
    dia.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"))
    dia.add_argument("--dia-window", default=None, metavar="K0:R0,K:R,L")
    dia.add_argument("--max-requests", type=int, default=None, metavar="N")


def _gil_switch_ms(value: str) -> float:
    milliseconds = float(value)
    if not 0.1 <= milliseconds <= 100:  # (NaN is refused too)
        raise argparse.ArgumentTypeError("must be 0.1 to 100 (milliseconds)")
    return milliseconds


def _serve_arguments(serve: argparse.ArgumentParser, *, port: int, worker: bool) -> None:
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=port, help=f"port (default {port}; 0 = any)")
    serve.add_argument("--runtime", choices=RUNTIMES, default="asyncio")
    serve.add_argument("--uvloop", action="store_true", help="use uvloop (asyncio, anyio only)")
    serve.add_argument(
        "--gil-switch-ms",
        type=_gil_switch_ms,
        default=GIL_SWITCH_MS,
        metavar="MS",
        help="longest a worker thread (the model) holds the GIL while the event loop waits "
        "for it: the loop's timers and sends are late by at most about this (default "
        "%(default)s; Python's own is 5)",
    )
    serve.add_argument("--model", type=_model, default="synthetic", help=MODEL_HELP)
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.add_argument(
        "--log-format", default="text", choices=logs.FORMATS, help="json: JSON lines"
    )
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a line per request, WebSocket session and stream (logger diaproto.access)",
    )
    tls = serve.add_argument_group("TLS: HTTPS and WSS (not with --runtime sockets)")
    tls.add_argument("--certfile", metavar="PEM", help="the certificate chain (PEM)")
    tls.add_argument("--keyfile", metavar="PEM", help="its private key (default: in --certfile)")
    dia = serve.add_argument_group("the Dia model (--model dia; pip install 'diaproto[dia]')")
    dia.add_argument(
        "--weights",
        default=None,
        metavar="ID_OR_PATH",
        help="Hugging Face id or local directory (default nari-labs/Dia-1.6B-0626)",
    )
    dia.add_argument("--device", default=None, help="torch device (default cuda if present)")
    dia.add_argument(
        "--dtype",
        default=None,
        choices=("float32", "bfloat16", "float16"),
        help="the model's dtype (default bfloat16 on CUDA, float32 on CPU)",
    )
    dia.add_argument(
        "--dia-window",
        default=None,
        metavar="K0:R0,K:R,L",
        help="frames per chunk and look-ahead for the first and later chunks, and the left "
        "context (default 4:10,16:10,12; first audio after K0+R0+15 steps)",
    )
    dia.add_argument(
        "--max-requests",
        type=int,
        default=None,
        metavar="N",
        help="requests the model takes on at once (running, waiting or paused); past it new "
        "ones get 503 / 'busy' (default 32)",
    )
    limits = serve.add_argument_group("limits per client (past one: 429 / 'limit_exceeded')")
    limits.add_argument(
        "--max-streams-per-connection",
        type=int,
        default=ServiceLimits().max_streams_per_connection,
        metavar="N",
        help="streams one WebSocket may have open (default %(default)s)",
    )
    limits.add_argument(
        "--max-generations-per-peer",
        type=int,
        default=ServiceLimits().max_generations_per_peer,
        metavar="N",
        help="generations one client address may have running or held for a resume "
        "(default %(default)s; raise it behind a reverse proxy, where every client "
        "shares the proxy's address)",
    )
    limits.add_argument(
        "--sse-lead",
        type=float,
        default=ServiceLimits().sse_lead,
        metavar="SECONDS",
        help="seconds of audio an SSE stream may run ahead of real time: its client "
        "cannot grant credit, so the server paces it (default %(default)s; 0: unpaced)",
    )
    access = serve.add_argument_group("browsers and hosts (/ws, /v1/*, /mcp)")
    access.add_argument(
        "--allow-host",
        "--mcp-allow-host",
        dest="allow_host",
        action="append",
        default=[],
        metavar="NAME",
        help="also accept this host name: in Host on /mcp (DNS-rebinding guard), and in a "
        "browser's Origin (loopback names always pass)",
    )
    access.add_argument(
        "--allow-origin",
        "--mcp-allow-origin",
        dest="allow_origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept this browser Origin, e.g. https://app.example (other pages get 403); "
        "its pages may read the API's answers (CORS)",
    )
    access.add_argument(
        "--api-key",
        metavar="KEY[,KEY]",
        help="require 'Authorization: Bearer KEY' on /v1/* and /ws, as OpenAI's API does "
        "(several keys, comma-separated, let one be rotated out); prefer --api-key-file or "
        "DIAPROTO_API_KEY: a flag shows in ps",
    )
    cluster = serve.add_argument_group(
        "many workers on one shared journal (pip install 'diaproto[cluster]')"
    )
    cluster.add_argument(
        "--cluster",
        metavar="REDIS_URL",
        required=worker,
        help="write streams to Redis >= 7 or Valkey (redis://host:6379/0), so that a client "
        "may resume on any worker that shares it (default: this process alone)",
    )
    if worker:
        cluster.add_argument(
            "--jobs",
            type=int,
            default=4,
            metavar="N",
            help="jobs this worker runs at once (default 4; more wait for another worker)",
        )
    else:
        cluster.add_argument(
            "--queue",
            action="store_true",
            help="queue new generations for model workers (diaproto worker) instead of "
            "running them here",
        )
    cluster.add_argument(
        "--worker-name",
        metavar="NAME",
        help="this worker's name in the journal (default: host-pid-random)",
    )
    mcp = serve.add_argument_group("MCP (/mcp, /sse)")
    mcp.add_argument(
        "--mcp-token",
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' on every MCP request",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = settings.parse_command_line(build_parser(), argv)  # flags, DIAPROTO_*, --config
    if args.command == "mcp":
        return run_stdio(args)
    logs.configure(args.log_level, args.log_format)
    try:
        from diaproto import adapters  # noqa: PLC0415 (keeps `--help` fast)
        from diaproto.apps.serve.access_log import AccessLog  # noqa: PLC0415
        from diaproto.apps.serve.app import DiaService  # noqa: PLC0415
        from diaproto.apps.serve.sources import SourceUnavailable, load_source  # noqa: PLC0415
        from diaproto.mcp.http import LOOPBACK_HOSTS, McpHttpConfig  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        # `pip install diaproto` is the core alone (h11, wsproto): say what serve needs.
        message = _missing_extra(exc, args.runtime)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return USAGE_ERROR

    if args.uvloop and args.runtime not in ("asyncio", "anyio"):
        print("diaproto: --uvloop needs --runtime asyncio (or anyio)", file=sys.stderr)
        return 2
    if args.uvloop and importlib.util.find_spec("uvloop") is None:
        print("diaproto: --uvloop needs uvloop: pip install 'diaproto[uvloop]'", file=sys.stderr)
        return 2
    try:
        source = load_source(args.model, **_model_options(args))
    except (SourceUnavailable, ValueError) as exc:
        print(f"diaproto: {exc}", file=sys.stderr)
        return 2
    mcp_config = McpHttpConfig(
        allowed_hosts=(*LOOPBACK_HOSTS, *(name.lower() for name in args.allow_host)),
        allowed_origins=tuple(args.allow_origin),
        bearer_token=args.mcp_token,
    )
    try:
        limits = ServiceLimits(
            args.max_streams_per_connection, args.max_generations_per_peer, args.sse_lead
        )
    except ValueError as exc:
        print(f"diaproto: {exc}", file=sys.stderr)
        return 2
    queue = getattr(args, "queue", False)
    try:
        api_keys = _api_keys(args.api_key)
        ssl_context = _tls(args)
        if queue and not args.cluster:
            raise _Refused("diaproto: --queue needs --cluster REDIS_URL (where jobs go)")
        journal = _journal(args)
        take_jobs = _job_consumer(args, journal) if args.command == "worker" else None
    except _Refused as exc:
        print(exc, file=sys.stderr)
        return USAGE_ERROR
    service = DiaService(
        source,
        mcp_config=mcp_config,
        limits=limits,
        journal=journal,
        shared_sessions=journal,
        jobs=journal if queue else None,
        take_jobs=take_jobs,
        api_keys=api_keys,
    )
    listening = False

    def ready(host: str, port: int) -> None:
        nonlocal listening
        listening = True
        shown, scheme = _shown(host), "https" if ssl_context else "http"
        print(
            f"diaproto serving on {scheme}://{shown}:{port}/ "
            f"(runtime {args.runtime}{'+uvloop' if args.uvloop else ''}, model {args.model}); "
            f"open it in a browser; MCP at {scheme}://{shown}:{port}/mcp"
            + (f"; worker {journal.worker} of the cluster at {args.cluster}" if journal else ""),
            flush=True,
        )

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(args.gil_switch_ms / 1000)
    try:
        adapters.run(
            args.runtime,
            AccessLog(service) if args.access_log else service,
            args.host,
            args.port,
            ready=ready,
            use_uvloop=args.uvloop,
            ssl=ssl_context,
        )
    except Exception as exc:
        if journal is not None:
            journal.close()
        # Before it listens, a failure is the user's to fix (a busy port, an unknown host, a
        # runtime not installed): one line, not a traceback (trio's in an ExceptionGroup box).
        failure = None if listening else _startup_failure(exc, args)
        if failure is None:
            raise
        message, status = failure
        print(message, file=sys.stderr)
        return status
    finally:
        sys.setswitchinterval(switch_interval)
    if journal is not None:
        journal.close()  # what waits is written first
    print("diaproto: stopped", flush=True)
    return 0


def run_stdio(args: argparse.Namespace) -> int:
    """``diaproto mcp --stdio``: the MCP service on stdin and stdout until stdin ends."""
    from diaproto.adapters import stdio  # noqa: PLC0415 (keeps `--help` fast)
    from diaproto.apps.mcp.transports import stdio_session  # noqa: PLC0415

    # First: nothing (a model's module printing as it loads) may reach the client's stdout.
    stdout = stdio.reserve_stdout()
    logs.configure(args.log_level)  # to stderr
    try:
        service = stdio_session.make_service(args, _model_options)
    except stdio_session.ServiceRefused as exc:
        print(f"diaproto: {exc}", file=sys.stderr)
        stdout.close()
        return USAGE_ERROR

    def session(runtime: Runtime, write_line: Callable[[str], None], post: Post) -> StdioSession:
        return stdio_session.StdioSession(service, runtime, write_line, post)

    stdio.run_lines(session, sys.stdin.fileno(), stdout)
    return 0


class _Refused(Exception):
    """A command line that cannot be served, with the one line that says why."""


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """``--certfile``/``--keyfile``: the server's TLS context (None: plain TCP)."""
    try:
        return server_context(args.certfile, args.keyfile, args.runtime)
    except ValueError as exc:
        raise _Refused(f"diaproto: {exc}") from exc


def _journal(args: argparse.Namespace) -> RedisJournal | None:
    """The shared journal ``--cluster`` names (None: this process alone)."""
    if not args.cluster:
        return None
    try:
        from diaproto.cluster import RedisJournal  # noqa: PLC0415 (an extra)
    except ModuleNotFoundError as exc:
        message = _missing_extra(exc, args.runtime)
        if message is None:
            raise
        raise _Refused(message) from exc
    try:
        journal = RedisJournal(args.cluster, worker=args.worker_name)
    except ValueError as exc:  # not a redis:// URL
        raise _Refused(f"diaproto: --cluster {args.cluster}: {exc}") from exc
    if not journal.ping():  # served anyway: it says so on /healthz and recovers
        logging.getLogger("diaproto").warning(
            "the shared journal at %s does not answer yet: /healthz says degraded and "
            "new streams get 503 until it does",
            args.cluster,
        )
    return journal


def _job_consumer(args: argparse.Namespace, journal: RedisJournal | None) -> TakeJobs:
    """``diaproto worker``: how the service starts taking jobs, once it listens."""
    from diaproto.cluster.jobs import JobConsumer  # noqa: PLC0415 (an extra)

    assert journal is not None  # --cluster is required
    if args.jobs < 1:
        raise _Refused("diaproto: --jobs must be at least 1")

    def take(on_job: Callable[[QueuedJob], None], on_lost: Callable[[str], None]) -> JobTaker:
        return JobConsumer(args.cluster, journal.worker, on_job, on_lost=on_lost, slots=args.jobs)

    return take


def _api_keys(value: str | None) -> tuple[str, ...]:
    """``--api-key``'s keys, separated by commas or white space (a file's lines); a value
    with no key in it is refused rather than taken as "no keys"."""
    if value is None:
        return ()
    keys = tuple(key for key in value.replace(",", " ").split() if key)
    if not keys:
        raise _Refused("diaproto: --api-key is set but holds no key")
    return keys


def _model(text: str) -> str:
    from diaproto.apps.serve.sources.loading import valid_model_name  # noqa: PLC0415

    if not valid_model_name(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected {', '.join(MODELS)} or module:attr (a Source of your own)"
        )
    return text


def _port(text: str) -> int:
    """``--port``: 0-65535 (argparse's usage error otherwise, not an OverflowError at bind)."""
    port = int(text) if text.strip().isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return port


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside any ExceptionGroups (anyio and trio raise bind errors in one)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _missing_extra(exc: BaseException, runtime: str) -> str | None:
    """The install command for a module of an extra that is not installed, else None."""
    if not isinstance(exc, ModuleNotFoundError) or exc.name is None:
        return None
    module = exc.name.partition(".")[0]
    if module not in EXTRAS:
        return None
    who = f"diaproto serve --runtime {runtime}" if module in RUNTIME_MODULES else "diaproto serve"
    return (
        f"diaproto: {who} needs {module}, which is not installed: "
        f"pip install 'diaproto[{EXTRAS[module]}]'"
    )


def _startup_failure(exc: BaseException, args: argparse.Namespace) -> tuple[str, int] | None:
    """(one line, exit status) for a failure to start serving that is not a bug, else None."""
    leaves = list(_leaves(exc))
    for leaf in leaves:
        cause: BaseException | None = leaf
        while cause is not None:  # anyio reports a missing trio as a LookupError from it
            message = _missing_extra(cause, args.runtime)
            if message is not None:
                return message, USAGE_ERROR
            cause = cause.__cause__
    if not leaves or not all(isinstance(leaf, OSError) for leaf in leaves):
        return None
    first = leaves[0]
    assert isinstance(first, OSError)
    if first.errno == errno.EADDRINUSE:
        reason = (
            "address already in use "
            "(another program has it; choose another --port, or --port 0 for any free one)"
        )
    else:
        reason = first.strerror or str(first)
    return f"diaproto: cannot listen on {_shown(args.host)}:{args.port}: {reason}", CANNOT_LISTEN


def _model_options(args: argparse.Namespace) -> dict[str, object]:
    """The source's options from the command line (the Dia ones only with --model dia)."""
    dia_flags = {
        "--weights": args.weights,
        "--device": args.device,
        "--dtype": args.dtype,
        "--dia-window": args.dia_window,
        "--max-requests": args.max_requests,
    }
    if args.model != "dia":
        given = [flag for flag, value in dia_flags.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} apply to --model dia only")
        return {}
    from diaproto.apps.serve.model_queue import ModelQueue  # noqa: PLC0415
    from diaproto.apps.serve.sources.dia.frames import WindowPlan  # noqa: PLC0415

    options: dict[str, object] = {"device": args.device, "dtype": args.dtype}
    if args.weights is not None:
        options["weights"] = args.weights
    if args.dia_window is not None:
        options["plan"] = WindowPlan.parse(args.dia_window)
    if args.max_requests is not None:
        options["model_queue"] = ModelQueue(max_requests=args.max_requests)
    return options


if __name__ == "__main__":
    sys.exit(main())
