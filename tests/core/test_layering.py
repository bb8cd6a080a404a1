"""The layers hold: the core does no I/O and reads no clock; adapters speak no protocol."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import diaproto.adapters

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "diaproto"
ADAPTERS = ROOT / "adapters"
APPS = ROOT / "apps"

FORBIDDEN_IN_CORE = {
    "socket", "selectors", "asyncio", "trio", "anyio", "tornado",
    "threading", "time", "ssl", "subprocess", "uvloop", "multiprocessing",
}  # fmt: skip
# Protocol machinery lives in the core; an adapter that imports it is deciding protocol.
FORBIDDEN_IN_ADAPTERS = {"h11", "wsproto"}
# Matched with their submodules: "diaproto.mcp" forbids "diaproto.mcp.session" too.
FORBIDDEN_CORE_MODULES_IN_ADAPTERS = (
    "diaproto.wire", "diaproto.sse", "diaproto.scheduler", "diaproto.keepalive",
    "diaproto.wsframes", "diaproto.headers", "diaproto.client", "diaproto.mcp",
    "diaproto.server.core", "diaproto.server.framing", "diaproto.server.http",
    "diaproto.server.websocket", "diaproto.server.streams", "diaproto.server.state",
)  # fmt: skip
# The core stands under the outer layers: it never imports them (the one exception is
# ``python -m diaproto``, which runs the command line).
OUTER_LAYERS = ("diaproto.adapters", "diaproto.apps")
ENTRY_POINT = CORE / "__main__.py"


def package_of(path: Path) -> str:
    """The package a source file belongs to, by the names it installs under."""
    relative = path.resolve().relative_to(ROOT)
    parts = list(relative.parts[:-1])
    if parts and parts[0] in ("adapters", "apps", "cluster"):
        parts.insert(0, "diaproto")
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    return modules_in(path.read_text(encoding="utf-8"), package_of(path))


def modules_in(source: str, package_name: str) -> list[tuple[int, str]]:
    """Every module a source imports, absolute: ``from X import a`` counts as X and X.a (a
    may be a submodule), a relative import is resolved from the file's package."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = package_name.split(".")
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            found.append((node.lineno, "__import__(...)"))
    return found


def within(name: str, modules: tuple[str, ...]) -> bool:
    return any(name == module or name.startswith(f"{module}.") for module in modules)


def core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_the_core_has_files_to_check() -> None:
    names = {p.name for p in core_files()}
    assert {
        "connection.py",
        "_scheduler.py",
        "rejection.py",
        "wire.py",
        "sse.py",
        "session.py",
    } <= names


def test_core_imports_no_io_clock_or_concurrency() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in core_files()
        for line, name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN_IN_CORE or name == "__import__(...)"
    ]
    assert offences == []


# The scheduler stands on its own: an application that frames its own bytes (an ASGI app,
# say) uses it without a server connection, a client or MCP.
FORBIDDEN_IN_SCHEDULER = ("diaproto.server", "diaproto.client", "diaproto.mcp")


def test_the_scheduler_imports_nothing_from_server_client_or_mcp() -> None:
    files = sorted((CORE / "scheduler").rglob("*.py"))
    assert files
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files
        for line, name in imported_modules(path)
        if within(name, FORBIDDEN_IN_SCHEDULER)
    ]
    assert offences == []


def test_the_checker_catches_a_forbidden_import() -> None:
    bad = "import time\nfrom asyncio import sleep\nimport os.path\n"
    names = [name for _, name in modules_in(bad, "diaproto")]
    assert [n for n in names if n.split(".")[0] in FORBIDDEN_IN_CORE] == [
        "time",
        "asyncio",
        "asyncio.sleep",
    ]


def test_adapters_make_no_protocol_decisions() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in ADAPTERS.rglob("*.py")
        for line, name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN_IN_ADAPTERS
        or within(name, FORBIDDEN_CORE_MODULES_IN_ADAPTERS)
    ]
    assert offences == []


def test_the_core_never_imports_the_outer_layers() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in core_files()
        if path != ENTRY_POINT
        for line, name in imported_modules(path)
        if within(name, OUTER_LAYERS)
    ]
    assert offences == []


def test_the_checker_sees_every_form_of_import() -> None:
    source = (
        "from diaproto import wire, scheduler\nimport diaproto.client.state\n"
        "from diaproto.server.state import State\nfrom ..server import http\n"
        "from . import _pump\n"
    )
    names = {name for _, name in modules_in(source, "diaproto.adapters")}
    assert {"diaproto.wire", "diaproto.scheduler", "diaproto.client.state"} <= names
    assert {"diaproto.server.http", "diaproto.adapters._pump"} <= names
    assert within("diaproto.server.state.State", FORBIDDEN_CORE_MODULES_IN_ADAPTERS)
    assert not within("diaproto.serverless", ("diaproto.server",))
    assert package_of(ADAPTERS / "_pump.py") == "diaproto.adapters"
    assert package_of(CORE / "server" / "http.py") == "diaproto.server"


def test_adapters_are_importable_under_the_package() -> None:
    assert Path(diaproto.adapters.__file__).resolve().parent == ADAPTERS


BLOCKER = """
import sys
from importlib.abc import MetaPathFinder
allowed = set(sys.stdlib_module_names) | {"h11", "wsproto", "diaproto"}
class Block(MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] not in allowed:
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, Block())
import diaproto, diaproto.testing
from diaproto import ServerConnection, WebSocketClientConnection, SseClientConnection
print("ok", len(diaproto.__all__))
"""


def test_import_needs_only_h11_and_wsproto() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")


def test_testing_strategies_is_the_only_module_needing_hypothesis() -> None:
    users = {
        str(path.relative_to(ROOT))
        for path in core_files()
        for _, name in imported_modules(path)
        if name.split(".")[0] == "hypothesis"
    }
    assert users == {"diaproto/testing/strategies.py"}


# An application runs unchanged on every adapter: it names no runtime, and it speaks
# protocols only through the core (so it imports no protocol library either).
FORBIDDEN_IN_APPS = {"asyncio", "trio", "anyio", "tornado", "uvloop", "selectors", "socket",
                     "h11", "wsproto"}  # fmt: skip


def test_applications_are_runtime_neutral() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in APPS.rglob("*.py")
        if path.name != "cli.py"  # the command line picks the adapter to run on
        for line, name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN_IN_APPS or name.startswith("diaproto.adapters")
    ]
    assert offences == []


def test_apps_are_importable_under_the_package() -> None:
    import diaproto.apps  # noqa: PLC0415

    assert Path(diaproto.apps.__file__).resolve().parent == APPS
