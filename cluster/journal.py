"""The shared journal on Redis Streams (Redis 7 or newer, or Valkey): a
:class:`~diaproto.journal.Journal` for workers on any number of hosts.

Three threads per worker, each with its own connection, so that no event loop ever waits on
Redis and every runtime (asyncio, trio, tornado, raw sockets) can use it:

- the **writer** drains a bounded queue of writes and sends everything waiting, for all
  streams, in one pipeline per round trip (group commit: one round trip carries many
  records). Records carry explicit ids, so a batch resent after a lost connection cannot
  duplicate anything (Redis refuses an id it holds). It also keeps this worker's ``alive``
  key fresh. When the queue is full (Redis unreachable for long) a record is dropped and the
  hole it leaves is what every reader sees: an exact ``replay_gap``, never a skip;
- the **reader** blocks in one ``XREAD`` on every stream this worker follows (the rings of
  generations other workers run, the report streams of those this worker runs) and hands
  what arrives to the callbacks: a record crosses Redis once per worker, however many
  listeners it has here. It also notices when the worker that runs a followed generation is
  gone (its ``alive`` key expired) and ends that follow with ``generation_lost``;
- the **fetcher** answers :meth:`RedisJournal.read` (a resume's history), one at a time.

See :mod:`diaproto.cluster.keys` for the keys.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import redis

from diaproto.cluster import keys
from diaproto.journal import (
    Ending,
    History,
    JournalError,
    ListenerReport,
    Record,
    StreamHead,
    Subscription,
    Unavailable,
    pack,
    unpack,
)
from diaproto.wire import ErrorCode

log = logging.getLogger("diaproto.cluster")
T = TypeVar("T")

RING_RECORDS = 2048
"""Records a generation's ring keeps (``MAXLEN ~``): at 2-4 frames a record, 50-95 s of Dia
audio, more than a listener's grace."""
KEEP_RUNNING = 3600.0
"""Seconds a running generation's keys live past their last write."""
KEEP_FINISHED = 600.0
"""Seconds a finished generation's keys live, for late resumes."""
ALIVE_EVERY = 2.0
ALIVE_FOR = 3 * ALIVE_EVERY
MAX_PENDING = 20_000
"""Writes waiting for Redis at most (about 4 minutes of one generation's records, or a few
seconds of many); past it records are dropped, which readers see as a gap."""
MAX_READS = 256
"""Reads (resumes) waiting for the fetcher at most; past it one is answered Unavailable."""
BLOCK_MS = 1000
RERUN_WAIT = 30.0
"""Seconds a follow of a generation that sent nothing waits for it after its owner is gone:
a model worker's job is taken over (after 15 s idle) and rerun by another."""
QUEUE_WAIT = 60.0
"""Seconds a queued job may wait for a model worker to begin it before its listeners are
told ``busy`` (no model worker runs, or all are full)."""
UNAVAILABLE_AFTER = 5.0
"""Seconds without Redis after which the reader ends its follows (their listeners are told to
resume later) rather than keep them waiting."""


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


MAX_JOBS = 10_000
"""Jobs the queue keeps at most (``MAXLEN ~``): past it the oldest, long taken, go."""


@dataclass(frozen=True)
class Job:
    """A generation for a model worker: its token, epoch, and request (JSON)."""

    token: str
    epoch: str
    request: str
    lease: int = 1  # its delivery count: a worker that takes it over writes under a higher one


@dataclass(frozen=True)
class _Session:
    state: str
    owner: str
    ttl: float


@dataclass(frozen=True)
class _Write:
    token: str  # the generation's (the session's, for session writes)
    kind: str  # begin, append, end, report, wake, job, session, drop
    value: StreamHead | Record | Ending | ListenerReport | Job | _Session | None = None


@dataclass(eq=False)
class _Follow:
    journal: RedisJournal
    token: str
    last_id: str
    on_records: Callable[[Sequence[Record]], None]
    on_end: Callable[[Ending | Unavailable], None]
    owner: str | None = None  # the meta hash's, at the reader's last look ("": queued)
    lease: int = 0  # the highest writer's lease seen: an end under a lower one is fenced
    unowned_since: float | None = None  # since when it has had no owner
    last_seq: int = 0

    def cancel(self) -> None:
        self.journal._unfollow(self)


@dataclass(eq=False)
class _Watch:
    journal: RedisJournal
    token: str
    on_report: Callable[[ListenerReport], None]
    last_id: str = "0-0"

    def cancel(self) -> None:
        self.journal._unwatch(self)


@dataclass(eq=False)
class _Stats:
    appended: int = 0
    dropped: int = 0
    round_trips: int = 0
    write_errors: int = 0
    lost_owners: int = 0
    reads: int = 0
    connected: bool = True
    last_error: str = ""
    batch_sizes: list[int] = field(default_factory=list)


class RedisJournal:
    """A :class:`~diaproto.journal.Journal` in Redis. ``close`` it when done."""

    def __init__(
        self,
        url: str,
        *,
        worker: str | None = None,
        ring_records: int = RING_RECORDS,
        keep_running: float = KEEP_RUNNING,
        keep_finished: float = KEEP_FINISHED,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.url = url
        self._worker = worker or default_worker_name()
        self.ring_records = ring_records
        self.keep_running = keep_running
        self.keep_finished = keep_finished
        self.stats = _Stats()
        # Unbounded as a queue: records and reports are counted against ``max_pending`` and
        # dropped past it; a stream's head, end and job always get in (never waiting on the
        # loop), bounded by the generations the service admits.
        self._writes: queue.Queue[_Write | None] = queue.Queue()
        self.max_pending = max_pending
        # What the fetcher answers: (what it asks Redis, where the answer goes).
        self._reads: queue.Queue[tuple[Callable[[], Any], Callable[[Any], None]] | None] = (
            queue.Queue(MAX_READS)
        )
        self._lock = threading.Lock()
        self._follows: dict[str, _Follow] = {}  # ring key -> follow
        self._watches: dict[str, _Watch] = {}  # control key -> watch
        self._closing = threading.Event()
        self._missing_since: dict[str, float] = {}  # the reader's: owners without alive keys
        timeout = BLOCK_MS / 1000 + 5
        self._writer_redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._reader_redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=2
        )
        self._fetcher_redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._threads = [
            threading.Thread(target=self._write_loop, name="journal-writer", daemon=True),
            threading.Thread(target=self._read_loop, name="journal-reader", daemon=True),
            threading.Thread(target=self._fetch_loop, name="journal-fetcher", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def worker(self) -> str:
        return self._worker

    @property
    def available(self) -> bool:
        """False while the last attempt to reach Redis failed."""
        return self.stats.connected

    def ping(self) -> bool:
        """Whether Redis answers now (blocking: call it off the loop)."""
        try:
            return bool(self._fetcher_redis.ping())
        except redis.RedisError:
            return False

    def close(self, timeout: float = 5.0) -> None:
        """Write what waits (for up to ``timeout`` seconds), then stop the threads."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._writes.put(None)
        with contextlib.suppress(queue.Full):
            self._reads.put(None, timeout=timeout)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for client in (self._writer_redis, self._reader_redis, self._fetcher_redis):
            client.close()

    # --- the writer's side of the port --------------------------------------------------

    def begin(self, token: str, head: StreamHead) -> None:
        self._write(_Write(token, "begin", head), essential=True)

    def append(self, token: str, record: Record) -> None:
        self._write(_Write(token, "append", record), essential=False)

    def end(self, token: str, ending: Ending) -> None:
        self._write(_Write(token, "end", ending), essential=True)

    def report(self, token: str, report: ListenerReport) -> None:
        self._write(_Write(token, "report", report), essential=False)

    def submit(self, token: str, epoch: str, request: str) -> None:
        """Queue a generation for the model workers (:mod:`diaproto.cluster.jobs`); its
        meta says ``queued`` (with its epoch) until one of them begins it."""
        self._write(_Write(token, "job", Job(token, epoch, request)), essential=True)

    def _write(self, write: _Write, *, essential: bool) -> None:
        if self._closing.is_set():
            return
        if not essential and self._writes.qsize() >= self.max_pending:
            # Redis is away for long: the record is lost, which its readers see as a gap.
            self.stats.dropped += 1
            if self.stats.dropped % 1000 == 1:
                log.warning(
                    "journal: %d writes wait for Redis; dropping %ss (%d so far)",
                    self._writes.qsize(),
                    write.kind,
                    self.stats.dropped,
                )
            return
        self._writes.put_nowait(write)

    # --- the reader's side --------------------------------------------------------------

    def read(self, token: str, reply: Callable[[History | Unavailable | None], None]) -> None:
        self._ask(lambda: self._fetch(token), reply)

    def _ask(self, fetch: Callable[[], T], reply: Callable[[T | Unavailable], None]) -> None:
        try:
            self._reads.put_nowait((fetch, reply))
        except queue.Full:
            reply(Unavailable("too many reads wait for the journal"))

    # --- MCP sessions, so that any worker serves a session another one made ----------------

    def save_session(self, session_id: str, state: str, owner: str, ttl: float) -> None:
        """Keep (or refresh) a session's portable state for ``ttl`` seconds (its idle
        timeout): any worker may then serve it."""
        self._write(_Write(session_id, "session", _Session(state, owner, ttl)), essential=False)

    def drop_session(self, session_id: str) -> None:
        self._write(_Write(session_id, "drop", None), essential=True)

    def load_session(
        self, session_id: str, reply: Callable[[tuple[str, str] | Unavailable | None], None]
    ) -> None:
        """(state, owner) of a session, None if no worker has it."""
        self._ask(lambda: self._fetch_session(session_id), reply)

    def _fetch_session(self, session_id: str) -> tuple[str, str] | Unavailable | None:
        try:
            found = self._fetcher_redis.hgetall(keys.session(session_id))
        except redis.RedisError as exc:
            return Unavailable(f"Redis is unreachable: {exc}")
        if not found or b"state" not in found:
            return None
        return _text(found[b"state"]), _text(found.get(b"owner", b""))

    def follow(
        self,
        token: str,
        after: int,
        on_records: Callable[[Sequence[Record]], None],
        on_end: Callable[[Ending | Unavailable], None],
    ) -> Subscription:
        followed = _Follow(self, token, keys.record_id(after), on_records, on_end, last_seq=after)
        with self._lock:
            self._follows[keys.ring(token)] = followed
        self._write(_Write(token, "wake"), essential=False)
        return followed

    def watch_reports(
        self, token: str, on_report: Callable[[ListenerReport], None]
    ) -> Subscription:
        watched = _Watch(self, token, on_report)
        with self._lock:
            self._watches[keys.control(token)] = watched
        self._write(_Write(token, "wake"), essential=False)
        return watched

    def _unfollow(self, followed: _Follow) -> None:
        with self._lock:
            key = keys.ring(followed.token)
            if self._follows.get(key) is followed:
                del self._follows[key]

    def _unwatch(self, watched: _Watch) -> None:
        with self._lock:
            key = keys.control(watched.token)
            if self._watches.get(key) is watched:
                del self._watches[key]

    # --- the writer thread -------------------------------------------------------------

    def _write_loop(self) -> None:
        next_alive = 0.0
        batch: list[_Write] = []
        while True:
            if not batch:
                timeout = max(0.0, next_alive - time.monotonic())
                try:
                    first = self._writes.get(timeout=timeout)
                except queue.Empty:
                    first = _Write("", "alive")
                if first is None:
                    self._flush_on_close()
                    return
                batch.append(first)
                while len(batch) < 1024:
                    try:
                        more = self._writes.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._writes.put(None)  # seen again after this batch
                        break
                    batch.append(more)
            if time.monotonic() >= next_alive:
                batch.append(_Write("", "alive"))
                next_alive = time.monotonic() + ALIVE_EVERY
            if self._send(batch):
                batch = []
            elif self._closing.wait(0.2):  # Redis is away: keep the batch and try again
                return

    def _flush_on_close(self) -> None:
        rest: list[_Write] = []
        while True:
            try:
                item = self._writes.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                rest.append(item)
        if rest:
            self._send(rest)

    def _send(self, batch: list[_Write]) -> bool:
        pipe = self._writer_redis.pipeline(transaction=False)
        touched: dict[str, float] = {}
        for write in batch:
            try:
                self._queue_write(pipe, write, touched)
            except Exception:  # a write this version cannot make: lost (a gap), not fatal
                self.stats.dropped += 1
                log.exception("journal: a %s of %s cannot be written", write.kind, write.token)
        for token, ttl in touched.items():
            for key in (keys.ring(token), keys.meta(token), keys.control(token)):
                pipe.expire(key, int(ttl))
        try:
            results = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            self._lost(exc)
            return False
        self.stats.connected = True
        self.stats.round_trips += 1
        self.stats.appended += sum(1 for write in batch if write.kind == "append")
        self.stats.batch_sizes.append(len(batch))
        del self.stats.batch_sizes[:-64]
        for result in results:
            if isinstance(result, redis.ResponseError):
                # A record id Redis already holds (a batch resent after a lost reply), or a
                # ring begun again by another worker: the record is not written twice.
                self.stats.write_errors += 1
                log.debug("journal: a write was refused: %s", result)
        return True

    def _queue_write(self, pipe: Any, write: _Write, touched: dict[str, float]) -> None:
        token, value = write.token, write.value
        if write.kind == "begin":
            assert isinstance(value, StreamHead)
            # A token begun again (an SSE id reused after its stream expired) starts afresh.
            # Its reports stay: listeners may report before a model worker begins a job.
            pipe.delete(keys.ring(token), keys.meta(token))
            pipe.hset(
                keys.meta(token),
                mapping={
                    "epoch": value.epoch,
                    "owner": value.owner,
                    "state": "running",
                    "credit": int(value.credit_based),
                },
            )
            touched[token] = self.keep_running
        elif write.kind == "append":
            assert isinstance(value, Record)
            fields = {"f": value.first_seq, "l": value.lease, "d": pack(value.frames)}
            pipe.xadd(
                keys.ring(token),
                cast("dict[Any, Any]", fields),
                id=keys.record_id(value.last_seq),
                maxlen=self.ring_records,
                approximate=True,
            )
            touched.setdefault(token, self.keep_running)
        elif write.kind == "end":
            assert isinstance(value, Ending)
            state = "done" if value.error is None else "failed"
            fields = {"e": state, "m": value.error or "", "c": value.code, "l": value.lease}
            pipe.xadd(
                keys.ring(token),
                cast("dict[Any, Any]", fields),
                id=keys.ending_id(value.last_seq, value.lease),
            )
            pipe.hset(keys.meta(token), "state", state)
            touched[token] = self.keep_finished
        elif write.kind == "report":
            assert isinstance(value, ListenerReport)
            fields = {"w": value.worker, "n": value.listeners, "p": int(value.paused)}
            pipe.xadd(keys.control(token), cast("dict[Any, Any]", fields), maxlen=64)
            pipe.expire(keys.control(token), int(self.keep_running))
        elif write.kind == "job":
            assert isinstance(value, Job)
            pipe.hset(
                keys.meta(token), mapping={"epoch": value.epoch, "owner": "", "state": "queued"}
            )
            touched[token] = self.keep_running
            fields = {"t": token, "e": value.epoch, "r": value.request}
            pipe.xadd(keys.JOBS, cast("dict[Any, Any]", fields), maxlen=MAX_JOBS)
        elif write.kind == "session":
            assert isinstance(value, _Session)
            key = keys.session(token)
            pipe.hset(key, mapping={"state": value.state, "owner": value.owner})
            pipe.expire(key, max(1, int(value.ttl)))
        elif write.kind == "drop":
            pipe.delete(keys.session(token))
        elif write.kind == "wake":
            pipe.xadd(keys.wake(self._worker), {"t": token}, maxlen=1)
            pipe.expire(keys.wake(self._worker), int(ALIVE_FOR))
        else:  # alive
            pipe.set(keys.alive(self._worker), 1, px=int(ALIVE_FOR * 1000))

    def _lost(self, exc: Exception) -> None:
        if self.stats.connected:
            log.warning("journal: Redis at %s is unreachable: %s", self.url, exc)
        self.stats.connected = False
        self.stats.last_error = str(exc)

    # --- the reader thread -------------------------------------------------------------

    def _read_loop(self) -> None:
        wake_key = keys.wake(self._worker)
        wake_last = "$"
        unreachable_since: float | None = None
        next_owner_check = 0.0
        while not self._closing.is_set():
            with self._lock:
                follows = dict(self._follows)
                watches = dict(self._watches)
            streams: dict[str, str] = {wake_key: wake_last}
            streams.update({key: f.last_id for key, f in follows.items()})
            streams.update({key: w.last_id for key, w in watches.items()})
            try:
                if time.monotonic() >= next_owner_check and follows:
                    self._check_owners(follows)
                    next_owner_check = time.monotonic() + ALIVE_EVERY
                response = cast(
                    "list[Any]",
                    self._reader_redis.xread(streams, count=256, block=BLOCK_MS),  # type: ignore[arg-type]
                )
            except redis.RedisError as exc:
                self._lost(exc)
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if now - unreachable_since >= UNAVAILABLE_AFTER:
                    self._end_follows(Unavailable(f"Redis is unreachable: {exc}"))
                    unreachable_since = now
                self._closing.wait(0.2)
                continue
            except Exception:  # a callback of the owner check failed: the reader goes on
                log.exception("journal: the reader's owner check failed")
                self._closing.wait(0.2)
                continue
            unreachable_since = None
            for raw_key, entries in response or []:
                key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
                try:
                    if key == wake_key:
                        wake_last = _text(entries[-1][0])
                    elif key in follows:
                        self._deliver_records(follows[key], entries)
                    elif key in watches:
                        self._deliver_reports(watches[key], entries)
                except Exception:  # a callback failed (its loop ended): the rest go on
                    log.exception("journal: delivering %s failed", key)

    def _deliver_records(self, followed: _Follow, entries: list[Any]) -> None:
        records: list[Record] = []
        ending: Ending | Unavailable | None = None
        for entry_id, raw in entries:
            followed.last_id = _text(entry_id)
            fields = {_text(k): v for k, v in raw.items()}
            if "e" in fields:
                ended = _ending(followed.last_id, fields)
                if ended.lease < followed.lease:
                    continue  # a fenced writer's end: the stream goes on
                ending = ended
                break
            try:
                records.append(_record(fields))
            except (JournalError, ValueError, KeyError) as exc:
                ending = Unavailable(f"a record of this stream is corrupt: {exc}")
                break
            followed.lease = max(followed.lease, records[-1].lease)
        if records:
            followed.last_seq = records[-1].last_seq
            followed.on_records(records)
        if ending is not None:
            self._unfollow(followed)
            followed.on_end(ending)

    def _deliver_reports(self, watched: _Watch, entries: list[Any]) -> None:
        for entry_id, raw in entries:
            watched.last_id = _text(entry_id)
            fields = {_text(k): v for k, v in raw.items()}
            try:
                report = ListenerReport(
                    _text(fields["w"]), int(fields["n"]), fields.get("p") == b"1"
                )
            except (KeyError, ValueError):
                continue  # not a report this version writes
            watched.on_report(report)

    def _check_owners(self, follows: dict[str, _Follow]) -> None:
        """End the follows of generations nobody will write to any more.

        The owner is read each time: a job taken over by another model worker changes it.
        An owner whose ``alive`` key is gone: a generation that sent nothing yet is given
        :data:`RERUN_WAIT` seconds (a model worker's job is then rerun by another, which its
        listeners cannot tell); one that sent something is lost at the second look (a Redis
        that restarted empty lacks every alive key until their workers refresh them, within
        ``ALIVE_EVERY``). A queued job that no model worker begins within
        :data:`QUEUE_WAIT` is ``busy``; a generation whose meta is gone (Redis lost it) is
        lost at the second look."""
        listed = list(follows.values())
        pipe = self._reader_redis.pipeline(transaction=False)
        for followed in listed:
            pipe.hget(keys.meta(followed.token), "owner")
        now = time.monotonic()
        for followed, owner in zip(listed, pipe.execute(), strict=True):
            followed.owner = _text(owner) if owner is not None else None
            if followed.owner:
                followed.unowned_since = None
            elif followed.unowned_since is None:
                followed.unowned_since = now
        owners = sorted({f.owner for f in listed if f.owner})
        pipe = self._reader_redis.pipeline(transaction=False)
        for owner in owners:
            pipe.exists(keys.alive(owner))
        missing = {owner for owner, n in zip(owners, pipe.execute(), strict=True) if not n}
        self._missing_since = {o: self._missing_since.get(o, now) for o in missing}
        for followed in listed:
            ending = self._given_up(followed, now)
            if ending is not None:
                self.stats.lost_owners += 1
                self._unfollow(followed)
                followed.on_end(ending)

    def _given_up(self, followed: _Follow, now: float) -> Ending | None:
        last, owner = followed.last_seq, followed.owner
        unowned = now - followed.unowned_since if followed.unowned_since is not None else None
        if owner is None and unowned:  # no meta, twice: Redis lost it
            message = "the journal lost this generation's record (did Redis restart?)"
            return Ending(last, message, ErrorCode.GENERATION_LOST)
        if owner == "" and unowned is not None and unowned >= QUEUE_WAIT:
            message = f"no model worker took this generation within {QUEUE_WAIT:.0f} s"
            return Ending(last, message, ErrorCode.BUSY)
        since = self._missing_since.get(owner or "")
        if since is None or now - since < (RERUN_WAIT if not last else 0.1):
            return None
        message = f"the worker that ran this generation ({owner}) is gone"
        return Ending(last, message, ErrorCode.GENERATION_LOST)

    def _end_follows(self, why: Unavailable) -> None:
        with self._lock:
            follows = list(self._follows.values())
            self._follows.clear()
        for followed in follows:
            followed.on_end(why)

    # --- the fetcher thread ------------------------------------------------------------

    def _fetch_loop(self) -> None:
        while True:
            item = self._reads.get()
            if item is None:
                return
            fetch, reply = item
            try:
                reply(fetch())
            except Exception:  # the reply failed (its loop ended): the next read goes on
                log.exception("journal: answering a read failed")

    def _fetch(self, token: str) -> History | Unavailable | None:
        self.stats.reads += 1
        pipe = self._fetcher_redis.pipeline(transaction=False)
        pipe.hgetall(keys.meta(token))
        pipe.xrange(keys.ring(token), "-", "+")
        try:
            meta, entries = pipe.execute()
        except redis.RedisError as exc:
            return Unavailable(f"Redis is unreachable: {exc}")
        if not meta:
            return None
        meta = {_text(k): _text(v) for k, v in meta.items()}
        records: list[Record] = []
        ending: Ending | None = None
        for entry_id, raw in entries:
            fields = {_text(k): v for k, v in raw.items()}
            if "e" in fields:
                ended = _ending(_text(entry_id), fields)
                if ending is None or ended.lease >= ending.lease:
                    ending = ended
            else:
                try:
                    records.append(_record(fields))
                except (JournalError, ValueError, KeyError) as exc:
                    return Unavailable(f"a record of this stream is corrupt: {exc}")
        head = StreamHead(
            meta.get("epoch", ""), meta.get("owner", ""), meta.get("credit", "0") == "1"
        )
        return History(head, tuple(records), ending)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _record(fields: dict[str, Any]) -> Record:
    return Record(int(fields["f"]), unpack(bytes(fields["d"])), int(fields["l"]))


def _ending(entry_id: str, fields: dict[str, Any]) -> Ending:
    last = int(entry_id.split("-", maxsplit=1)[0])
    error = _text(fields.get("m", b"")) or None
    return Ending(last, error, _text(fields.get("c", b"")), int(fields.get("l", 0)))
