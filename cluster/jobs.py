"""Generation jobs for model workers: a Redis Stream read by one consumer group, so each job
goes to one worker, and a job whose worker died goes to another.

A front worker queues a job (:meth:`RedisJournal.submit`); a model worker's
:class:`JobConsumer` takes at most ``slots`` at a time (``XREADGROUP``) and runs each as a
generation that writes the usual ring. While it runs, the consumer renews its claim (an
``XCLAIM`` that resets the entry's idle time) every :data:`RENEW_EVERY` seconds; when it ends,
the job is acknowledged and deleted. A job idle for ``claim_after`` seconds belongs to a worker
that died (or hangs): another takes it over (``XAUTOCLAIM``) and

- reruns it from the start if nothing was written to its ring (its listeners heard nothing, so
  nothing looks continuous that is not);
- else ends it with ``generation_lost`` (what was heard stands, and nothing follows);
- and fails it for good after ``max_deliveries`` attempts (a job that kills its workers).

The consumer runs on a thread of its own with its own connection; ``on_job`` is called on
that thread (the worker hands it to its loop).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import redis

from diaproto.cluster import keys
from diaproto.cluster.journal import Job
from diaproto.wire import ErrorCode

log = logging.getLogger("diaproto.cluster")

CLAIM_AFTER = 15.0
RENEW_EVERY = 5.0
MAX_DELIVERIES = 3
BLOCK_MS = 1000


class JobConsumer:
    """A model worker's side of the job queue. ``close`` it when done."""

    def __init__(
        self,
        url: str,
        worker: str,
        on_job: Callable[[Job], None],
        *,
        on_lost: Callable[[str], None] | None = None,
        slots: int = 1,
        claim_after: float = CLAIM_AFTER,
        renew_every: float = RENEW_EVERY,
        max_deliveries: int = MAX_DELIVERIES,
    ) -> None:
        if slots < 1 or max_deliveries < 1 or claim_after <= 0:
            raise ValueError("slots and max_deliveries must be at least 1, claim_after > 0")
        self.worker = worker
        self.slots = slots
        self.claim_after = claim_after
        self.renew_every = min(renew_every, claim_after / 3)
        self.max_deliveries = max_deliveries
        self.taken = 0
        self.reclaimed = 0
        self.lost = 0
        self.poisoned = 0
        self._on_job = on_job
        self._on_lost = on_lost
        self._running: dict[str, str] = {}  # entry id -> token (the consumer thread's)
        self._claim_cursor = "0-0"  # where the next XAUTOCLAIM scan starts
        self._finished: queue.Queue[str] = queue.Queue()
        self._closing = threading.Event()
        self._redis = redis.Redis.from_url(
            url, socket_timeout=BLOCK_MS / 1000 + 5, socket_connect_timeout=2
        )
        self._thread = threading.Thread(target=self._loop, name="job-consumer", daemon=True)
        self._thread.start()

    def done(self, token: str) -> None:
        """The job of ``token`` ended here (any thread): acknowledge it."""
        self._finished.put(token)

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking jobs. Jobs still running are left unacknowledged: another worker
        takes them over after ``claim_after`` (as when this one dies)."""
        self._closing.set()
        self._thread.join(timeout)
        self._redis.close()

    # --- the consumer thread ------------------------------------------------------------

    def _loop(self) -> None:
        next_renew = next_claim = 0.0
        while not self._closing.is_set():
            try:
                self._ensure_group()
                self._acknowledge()
                now = time.monotonic()
                if self._running and now >= next_renew:
                    self._renew()
                    next_renew = now + self.renew_every
                if len(self._running) < self.slots and now >= next_claim:
                    self._reclaim()
                    next_claim = now + self.claim_after / 3
                if len(self._running) < self.slots:
                    self._take()
                else:
                    self._closing.wait(0.05)
            except redis.RedisError as exc:
                log.warning("job queue: Redis is unreachable: %s", exc)
                self._group_ready = False
                self._closing.wait(0.5)
            except Exception:  # a job this version cannot read, a callback that failed
                log.exception("job queue: the consumer goes on after an error")
                self._closing.wait(0.5)

    _group_ready = False

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self._redis.xgroup_create(keys.JOBS, keys.JOB_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _take(self) -> None:
        response = cast(
            "list[Any]",
            self._redis.xreadgroup(
                keys.JOB_GROUP, self.worker, {keys.JOBS: ">"}, count=1, block=BLOCK_MS
            ),
        )
        for _, entries in response or []:
            for entry_id, fields in entries:
                self.taken += 1
                self._start(_text(entry_id), fields)

    def _reclaim(self) -> None:
        min_idle = int(self.claim_after * 1000)
        # Redis scans 10 x count pending entries a call: the cursor carries the scan on
        # through a long list, so a dead worker's job behind many live ones is found too.
        answer: list[Any] = self._redis.xautoclaim(
            keys.JOBS,
            keys.JOB_GROUP,
            self.worker,
            min_idle,
            self._claim_cursor,
            count=max(1, self.slots - len(self._running)),
        )
        self._claim_cursor = _text(answer[0])
        for entry_id, fields in answer[1]:
            if not fields:
                continue  # deleted meanwhile
            entry = _text(entry_id)
            self.reclaimed += 1
            pending = cast(
                "list[dict[str, Any]]",
                self._redis.xpending_range(keys.JOBS, keys.JOB_GROUP, entry, entry, 1),
            )
            deliveries = int(pending[0]["times_delivered"]) if pending else 1
            self._taken_over(entry, fields, deliveries)

    def _taken_over(self, entry: str, fields: dict[Any, Any], deliveries: int) -> None:
        token = _text(fields[b"t"])
        last = cast("list[Any]", self._redis.xrevrange(keys.ring(token), "+", "-", count=1))
        if last and b"e" in last[0][1]:
            self._finish(entry)  # it ended; only its acknowledgement was lost
        elif deliveries > self.max_deliveries:
            self.poisoned += 1
            message = f"the job failed on {deliveries - 1} model workers; it is not retried"
            self._end(token, last, message, ErrorCode.INTERNAL, deliveries)
            self._finish(entry)
        elif last:
            self.lost += 1
            owner = _text(self._redis.hget(keys.meta(token), "owner") or b"?")
            message = f"the model worker that ran this generation ({owner}) stopped answering"
            self._end(token, last, message, ErrorCode.GENERATION_LOST, deliveries)
            self._finish(entry)
        else:
            log.info("job %s: rerun on %s (nothing was sent)", token, self.worker)
            self._start(entry, fields, lease=deliveries)

    def _end(self, token: str, last: list[Any], message: str, code: str, lease: int) -> None:
        last_seq = int(_text(last[0][0]).split("-")[0]) if last else 0
        fields = {"e": "failed", "m": message, "c": code, "l": lease}
        # Refused if the worker wrote on meanwhile: its own end comes, or the readers' check.
        with contextlib.suppress(redis.ResponseError):
            self._redis.xadd(
                keys.ring(token),
                cast("dict[Any, Any]", fields),
                id=keys.ending_id(last_seq, lease),
            )
        self._redis.hset(keys.meta(token), "state", "failed")

    def _start(self, entry: str, fields: dict[Any, Any], *, lease: int = 1) -> None:
        """Run a job; ``lease`` is its delivery count, which its records carry: a worker
        that took the job over writes under a higher one, so the readers ignore what the
        worker it took over from (a zombie that only hung) may still write."""
        job = Job(_text(fields[b"t"]), _text(fields[b"e"]), _text(fields[b"r"]), lease)
        self._running[entry] = job.token
        try:
            self._on_job(job)
        except Exception:  # this worker is stopping: another takes the job over
            log.exception("job %s could not start here", job.token)
            del self._running[entry]

    def _renew(self) -> None:
        """Reset the idle time of the jobs still this worker's. One taken over meanwhile
        (this worker lost Redis for longer than ``claim_after``) is another's now: it is
        given up here (``on_lost``), never claimed back."""
        mine = cast(
            "list[dict[str, Any]]",
            self._redis.xpending_range(
                keys.JOBS, keys.JOB_GROUP, "-", "+", len(self._running) + 64, self.worker
            ),
        )
        held = {_text(entry["message_id"]) for entry in mine}
        for entry, token in list(self._running.items()):
            if entry not in held:
                log.warning("job %s was taken over by another worker: stopping it here", token)
                del self._running[entry]
                if self._on_lost is not None:
                    self._on_lost(token)
        if self._running:
            self._redis.xclaim(
                keys.JOBS, keys.JOB_GROUP, self.worker, 0, list(self._running), justid=True
            )

    def _acknowledge(self) -> None:
        while True:
            try:
                token = self._finished.get_nowait()
            except queue.Empty:
                return
            try:
                for entry, running in list(self._running.items()):
                    if running == token:
                        self._finish(entry)
            except redis.RedisError:
                self._finished.put(token)  # acknowledged once Redis is back
                raise

    def _finish(self, entry: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.xack(keys.JOBS, keys.JOB_GROUP, entry)
        pipe.xdel(keys.JOBS, entry)
        pipe.execute()
        self._running.pop(entry, None)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
