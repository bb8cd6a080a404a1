"""``diaproto mcp --stdio``: MCP as newline-delimited JSON-RPC on stdin and stdout.

Three ways in: the official SDK's stdio client against the real command (a subprocess), raw
lines against the real command (bad input, what stdout carries, the exit), and the same
server in this process on pipes (so that coverage sees it). Waits are bounded by ``LIMIT``
and never timed; every process started here is stopped by its handle.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import IO, Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_types import AudioContent, TextContent
from support import fast_source, initialize_params, rpc

from diaproto.adapters import stdio as stdio_adapter
from diaproto.adapters.asyncio import AsyncioRuntime
from diaproto.adapters.stdio import LineWriter, read_input, reserve_stdout, serve_lines
from diaproto.apps import cli
from diaproto.apps.mcp.transports.stdio import LineSplitter, LineTooLong, StdioTransport
from diaproto.apps.mcp.transports.stdio_session import (
    ForwardLogs,
    ServiceRefused,
    StdioSession,
    make_service,
    mcp_level,
)
from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.sources import Source, SyntheticSource
from diaproto.mcp import McpHttpConfig
from diaproto.mcp.jsonrpc import INVALID_REQUEST, PARSE_ERROR

LIMIT = 60.0  # seconds a bounded wait may take on a loaded machine before the test fails
COMMAND = [sys.executable, "-m", "diaproto", "mcp", "--stdio"]
LINE_BOUND = McpHttpConfig().max_body_bytes
Message = dict[str, Any]


def wav_of(data: str) -> tuple[float, int]:
    """(seconds, loudest sample) of a base64 WAV, decoded independently of the server."""
    with wave.open(io.BytesIO(base64.b64decode(data, validate=True))) as clip:
        assert (clip.getnchannels(), clip.getsampwidth()) == (1, 2)
        frames = clip.readframes(clip.getnframes())
        seconds = clip.getnframes() / clip.getframerate()
    samples = memoryview(frames).cast("h")
    return seconds, max(abs(sample) for sample in samples)


def speak_request(rid: int, text: str) -> Message:
    params = {"name": "speak", "arguments": {"text": text}, "_meta": {"progressToken": f"p{rid}"}}
    return rpc("tools/call", params, rid)


# --- the official SDK as the client ---------------------------------------------------------


def test_the_sdk_speaks_with_the_stdio_server() -> None:
    reports: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append(progress)

    async def main() -> None:
        with anyio.fail_after(LIMIT):
            server = StdioServerParameters(command=sys.executable, args=COMMAND[1:])
            async with (
                stdio_client(server, errlog=stderr) as (read, write),
                ClientSession(read, write) as client,
            ):
                info = await client.initialize()
                assert info.server_info.name == "diaproto"
                tools = {tool.name for tool in (await client.list_tools()).tools}
                assert {"speak", "list_voices"} <= tools
                result = await client.call_tool(
                    "speak", {"text": "Hello over standard input."}, progress_callback=on_progress
                )
                assert result.is_error is not True, result
                audio, summary = result.content
                assert isinstance(audio, AudioContent) and audio.mime_type == "audio/wav"
                assert isinstance(summary, TextContent) and "Spoke" in summary.text
                seconds, loudest = wav_of(audio.data)
                assert 0.3 < seconds < 30.0
                assert loudest > 1000  # speech-like, not silence
                # Progress is audio seconds generated so far: the WAV holds at least that much.
                assert reports and reports[-1] <= seconds + 0.01
                assert reports == sorted(set(reports))
                second = await client.call_tool("speak", {"text": "And once more.", "voice": "S2"})
                assert second.is_error is not True, second
                assert isinstance(second.content[0], AudioContent)
                assert second.structured_content is not None
                assert second.structured_content["voice"] == "S2"
                assert wav_of(second.content[0].data)[0] > 0.3
                voices = await client.call_tool("list_voices", {})
                assert voices.structured_content is not None
                assert [v["id"] for v in voices.structured_content["voices"]] == ["S1", "S2"]

    with tempfile.TemporaryFile(mode="w+") as stderr:
        anyio.run(main)
        stderr.seek(0)
        assert "MCP over stdio" in stderr.read()  # the server's logs went to stderr


# --- raw lines against the real command ------------------------------------------------------


class StdioProcess:
    """``diaproto mcp --stdio`` as a subprocess: lines in, every stdout line kept (parsed)."""

    def __init__(self, stderr: IO[bytes], *args: str) -> None:
        # stderr to a file: a chatty server cannot block on a full pipe while stdout is read.
        self.stderr = stderr
        self.process = subprocess.Popen(
            [*COMMAND, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        self.lines: list[bytes] = []  # every stdout line, as it came
        self._messages: queue.Queue[Message | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            self._messages.put(json.loads(line))
        self._messages.put(None)

    def send(self, message: Message | bytes) -> None:
        assert self.process.stdin is not None
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def next(self, wanted: Callable[[Message], bool]) -> Message:
        """The next message ``wanted`` accepts (those before it are skipped)."""
        while True:
            message = self._messages.get(timeout=LIMIT)
            assert message is not None, "stdout ended"
            if wanted(message):
                return message

    def answer(self, rid: int | None) -> Message:
        return self.next(lambda m: "method" not in m and m.get("id") == rid)

    def handshake(self) -> None:
        self.send(rpc("initialize", initialize_params(), 0))
        assert self.answer(0)["result"]["serverInfo"]["name"] == "diaproto"
        self.send(rpc("notifications/initialized", rid=None))

    def end_input(self) -> int:
        """Close stdin (the client's way to stop its server): the exit status."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        status = self.process.wait(timeout=LIMIT)
        self._reader.join(LIMIT)
        return status

    def logged(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=LIMIT)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@contextmanager
def stdio_process(*args: str) -> Iterator[StdioProcess]:
    with tempfile.TemporaryFile() as stderr:
        running = StdioProcess(stderr, *args)
        try:
            yield running
        finally:
            running.stop()


def is_log(message: Message) -> bool:
    return message.get("method") == "notifications/message"


def test_bad_lines_are_refused_and_the_server_goes_on() -> None:
    with stdio_process("--log-level", "debug") as server:
        server.handshake()
        server.send(b"{not json\n")
        error = server.answer(None)["error"]
        assert error["code"] == PARSE_ERROR
        # The refusal is logged (stderr), and the client hears it too (info and up by default).
        assert server.next(is_log)["params"]["level"] == "warning"
        server.send(b"\xff\xfe not utf-8\n")
        assert server.answer(None)["error"]["code"] == PARSE_ERROR
        for not_an_object in (b"[1, 2]\n", b"42\n", b'"text"\n', b'{"jsonrpc": "1.0"}\n'):
            server.send(not_an_object)
            assert server.answer(None)["error"]["code"] == INVALID_REQUEST
        server.send(b"\n   \n")  # blank lines carry nothing
        server.send(rpc("ping", rid=7))
        assert server.answer(7)["result"] == {}
        assert server.end_input() == 0
        assert "refused a line" in server.logged()
    assert all(json.loads(line) for line in server.lines)


def test_an_over_long_line_is_refused_and_the_next_one_served() -> None:
    with stdio_process() as server:
        server.handshake()
        # Longer than the bound, sent in pieces: refused as it arrives, not held whole.
        server.send(b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "')
        for _ in range(3):
            server.send(b"x" * (LINE_BOUND // 2))
        server.send(b'"}}\n')
        error = server.answer(None)["error"]
        assert error["code"] == INVALID_REQUEST
        assert str(LINE_BOUND) in error["message"]
        server.send(rpc("ping", rid=2))
        assert server.answer(2)["result"] == {}
        assert server.end_input() == 0


def test_stdout_carries_only_messages_and_the_logs_go_to_stderr() -> None:
    with stdio_process("--log-level", "debug") as server:
        server.handshake()
        server.send(rpc("tools/list", rid=1))
        assert {tool["name"] for tool in server.answer(1)["result"]["tools"]} >= {"speak"}
        server.send(speak_request(2, "Every line is a message."))
        result = server.answer(2)["result"]
        assert result["isError"] is False
        assert [item["type"] for item in result["content"]] == ["audio", "text"]  # no link
        assert server.end_input() == 0
        logged = server.logged()
    assert server.lines
    for line in server.lines:
        assert line.endswith(b"\n") and b"\n" not in line[:-1]
        assert json.loads(line)["jsonrpc"] == "2.0"
    assert "INFO diaproto.mcp: MCP over stdio" in logged
    assert "MCP over stdio" not in b"".join(server.lines).decode()


def test_end_of_input_ends_a_call_in_flight_and_exits_cleanly() -> None:
    with stdio_process() as server:
        server.handshake()
        server.send(speak_request(1, " ".join(f"word{i}" for i in range(400))))
        server.next(lambda m: m.get("method") == "notifications/progress")
        assert server.end_input() == 0  # cancelled, not waited for


def test_mcp_needs_stdio() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "diaproto", "mcp"],
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
    )
    assert result.returncode == 2
    assert "--stdio" in result.stderr


# --- the same server in this process, on pipes ----------------------------------------------


class PipeServer:
    """``serve_lines`` with the MCP session on a thread of its own, between two pipes this
    test holds."""

    def __init__(self, service: DiaService) -> None:
        self.service = service
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        self.stdin: int | None = stdin_write
        self.stdout: int | None = stdout_read
        self._server_stdin = stdin_read
        self._server_stdout = os.fdopen(stdout_write, "wb")
        self._failures: list[BaseException] = []
        self._buffer = b""
        self.thread = threading.Thread(target=self._serve, args=(service,), daemon=True)
        self.thread.start()

    def _serve(self, service: DiaService) -> None:
        try:
            asyncio.run(
                serve_lines(
                    partial(StdioSession, service),
                    self._server_stdin,
                    self._server_stdout,
                )
            )
        except BaseException as exc:  # re-raised in the test
            self._failures.append(exc)

    def send(self, data: Message | bytes) -> None:
        assert self.stdin is not None
        payload = data if isinstance(data, bytes) else json.dumps(data).encode() + b"\n"
        os.write(self.stdin, payload)

    def end_input(self) -> None:
        if self.stdin is not None:
            os.close(self.stdin)
            self.stdin = None

    def stop_reading(self) -> None:
        if self.stdout is not None:
            os.close(self.stdout)
            self.stdout = None

    def next(self, wanted: Callable[[Message], bool]) -> Message:
        while True:
            while b"\n" not in self._buffer:
                assert self.stdout is not None
                chunk = os.read(self.stdout, 1 << 16)  # the thread's end ends it: no hang
                assert chunk, "stdout ended"
                self._buffer += chunk
            line, _, self._buffer = self._buffer.partition(b"\n")
            message: Message = json.loads(line)
            if wanted(message):
                return message

    def answer(self, rid: int | None) -> Message:
        return self.next(lambda m: "method" not in m and m.get("id") == rid)

    def finish(self) -> None:
        """End the input, wait for the server to stop, close every descriptor."""
        self.end_input()
        self.thread.join(LIMIT)
        assert not self.thread.is_alive()
        with suppress(BrokenPipeError):  # a test that stopped reading left a line unsent
            self._server_stdout.close()
        self.stop_reading()
        os.close(self._server_stdin)
        if self._failures:
            raise self._failures[0]


@contextmanager
def pipe_server(source: Source | None = None) -> Iterator[PipeServer]:
    config = McpHttpConfig(max_inline_audio_bytes=sys.maxsize)
    server = PipeServer(DiaService(source or fast_source(), mcp_config=config))
    try:
        yield server
    finally:
        server.finish()


def test_in_process_a_call_streams_progress_and_logs_and_answers_with_audio() -> None:
    with pipe_server() as server:
        server.send(rpc("initialize", initialize_params(), 0))
        server.answer(0)
        server.send(rpc("notifications/initialized", rid=None))
        server.send(rpc("logging/setLevel", {"level": "debug"}, 1))
        assert server.answer(1)["result"] == {}
        server.send(b'{"jsonrpc": "2.0", "id": 2, "method": "ping"\n')  # cut short
        assert server.answer(None)["error"]["code"] == PARSE_ERROR
        note = server.next(is_log)["params"]
        assert (note["level"], note["logger"]) == ("warning", "diaproto.mcp")
        server.send(b"x" * (LINE_BOUND + 1) + b"\n")
        assert server.answer(None)["error"]["code"] == INVALID_REQUEST
        # Long enough for a WAV past the HTTP transports' inline limit: inline here all the same.
        server.send(speak_request(3, " ".join(f"Sentence {n} speaks." for n in range(20))))
        progress = server.next(lambda m: m.get("method") == "notifications/progress")
        assert progress["params"]["progressToken"] == "p3"
        result = server.answer(3)["result"]
        audio = result["content"][0]
        assert audio["type"] == "audio"
        assert len(base64.b64decode(audio["data"])) > McpHttpConfig().max_inline_audio_bytes
        seconds, loudest = wav_of(audio["data"])
        assert seconds > 1.0 and loudest > 1000
        # The last line has no newline: it is read at the end of the input, and answered.
        server.send(rpc("ping", rid=4))
        server.send(b'{"jsonrpc": "2.0", "id": 5, "method": "ping"}')
        assert server.answer(4)["result"] == {}
        server.end_input()
        assert server.answer(5)["result"] == {}


def test_in_process_a_client_gone_from_stdout_ends_the_server() -> None:
    with pipe_server() as server:
        server.send(rpc("initialize", initialize_params(), 0))
        server.answer(0)
        server.stop_reading()
        server.send(rpc("ping", rid=1))  # its answer meets a closed pipe
        server.thread.join(LIMIT)
        assert not server.thread.is_alive()


def test_in_process_a_cancelled_call_gets_no_answer() -> None:
    # Paced so that the call takes many seconds: the cancel lands while it runs.
    with pipe_server(SyntheticSource(real_time_factor=0.2, first_chunk_latency=0.005)) as server:
        server.send(rpc("initialize", initialize_params(), 0))
        server.answer(0)
        server.send(rpc("notifications/initialized", rid=None))
        server.send(speak_request(1, " ".join(f"word{i}" for i in range(400))))
        server.next(lambda m: m.get("method") == "notifications/progress")
        cancel = {"requestId": 1, "reason": "changed my mind"}
        server.send(rpc("notifications/cancelled", cancel, rid=None))
        server.send(rpc("ping", rid=2))
        # Nothing about request 1 after the ping's answer would be a response to it.
        answered = server.next(lambda m: "method" not in m)
        assert answered["id"] == 2
        # And its generation stopped (paced, it would run for many seconds more).
        deadline = time.monotonic() + LIMIT
        while server.service.generations.live and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.service.generations.live


# --- the parts ------------------------------------------------------------------------------


def test_lines_split_across_chunks() -> None:
    splitter = LineSplitter(limit=10)
    assert list(splitter.feed(b'{"a"')) == []
    assert list(splitter.feed(b":1}\n{}\n[")) == [b'{"a":1}', b"{}"]
    assert list(splitter.feed(b"]")) == []
    assert splitter.finish() == b"[]"
    assert splitter.finish() == b""


def test_an_over_long_line_is_dropped_as_it_arrives() -> None:
    splitter = LineSplitter(limit=10)
    out = list(splitter.feed(b"x" * 8))
    assert out == [] and splitter.buffered == 8
    out = list(splitter.feed(b"x" * 8))  # past the bound: reported once, nothing held
    assert [type(item) for item in out] == [LineTooLong] and splitter.buffered == 0
    for _ in range(100):
        assert list(splitter.feed(b"x" * 1000)) == []
        assert splitter.buffered == 0
    assert list(splitter.feed(b"xx\nok\n")) == [b"ok"]
    # Whole in one chunk, and exactly at the bound.
    out = list(splitter.feed(b"y" * 11 + b"\n" + b"z" * 10 + b"\n"))
    assert isinstance(out[0], LineTooLong) and out[0].limit == 10
    assert out[1:] == [b"z" * 10]


def test_log_levels_map_to_mcp_names() -> None:
    names = [mcp_level(level) for level in (5, 10, 20, 30, 40, 50, 60)]
    assert names == ["debug", "debug", "info", "warning", "error", "critical", "critical"]


def test_a_link_is_never_handed_out() -> None:
    service = DiaService(fast_source())
    transport = StdioTransport(service.mcp, _Clock(), lambda line: None)
    with pytest.raises(RuntimeError, match="no audio links over stdio"):
        transport.peer.keep_audio(b"RIFF")
    lines: list[str] = []
    transport = StdioTransport(service.mcp, _Clock(), lines.append)
    transport.close()
    transport.close()
    transport.receive_data(b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}\n')  # ignored
    transport.receive_eof()
    transport.log("error", "too late", "diaproto")  # nothing to send it to
    assert lines == []  # a closed session answers nothing


def test_a_broken_stdout_is_reported_once() -> None:
    ended: list[bool] = []

    class Broken(io.BytesIO):
        def write(self, data: Any) -> int:
            raise BrokenPipeError("gone")

    writer = LineWriter(Broken(), on_broken=lambda: ended.append(True))
    writer.write("{}")
    writer.write("{}")
    assert writer.broken and ended == [True]


def test_logs_are_posted_to_the_loop_and_dropped_once_it_closed() -> None:
    service = DiaService(fast_source())
    lines: list[str] = []
    transport = StdioTransport(service.mcp, _Clock(), lines.append)
    record = logging.LogRecord("diaproto", logging.WARNING, __file__, 1, "careful", None, None)
    posted: list[Callable[[], None]] = []
    ForwardLogs(transport, posted.append).emit(record)
    assert len(posted) == 1 and lines == []  # later, on the loop: never inside the logger
    posted[0]()
    assert json.loads(lines[0])["params"]["data"] == "careful"
    loop = asyncio.new_event_loop()
    loop.close()

    def closed_loop(call: Callable[[], None]) -> None:
        loop.call_soon_threadsafe(call)

    ForwardLogs(transport, closed_loop).emit(record)  # no error: dropped
    assert len(lines) == 1


def test_the_service_is_the_chosen_model_with_inline_audio() -> None:
    args = argparse.Namespace(model="synthetic", log_level="info")
    service = make_service(args, lambda _: {})
    assert service.source.name == "synthetic"
    assert service.mcp.config.max_inline_audio_bytes == sys.maxsize
    with pytest.raises(ServiceRefused, match="apply to --model dia only"):
        make_service(args, _dia_flags_given)


def test_a_refused_command_line_exits_with_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(logging, "basicConfig", lambda **_: None)
    _, protocol = os.pipe()
    monkeypatch.setattr(stdio_adapter, "reserve_stdout", lambda: os.fdopen(protocol, "wb"))
    monkeypatch.setattr(cli, "_model_options", _dia_flags_given)
    args = argparse.Namespace(model="synthetic", log_level="info")
    assert cli.run_stdio(args) == 2
    assert "apply to --model dia only" in capsys.readouterr().err


def test_the_command_serves_until_its_input_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """``diaproto mcp --stdio``'s function itself, here in the main thread (its signal
    handlers included), on pipes in place of the process's stdin and stdout."""
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    monkeypatch.setattr(logging, "basicConfig", lambda **_: None)
    monkeypatch.setattr(sys, "stdin", _Descriptor(stdin_read))
    monkeypatch.setattr(stdio_adapter, "reserve_stdout", lambda: os.fdopen(stdout_write, "wb"))
    monkeypatch.setattr(cli, "_model_options", lambda _: {})
    os.write(stdin_write, json.dumps(rpc("initialize", initialize_params(), 0)).encode() + b"\n")
    os.close(stdin_write)
    args = argparse.Namespace(model="synthetic", log_level="info")
    try:
        assert cli.run_stdio(args) == 0
        with os.fdopen(stdout_read, "rb") as stdout:
            (line,) = stdout.read().splitlines()
        assert json.loads(line)["result"]["serverInfo"]["name"] == "diaproto"
    finally:
        os.close(stdin_read)


def test_stdout_is_kept_for_the_protocol_and_the_rest_goes_to_stderr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    protocol_read, protocol_write = os.pipe()
    logs_read, logs_write = os.pipe()
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    with reserve_stdout(protocol_write, logs_write) as protocol:
        assert sys.stdout is sys.stderr
        protocol.write(b"{}\n")
        protocol.flush()
        os.write(protocol_write, b"stray\n")  # now stderr's
    for fd in (protocol_write, logs_write):
        os.close(fd)
    with os.fdopen(protocol_read, "rb") as protocol_end, os.fdopen(logs_read, "rb") as logs_end:
        assert (protocol_end.read(), logs_end.read()) == (b"{}\n", b"stray\n")


def test_an_unreadable_stdin_ends_the_session() -> None:
    loop = asyncio.new_event_loop()
    try:
        runtime = AsyncioRuntime(loop)
        service = DiaService(fast_source())
        transport = StdioTransport(service.mcp, runtime, lambda line: None)
        ended: list[bool] = []
        read_input(-1, runtime, transport, lambda: ended.append(True))  # EBADF
        loop.run_until_complete(asyncio.sleep(0))
        assert ended == [True]
    finally:
        loop.close()


def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "diaproto.apps.serve.app", None)
    args = argparse.Namespace(model="synthetic", log_level="info")
    with pytest.raises(ServiceRefused, match=r"pip install 'diaproto\[serve\]'"):
        make_service(args, lambda _: {})


class _Descriptor:
    """A stand-in for ``sys.stdin``: only its file descriptor is read."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


def _dia_flags_given(args: argparse.Namespace) -> dict[str, object]:
    raise ValueError("--device apply to --model dia only")


class _Clock:
    """A runtime for the parts that read only the clock."""

    def now(self) -> float:
        return 0.0

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        callback()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        raise AssertionError("no timers here")

    def start_worker(self, target: Callable[[], None], name: str = "worker") -> None:
        raise AssertionError("no workers here")


def test_a_model_that_prints_as_it_loads_cannot_corrupt_stdout(tmp_path: Path) -> None:
    (tmp_path / "noisy_voice.py").write_text(
        "from diaproto.apps.serve.sources import SyntheticSource\n"
        "print('loading my voice model...')\n"
        "source = SyntheticSource(real_time_factor=0, first_chunk_latency=0)\n"
    )
    lines = [rpc("initialize", initialize_params(), 0), rpc("ping", rid=1)]
    result = subprocess.run(
        [*COMMAND, "--model", "noisy_voice:source"],
        input=b"".join(json.dumps(line).encode() + b"\n" for line in lines),
        capture_output=True,
        cwd=tmp_path,
        timeout=LIMIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [answer.get("id") for answer in answers if "method" not in answer] == [0, 1]
    assert b"loading my voice model..." in result.stderr
