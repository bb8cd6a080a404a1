"""``diaproto serve --cluster``: real worker processes sharing a real Valkey. A client moves
from one process to another mid-stream; a worker killed with SIGKILL leaves its listeners on
the other worker an explicit ``generation_lost``; a worker that loses Redis says "degraded" on
``/healthz`` and refuses new streams with 503 and ``Retry-After``, and recovers with Redis."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from support import POLL_LIMIT, records, wait_until
from test_make_run import EXIT_LIMIT, free_port, read_until_url
from valkey_server import ValkeyServer, valkey_server
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from diaproto.apps.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
TEXT = "One worker starts this. Another one finishes it. Nothing is lost between them."


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    with valkey_server(tmp_path) as server:
        yield server


class Worker:
    def __init__(self, valkey: ValkeyServer, name: str) -> None:
        self.port = free_port()
        command = [
            sys.executable, "-m", "diaproto.apps.cli", "serve", "--port", str(self.port),
            "--cluster", valkey.url, "--worker-name", name,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        self.url, self.output = read_until_url(self.process, self.port)

    def ws(self) -> ClientConnection:
        return connect(
            f"ws://127.0.0.1:{self.port}/ws",
            subprotocols=[Subprotocol("diaproto.v1")],
            proxy=None,
            open_timeout=POLL_LIMIT,
        )

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            rest, _ = self.process.communicate(timeout=EXIT_LIMIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            rest, _ = self.process.communicate(timeout=EXIT_LIMIT)
        return self.output + rest.decode(errors="replace")


@pytest.fixture
def start(valkey: ValkeyServer) -> Iterator[Callable[[str], Worker]]:
    with ExitStack() as stack:

        def started(name: str) -> Worker:
            worker = Worker(valkey, name)
            stack.callback(worker.stop)
            return worker

        yield started


def read(ws: ClientConnection, count: int | None = None) -> tuple[list[int], dict[str, object]]:
    seqs: list[int] = []
    for _ in range(100_000):
        message = ws.recv(timeout=POLL_LIMIT)
        if isinstance(message, str):
            control = json.loads(message)
            if control["type"] in ("end", "error"):
                return seqs, control
            continue
        seqs.extend(seq for _, seq, _ in records(message))
        if count is not None and len(seqs) >= count:
            return seqs, {}
    raise AssertionError("the stream did not end")


def opened(ws: ClientConnection, text: str = TEXT) -> str:
    ws.send(json.dumps({"type": "open", "stream": 1, "text": text}))
    ack = json.loads(ws.recv(timeout=POLL_LIMIT))
    assert ack["type"] == "open", ack
    return str(ack["token"])


def test_a_stream_moves_between_worker_processes(start: Callable[[str], Worker]) -> None:
    a, b = start("front-a"), start("front-b")
    assert "worker front-a of the cluster" in a.output
    with a.ws() as ws:
        token = opened(ws)
        first, _ = read(ws, count=10)
    with b.ws() as ws:
        ws.send(json.dumps({"type": "resume", "stream": 1, "token": token, "after": first[-1]}))
        rest, end = read(ws)
    assert end["type"] == "end", end
    seqs = first + rest
    assert seqs == list(range(1, len(seqs) + 1)), "lost or repeated records"
    with httpx.Client(trust_env=False, timeout=POLL_LIMIT) as http:
        health = http.get(b.url + "healthz")
    assert health.status_code == 200 and "worker front-b" in health.text


def test_a_killed_worker_leaves_its_listeners_elsewhere_generation_lost(
    start: Callable[[str], Worker],
) -> None:
    a, b = start("doomed"), start("survivor")
    long_text = " ".join(f"Sentence {n} keeps this going." for n in range(20))
    with a.ws() as ws:
        token = opened(ws, long_text)
        first, _ = read(ws, count=5)
    with b.ws() as ws:
        ws.send(json.dumps({"type": "resume", "stream": 1, "token": token, "after": first[-1]}))
        read(ws, count=5)  # b hears it, through the journal
        a.process.kill()  # SIGKILL: no end is ever written
        a.process.wait(timeout=EXIT_LIMIT)
        _, outcome = read(ws)
    assert outcome["type"] == "error", "a stream whose producer died does not just end"
    assert outcome["code"] == "generation_lost", outcome
    assert "doomed" in str(outcome["message"])


def test_a_worker_without_redis_is_degraded_and_recovers(
    start: Callable[[str], Worker], valkey: ValkeyServer
) -> None:
    worker = start("lonely")
    with httpx.Client(trust_env=False, timeout=POLL_LIMIT) as http:
        assert http.get(worker.url + "healthz").status_code == 200
        valkey.kill()
        wait_until(
            lambda: http.get(worker.url + "healthz").status_code == 503,
            "the worker says it is degraded",
        )
        assert "degraded" in http.get(worker.url + "healthz").text
        refused = http.get(worker.url + "v1/stream", params={"text": "Hi."})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "journal" in refused.json()["error"]["message"]
        valkey.start()
        wait_until(
            lambda: http.get(worker.url + "healthz").status_code == 200,
            "the worker recovers with Redis",
            limit=POLL_LIMIT * 2,
        )
        answer = http.get(worker.url + "v1/stream", params={"text": "Hi."})
        assert answer.status_code == 200 and "event: end" in answer.text
    assert "Traceback" not in worker.stop()


def test_the_compose_file_runs_commands_this_version_accepts() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"valkey", "front-a", "front-b", "model-1"}
    assert "noeviction" in services["valkey"]["command"]
    roles = {}
    for name in ("front-a", "front-b", "model-1"):
        script = services[name]["command"]
        argv = shlex.split(script.split("&&", 1)[1].strip().rstrip('"'))
        assert argv[0] == "diaproto"
        args = build_parser().parse_args(argv[1:])
        assert args.cluster == "redis://valkey:6379/0"
        assert args.worker_name == name
        roles[name] = (args.command, getattr(args, "queue", False))
    assert roles == {
        "front-a": ("serve", True),
        "front-b": ("serve", True),
        "model-1": ("worker", False),
    }
