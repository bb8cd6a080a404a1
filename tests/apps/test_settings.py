"""Options from flags, DIAPROTO_* variables and a TOML file (apps/settings.py): precedence,
conversion, secrets from files, and the one-line errors; then ``diaproto serve`` configured by
its environment alone, with its MCP token in a file, as a real process."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support import JSON_AND_SSE, initialize, rpc
from test_make_run import EXIT_LIMIT, free_port, read_until_url

from diaproto.apps import cli, settings
from diaproto.apps.cli import build_parser, main
from diaproto.apps.settings import SECRET_OPTIONS, SettingsError, parse_args

LIMIT = 60.0


def parse(
    argv: list[str],
    env: dict[str, str] | None = None,
    parser: argparse.ArgumentParser | None = None,
) -> argparse.Namespace:
    return parse_args(parser or build_parser(), argv, env or {})


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "diaproto.toml"
    path.write_text(text)
    return str(path)


# --- precedence and conversion --------------------------------------------------------------


def test_defaults_when_nothing_is_given() -> None:
    args = parse(["serve"])
    assert (args.port, args.runtime, args.access_log, args.allow_origin) == (
        8000,
        "asyncio",
        True,
        [],
    )
    assert args.mcp_token is None and args.log_format == "text"


def test_flags_win_over_the_environment_over_the_file(tmp_path: Path) -> None:
    path = config(tmp_path, 'port = 7001\nruntime = "trio"\nlog-level = "debug"\n')
    env = {"DIAPROTO_CONFIG": path, "DIAPROTO_PORT": "7002", "DIAPROTO_RUNTIME": "tornado"}
    args = parse(["serve", "--port", "7003"], env)
    assert args.port == 7003  # the flag
    assert args.runtime == "tornado"  # the environment over the file
    assert args.log_level == "debug"  # the file over the default
    assert parse(["serve", "--config", path]).port == 7001
    assert parse(["worker", "--cluster", "redis://x"]).port == 8001  # worker's own default


def test_lists_switches_and_aliases(tmp_path: Path) -> None:
    env = {
        "DIAPROTO_ALLOW_ORIGIN": "https://a.example, https://b.example,",
        "DIAPROTO_MCP_ALLOW_HOST": "api.example",  # an alias of --allow-host
        "DIAPROTO_UVLOOP": "yes",
        "DIAPROTO_ACCESS_LOG": "off",
    }
    args = parse(["serve"], env)
    assert args.allow_origin == ["https://a.example", "https://b.example"]
    assert args.allow_host == ["api.example"]
    assert args.uvloop is True and args.access_log is False
    # A flag replaces the list; it is not appended to the environment's.
    assert parse(["serve", "--allow-origin", "https://c.example"], env).allow_origin == [
        "https://c.example"
    ]
    assert parse(["serve", "--access-log"], env).access_log is True
    path = config(tmp_path, 'allow_origin = ["https://d.example"]\nuvloop = false\n')
    args = parse(["serve", "--config", path])
    assert args.allow_origin == ["https://d.example"] and args.uvloop is False


def test_a_table_per_subcommand(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        'host = "0.0.0.0"\n[worker]\njobs = 9\ncluster = "redis://r:6379/0"\n[serve]\nport = 9\n',
    )
    worker = parse(["worker", "--config", path])  # --cluster, required, from the file
    assert (worker.host, worker.jobs, worker.cluster, worker.port) == (
        "0.0.0.0",
        9,
        "redis://r:6379/0",
        8001,
    )
    serve = parse(["serve", "--config", path])
    assert (serve.host, serve.port) == ("0.0.0.0", 9)


def test_a_required_option_still_is() -> None:
    with pytest.raises(SystemExit) as exited:
        parse(["worker"])
    assert exited.value.code == 2
    assert parse(["worker"], {"DIAPROTO_CLUSTER": "redis://h"}).cluster == "redis://h"


# --- secrets ----------------------------------------------------------------------------------


def test_every_secret_has_a_file_twin() -> None:
    for sub in ("serve", "worker"):
        args = parse([sub, "--cluster", "redis://x"] if sub == "worker" else [sub])
        for dest in SECRET_OPTIONS & set(vars(args)):
            assert hasattr(args, f"{dest}_file")
    assert "mcp_token" in vars(parse(["serve"]))


def test_a_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    assert parse(["serve", "--mcp-token-file", str(secret)]).mcp_token == "s3cret"
    env = {"DIAPROTO_MCP_TOKEN_FILE": str(secret)}
    args = parse(["serve"], env)
    assert args.mcp_token == "s3cret" and args.mcp_token_file is None
    assert parse(["serve", "--mcp-token", "flag"], env).mcp_token == "flag"  # flags first
    assert (
        parse(["serve"], {**env, "DIAPROTO_CONFIG": config(tmp_path, 'mcp_token = "f"')}).mcp_token
        == "s3cret"
    )
    path = config(tmp_path, f'mcp-token-file = "{secret}"')
    assert parse(["serve", "--config", path]).mcp_token == "s3cret"


@pytest.mark.parametrize(
    ("content", "message"), [(None, "cannot read it"), ("\n", "the file is empty")]
)
def test_a_secret_file_that_cannot_serve(tmp_path: Path, content: str | None, message: str) -> None:
    secret = tmp_path / "token"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(SettingsError, match=message) as raised:
        parse(["serve"], {"DIAPROTO_MCP_TOKEN_FILE": str(secret)})
    assert "environment: mcp_token_file" in str(raised.value)


def test_a_secret_and_its_file_in_one_source(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("x")
    env = {"DIAPROTO_MCP_TOKEN": "a", "DIAPROTO_MCP_TOKEN_FILE": str(secret)}
    with pytest.raises(SettingsError, match="environment: give mcp-token or mcp-token-file"):
        parse(["serve"], env)


def test_secret_options_that_the_parser_lacks_are_skipped() -> None:
    parser = argparse.ArgumentParser(prog="tool")
    sub = parser.add_subparsers(dest="command", required=True).add_parser("run")
    sub.add_argument("--api-key")
    sub.add_argument("--count", type=int, default=1)
    sub.add_argument("--limit", type=int, default="5")  # a string default goes through type
    settings.add_options(parser)
    args = parse(["run"], {"DIAPROTO_API_KEY": "k", "DIAPROTO_COUNT": "3"}, parser)
    assert (args.api_key, args.count, args.limit) == ("k", 3, 5)
    assert not hasattr(args, "mcp_token")


def test_a_parser_without_subcommands_is_parsed_as_it_is() -> None:
    parser = argparse.ArgumentParser(prog="plain")
    parser.add_argument("--port", type=int, default=1)
    settings.add_options(parser)  # nothing to add to
    assert parse(["--port", "2"], {"DIAPROTO_PORT": "3"}, parser).port == 2


# --- errors: one line that names the source -------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DIAPROTO_PORT": "http"}, "DIAPROTO_PORT='http': 'http' is not a port"),
        ({"DIAPROTO_RUNTIME": "gevent"}, "DIAPROTO_RUNTIME='gevent': invalid choice"),
        ({"DIAPROTO_UVLOOP": "maybe"}, "DIAPROTO_UVLOOP='maybe': not a boolean"),
        ({"DIAPROTO_MAX_REQUESTS": "many"}, "DIAPROTO_MAX_REQUESTS='many'"),
    ],
)
def test_a_bad_environment_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        parse(["serve"], env)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1\n", "unknown key 'prot' for 'diaproto serve'"),
        ("jobs = 3\n", "unknown key 'jobs' for 'diaproto serve'"),  # a worker's option
        ("config = 'other.toml'\n", "unknown key 'config'"),
        ("[serv]\nport = 1\n", "unknown key 'serv'"),
        ("port = [1, 2]\n", "port=\\[1, 2\\]: expected one value, not list"),
        ("port = 99999\n", "port=99999: '99999' is not a port"),
        ("port = \n", "not TOML"),
    ],
)
def test_a_bad_file(tmp_path: Path, text: str, message: str) -> None:
    path = config(tmp_path, text)
    with pytest.raises(SettingsError, match=message) as raised:
        parse(["serve", "--config", path])
    assert str(raised.value).startswith(path) or "--config" in str(raised.value)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"--config .*nope.toml: No such file"):
        parse(["serve"], {"DIAPROTO_CONFIG": str(tmp_path / "nope.toml")})


def test_main_prints_one_line_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIAPROTO_CONFIG", config(tmp_path, "prot = 1\n"))
    with pytest.raises(SystemExit) as exited:
        main(["serve"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key 'prot'" in err and err.startswith("diaproto: ")


# --- the real command, configured by its environment ----------------------------------------


def test_serve_configured_by_the_environment_alone(tmp_path: Path) -> None:
    token = "tok-" + os.urandom(8).hex()
    secret = tmp_path / "mcp_token"
    secret.write_text(token + "\n")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DIAPROTO_PORT": str(port),
        "DIAPROTO_MCP_TOKEN_FILE": str(secret),
        "DIAPROTO_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "diaproto.apps.cli", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        url, _ = read_until_url(process, port, limit=LIMIT)
        argv = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert not any(token.encode() in arg for arg in argv)  # what ps shows
        with httpx.Client(timeout=LIMIT) as client:
            refused = client.post(url + "mcp", json=rpc("ping"), headers=JSON_AND_SSE)
            assert refused.status_code == 401
            client.headers["authorization"] = f"Bearer {token}"
            initialize(client, url + "mcp")
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=EXIT_LIMIT)
    assert process.returncode == 0
    assert token not in output.decode(errors="replace")


def test_an_empty_secret_is_refused_not_taken_as_none() -> None:
    """``DIAPROTO_API_KEY=`` (a compose file's unset variable) must not turn the keys off."""
    for argv, environ in (
        (["serve"], {"DIAPROTO_API_KEY": ""}),
        (["serve"], {"DIAPROTO_MCP_TOKEN": "  "}),
        (["serve", "--api-key", ""], {}),
    ):
        with pytest.raises(SettingsError, match="is set but empty"):
            parse_args(build_parser(), argv, environ)


def test_a_bad_secret_is_never_echoed(tmp_path: Path) -> None:
    config = tmp_path / "diaproto.toml"
    config.write_text('api_key = ["sk-secret-1", "sk-secret-2"]\n')
    with pytest.raises(SettingsError) as caught:
        parse_args(build_parser(), ["serve", "--config", str(config)], {})
    assert "sk-secret" not in str(caught.value) and "<hidden>" in str(caught.value)


def test_api_keys_split_on_commas_or_lines_and_none_at_all_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli._api_keys("sk-a, sk-b\nsk-c\n") == ("sk-a", "sk-b", "sk-c")  # a file's lines
    assert cli._api_keys(None) == ()
    assert cli.main(["serve", "--api-key", " , "]) == 2
    assert "--api-key is set but holds no key" in capsys.readouterr().err


def test_a_kubernetes_service_link_is_not_taken_for_the_port() -> None:
    args = parse_args(build_parser(), ["serve"], {"DIAPROTO_PORT": "tcp://10.96.0.12:8000"})
    assert args.port == 8000
