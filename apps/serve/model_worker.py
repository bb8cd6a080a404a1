"""A model worker: runs the generations that front workers queue (``diaproto worker``).

With ``serve --cluster URL --queue``, a front worker does not run a new generation itself: it
queues a job and listens through the shared journal, as to any generation run elsewhere
(:mod:`.mirror`). A model worker takes jobs (the cluster's job consumer), runs each as a
:class:`~.generation.Generation` that writes to the journal, and acknowledges it when the
generation is over. All its listeners are on other workers: it goes on while they listen,
pauses with them, and stops when none is left (after the grace) or none ever comes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol

from diaproto.apps.serve.generation import Broadcast, Generation
from diaproto.apps.serve.requests import BadRequest, StreamRequest, parse_stream_json
from diaproto.journal import Ending
from diaproto.runtime import Runtime
from diaproto.wire import ErrorCode

if TYPE_CHECKING:
    from diaproto.apps.serve.app import DiaService

log = logging.getLogger("diaproto.serve")


class QueuedJob(Protocol):
    @property
    def token(self) -> str: ...
    @property
    def epoch(self) -> str: ...
    @property
    def request(self) -> str: ...
    @property
    def lease(self) -> int: ...


class JobQueue(Protocol):
    """Where a front worker queues jobs (:class:`diaproto.cluster.RedisJournal`)."""

    def submit(self, token: str, epoch: str, request: str) -> None: ...


class JobTaker(Protocol):
    """What a model worker takes jobs from (:class:`diaproto.cluster.jobs.JobConsumer`)."""

    def done(self, token: str) -> None: ...
    def close(self, timeout: float = ...) -> None: ...


TakeJobs = Callable[[Callable[[QueuedJob], None], Callable[[str], None]], JobTaker]
"""Starts taking jobs: ``take_jobs(on_job, on_lost)``; ``on_lost(token)`` is called when a
job was taken over by another worker (this one lost Redis for too long)."""


def request_json(request: StreamRequest, *, credit_based: bool = False) -> str:
    """A job's request, as the front worker writes it and the model worker parses it
    (``credit_based``: see :attr:`Broadcast.credit_based`)."""
    fields = {"text": request.text, "voice": request.voice, "speed": request.speed}
    return json.dumps({**fields, "credit_based": True} if credit_based else fields)


class ModelWorker:
    """Runs queued jobs on this server's loop. ``take_jobs`` starts the job consumer with
    the callback it calls (on its own thread) for each job it takes."""

    def __init__(
        self,
        service: DiaService,
        take_jobs: TakeJobs,
    ) -> None:
        self.service = service
        self._take_jobs = take_jobs
        self.taker: JobTaker | None = None
        self.runtime: Runtime | None = None

    def start(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.taker = self._take_jobs(self._job_taken, self._job_lost)

    def close(self) -> None:
        if self.taker is not None:
            self.taker.close(0.0)  # on the loop: never wait for a thread that may wait on it

    def _job_taken(self, job: QueuedJob) -> None:
        # The consumer's thread: the generation is the loop's.
        assert self.runtime is not None
        self.runtime.call_soon_threadsafe(partial(self._run, job))

    def _job_lost(self, token: str) -> None:
        assert self.runtime is not None
        self.runtime.call_soon_threadsafe(partial(self._stop, token))

    def _stop(self, token: str) -> None:
        generation = self.service.generations.live.get(token)
        if generation is not None:
            # Not ended in the journal: the worker that took it over writes that ring now.
            generation.publication = None
            generation.stop("another model worker took it over")

    def _run(self, job: QueuedJob) -> None:
        service, runtime = self.service, self.runtime
        assert runtime is not None and self.taker is not None
        try:
            request = parse_stream_json(job.request.encode())
        except BadRequest as exc:  # a front worker of another version: not ours to run
            log.warning("job %s refused: %s", job.token, exc)
            if service.journal is not None:  # its listeners are told, not left waiting
                message = f"the model worker cannot run this request: {exc}"
                service.journal.end(job.token, Ending(0, message, ErrorCode.INVALID_REQUEST))
            self.taker.done(job.token)
            return
        generation = Generation(
            job.token,
            request,
            service.source,
            runtime,
            self._idle,
            epoch=job.epoch,
            journal=service.journal,
            lease=job.lease,
            credit_based=json.loads(job.request).get("credit_based") is True,
        )
        service.generations.add(generation)
        generation.start()
        generation.expect_listeners(service.resume_grace)

    def _idle(self, generation: Broadcast) -> None:
        self.service.generations.retire(generation)
        if (generation.finished or generation.stopped) and self.taker is not None:
            self.taker.done(generation.token)
