"""The Dockerfile, read (docker does not run here): a python:3.11-slim image that installs the
service's extra, runs as a user other than root, exposes 8000, asks /healthz in its
HEALTHCHECK with the standard library, and starts a command line the CLI accepts."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from diaproto.apps.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, its arguments), continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    parsed = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            parsed.append((keyword.upper(), rest.strip()))
    return parsed


def arguments(rest: str) -> list[str]:
    """An instruction's exec form (a JSON array) or shell form, as a list."""
    if rest.startswith("["):
        value = json.loads(rest)
        assert isinstance(value, list)
        return [str(item) for item in value]
    return shlex.split(rest)


def only(keyword: str) -> str:
    found = [rest for name, rest in instructions() if name == keyword]
    assert len(found) == 1, f"{keyword}: {found}"
    return found[0]


def test_base_install_and_port() -> None:
    assert only("FROM") == "python:3.11-slim"
    assert '".[serve]"' in only("RUN") or "'.[serve]'" in only("RUN")
    assert only("EXPOSE") == "8000"


def test_runs_as_a_user_other_than_root() -> None:
    user = only("USER").split(":")[0]
    assert user not in ("", "root", "0")
    names = [name for name, _ in instructions()]
    assert names.index("USER") < names.index("CMD")


def test_healthcheck_asks_healthz_without_curl() -> None:
    options, _, command = only("HEALTHCHECK").partition("CMD")
    assert "--interval" in options
    argv = arguments(command.strip())
    assert argv[0] == "python" and "urllib.request" in argv[-1]
    assert "'http://127.0.0.1:'" in argv[-1] and "'/healthz'" in argv[-1]
    assert "curl" not in command and "wget" not in command


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_healthcheck_passes_on_200_and_fails_otherwise(status: int, healthy: bool) -> None:
    """The check's own code, run against a server answering ``status`` on DIAPROTO_PORT."""
    argv = arguments(only("HEALTHCHECK").partition("CMD")[2].strip())

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthz" else 404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "DIAPROTO_PORT": str(server.server_address[1])}
        result = subprocess.run(
            [sys.executable, *argv[1:]], env=env, capture_output=True, timeout=60, check=False
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert (result.returncode == 0) is healthy, result.stderr


def test_cmd_is_a_command_line_the_cli_accepts() -> None:
    argv = arguments(only("CMD"))
    assert argv[0] == "diaproto"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8000)


def test_dockerignore_keeps_the_build_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for heavy in (".git", ".venv", "build"):
        assert heavy in ignored
    for needed in ("apps", "adapters", "diaproto", "cluster", "clients", "pyproject.toml"):
        assert needed not in ignored
