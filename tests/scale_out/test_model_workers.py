"""Front workers that queue generations and model workers that run them, on a real Valkey: a
client of the front hears a generation run on a model worker; a job whose model worker died
before sending anything is rerun by another (the client hears it whole); one that died
midway ends with ``generation_lost`` after what was heard."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from server_fixture import RunningApp, running_app, ws_connect
from support import POLL_LIMIT, fast_source, records, synthetic_audio, wait_until
from valkey_server import valkey_server
from websockets.sync.client import ClientConnection

from diaproto.apps.serve.app import DiaService
from diaproto.apps.serve.model_queue import Admission, ModelQueue
from diaproto.apps.serve.model_worker import JobTaker, QueuedJob
from diaproto.apps.serve.sources import Source
from diaproto.cluster import RedisJournal
from diaproto.cluster.jobs import JobConsumer

TEXT = "A model worker speaks this. The front worker only listens."
CLAIM_AFTER = 1.0  # a dead worker's job is taken over after a second (15 s in production)


class StallingSource:
    """Yields ``before`` chunks of the test voice, then hangs until told to stop."""

    name = "stalling"
    model_queue: ModelQueue | None = None

    def __init__(self, before: int) -> None:
        self.before = before
        self.started = threading.Event()

    def generate(
        self,
        text: str,
        voice: str,
        speed: float,
        *,
        stop: threading.Event | None = None,
        admission: Admission | None = None,
    ) -> Generator[bytes, None, None]:
        self.started.set()
        chunks = fast_source().generate(text, voice, speed)
        for _ in range(self.before):
            yield next(chunks)
        assert stop is not None
        stop.wait(POLL_LIMIT * 6)


@dataclass
class Worker:
    app: RunningApp
    service: DiaService
    journal: RedisJournal
    consumers: list[JobConsumer]


class Cluster:
    def __init__(self, url: str, stack: ExitStack) -> None:
        self.url = url
        self.stack = stack

    def worker(
        self, name: str, source: Source, *, queue: bool = False, take: bool = False
    ) -> Worker:
        journal = RedisJournal(self.url, worker=name)
        self.stack.callback(journal.close)
        consumers: list[JobConsumer] = []

        def take_jobs(
            on_job: Callable[[QueuedJob], None], on_lost: Callable[[str], None]
        ) -> JobTaker:
            consumer = JobConsumer(self.url, name, on_job, on_lost=on_lost, claim_after=CLAIM_AFTER)
            self.stack.callback(consumer.close)
            consumers.append(consumer)
            return consumer

        service = DiaService(
            source,
            journal=journal,
            jobs=journal if queue else None,
            take_jobs=take_jobs if take else None,
        )
        app = self.stack.enter_context(running_app(service))
        return Worker(app, service, journal, consumers)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with valkey_server(tmp_path) as server, ExitStack() as stack:
        yield Cluster(server.url, stack)


def listen(ws: ClientConnection) -> tuple[list[int], bytes, dict[str, object]]:
    ws.send(json.dumps({"type": "open", "stream": 1, "text": TEXT, "voice": "S1"}))
    seqs: list[int] = []
    audio = bytearray()
    for _ in range(100_000):
        message = ws.recv(timeout=POLL_LIMIT * 3)
        if isinstance(message, str):
            control = json.loads(message)
            if control["type"] in ("end", "error"):
                return seqs, bytes(audio), control
            continue
        for _, seq, payload in records(message):
            seqs.append(seq)
            audio += payload
    raise AssertionError("the stream did not end")


def test_a_front_worker_queues_and_a_model_worker_runs(cluster: Cluster) -> None:
    front = cluster.worker("front", fast_source(), queue=True)
    model = cluster.worker("model", fast_source(), take=True)
    with ws_connect(front.app) as ws:
        seqs, audio, end = listen(ws)
    assert end["type"] == "end", end
    assert seqs == list(range(1, len(seqs) + 1))
    assert audio == synthetic_audio(TEXT)
    assert front.app.call(lambda: len(front.service.generations.live)) == 0, "none ran here"
    (consumer,) = model.consumers
    assert consumer.taken == 1
    wait_until(lambda: not consumer._running, "the job is acknowledged")


def test_a_job_whose_worker_died_before_sending_is_rerun_elsewhere(cluster: Cluster) -> None:
    front = cluster.worker("front", fast_source(), queue=True)
    stalling = StallingSource(before=0)
    doomed = cluster.worker("doomed", stalling, take=True)
    result: list[tuple[list[int], bytes, dict[str, object]]] = []
    with ws_connect(front.app) as ws:
        listener = threading.Thread(target=lambda: result.append(listen(ws)))
        listener.start()
        assert stalling.started.wait(POLL_LIMIT), "the doomed worker took the job"
        doomed.consumers[0].close()  # dies: no renewal, no acknowledgement, no alive key
        doomed.journal.close()
        rescuer = cluster.worker("rescuer", fast_source(), take=True)
        listener.join(POLL_LIMIT * 6)
    ((seqs, audio, end),) = result
    assert end["type"] == "end", end
    assert audio == synthetic_audio(TEXT), "heard whole, once: the rerun is the whole stream"
    assert seqs == list(range(1, len(seqs) + 1))
    assert rescuer.consumers[0].reclaimed == 1


def test_a_job_whose_worker_died_midway_ends_generation_lost(cluster: Cluster) -> None:
    front = cluster.worker("front", fast_source(), queue=True)
    doomed = cluster.worker("doomed", StallingSource(before=5), take=True)
    with ws_connect(front.app) as ws:
        ws.send(json.dumps({"type": "open", "stream": 1, "text": TEXT, "voice": "S1"}))
        seqs: list[int] = []
        outcome: dict[str, object] = {}
        for _ in range(1000):
            message = ws.recv(timeout=POLL_LIMIT * 6)
            if isinstance(message, bytes):
                seqs.extend(seq for _, seq, _ in records(message))
                if len(seqs) == 5:  # heard all it will send: now it dies
                    doomed.consumers[0].close()
                    doomed.journal.close()
                    rescuer = cluster.worker("rescuer", fast_source(), take=True)
            elif json.loads(message)["type"] in ("end", "error"):
                outcome = json.loads(message)
                break
    assert outcome.get("code") == "generation_lost", outcome
    assert "doomed" in str(outcome["message"])
    assert seqs == [1, 2, 3, 4, 5], "what was heard stands; nothing follows"
    # The rescuer took the job over and ended it (or the front saw the owner gone first).
    wait_until(lambda: rescuer.consumers[0].reclaimed == 1, "the job is taken over")
