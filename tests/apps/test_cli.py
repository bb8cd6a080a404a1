"""The ``diaproto`` command's failures: one clear line and an exit status, never a traceback.

Each case runs the real command as a subprocess (``python -m diaproto``, the same CLI as the
console script), on every runtime where the runtime matters. Waits are bounded by
``EXIT_LIMIT``; only processes started here are stopped, by their handle.
"""

from __future__ import annotations

import os
import runpy
import socket
import subprocess
import sys
import textwrap

import pytest

import diaproto
from diaproto import adapters
from diaproto.apps import cli

RUNTIMES = ("asyncio", "anyio", "trio", "tornado", "sockets")
EXIT_LIMIT = 120.0  # imports on a loaded 2-core machine; a hang still fails
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}

# Runs the CLI with some modules made unimportable, as in an install without them.
BLOCKED_IMPORTS = textwrap.dedent(
    """
    import importlib.abc, runpy, sys
    blocked = set(sys.argv[1].split(","))
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in blocked:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, Block())
    sys.argv = ["diaproto", *sys.argv[2:]]
    runpy.run_module("diaproto", run_name="__main__", alter_sys=True)
    """
)


def diaproto_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diaproto", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=EXIT_LIMIT,
        check=False,
    )


def without_modules(blocked: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORTS, blocked, *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=EXIT_LIMIT,
        check=False,
    )


def test_version() -> None:
    result = diaproto_command("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"diaproto {diaproto.__version__}")


def test_main_module_runs_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this process too, so that coverage sees diaproto/__main__.py."""
    monkeypatch.setattr(sys, "argv", ["diaproto", "--version"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("diaproto", run_name="__main__")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"diaproto {diaproto.__version__}\n"


def test_python_m_diaproto_is_the_cli() -> None:
    result = diaproto_command("serve", "--help")
    assert result.returncode == 0, result.stderr
    assert "--runtime" in result.stdout


@pytest.mark.parametrize(
    ("runtime", "port"),
    [
        *((runtime, "99999") for runtime in RUNTIMES),
        ("asyncio", "-1"),
        ("trio", "65536"),
        ("sockets", "eighty"),
    ],
)
def test_a_port_out_of_range_is_a_usage_error(runtime: str, port: str) -> None:
    result = diaproto_command("serve", "--runtime", runtime, "--port", port)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"diaproto serve: error: argument --port: {port!r} is not a port (0-65535)"
    )


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_busy_port_is_one_line_and_exit_1(runtime: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = diaproto_command("serve", "--runtime", runtime, "--port", str(port))
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"diaproto: cannot listen on 127.0.0.1:{port}: address already in use "
        "(another program has it; choose another --port, or --port 0 for any free one)"
    ]
    assert "serving on" not in result.stdout


def test_an_unknown_host_is_one_line_and_exit_1() -> None:
    result = diaproto_command("serve", "--host", "no-such-host.invalid", "--port", "0")
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("diaproto: cannot listen on no-such-host.invalid:0: ")


@pytest.mark.parametrize(
    ("blocked", "runtime", "who", "extra"),
    [
        ("prometheus_client", "asyncio", "diaproto serve", "serve"),
        ("prometheus_client,anyio,trio,tornado", "sockets", "diaproto serve", "serve"),
        ("trio", "trio", "diaproto serve --runtime trio", "serve"),
        ("anyio", "anyio", "diaproto serve --runtime anyio", "serve"),
        ("tornado", "tornado", "diaproto serve --runtime tornado", "tornado"),
    ],
)
def test_a_missing_extra_names_the_install_command(
    blocked: str, runtime: str, who: str, extra: str
) -> None:
    """``pip install diaproto`` has only h11 and wsproto: serve says what else to install."""
    result = without_modules(blocked, "serve", "--runtime", runtime, "--port", "0")
    assert result.returncode == 2, result.stderr
    missing = blocked.partition(",")[0]
    assert result.stderr.splitlines() == [
        f"diaproto: {who} needs {missing}, which is not installed: pip install 'diaproto[{extra}]'"
    ]
    assert "serving on" not in result.stdout


@pytest.mark.parametrize("value", ["0", "0.05", "101", "nan", "fast"])
def test_a_gil_switch_interval_out_of_range_is_a_usage_error(value: str) -> None:
    result = diaproto_command("serve", "--gil-switch-ms", value)
    assert result.returncode == 2, result.stderr
    assert "argument --gil-switch-ms" in result.stderr.splitlines()[-1]


def test_the_gil_switch_interval_is_set_while_serving_then_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[float] = []
    monkeypatch.setattr(adapters, "run", lambda *_, **__: seen.append(sys.getswitchinterval()))
    before = sys.getswitchinterval()
    assert cli.main(["serve", "--port", "0", "--gil-switch-ms", "0.5"]) == 0
    assert seen == [pytest.approx(0.0005)]
    assert sys.getswitchinterval() == before
