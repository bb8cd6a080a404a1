"""Where the shared journal keeps things in Redis (or Valkey).

One generation's keys share a hash tag (``{g:<token>}``), so they live in one slot of a
Redis Cluster and one pipeline touches them together:

- ``dp:{g:T}:ring``: a Stream of its records, explicit ids ``<last seq>-0`` (so a record's id
  says where it ends, and a repeated one is refused by ``XADD`` itself), fields ``f`` (first
  seq), ``l`` (the writer's lease), ``d`` (the packed frames); the ending is the entry
  ``<last seq>-<lease + 1>``, fields ``e`` (``done`` or ``failed``), ``m`` (message), ``c``
  (error code), ``l`` (lease);
- ``dp:{g:T}:meta``: a Hash: ``epoch``, ``owner`` (the worker that writes it), ``state``;
- ``dp:{g:T}:ctl``: a Stream of listener reports from other workers, fields ``w`` (worker),
  ``n`` (listeners), ``p`` (1: one is paused).

The generation jobs: ``dp:{q}:jobs``, a Stream read by the consumer group ``models`` (fields
``t`` token, ``e`` epoch, ``r`` the request as JSON); a front worker writes a generation's
``meta`` (state ``queued``) with its job, and the model worker that takes it begins the ring.

An MCP session's portable state: ``dp:{s:<id>}:sess``, expiring with the session's idle time.

Per worker: ``dp:w:<worker>:alive`` (a key that expires unless refreshed: the worker lives)
and ``dp:w:<worker>:wake`` (a Stream its reader also blocks on, so that a new stream to follow
joins the read at once).
"""

from __future__ import annotations

PREFIX = "dp"


def ring(token: str) -> str:
    return f"{PREFIX}:{{g:{token}}}:ring"


def meta(token: str) -> str:
    return f"{PREFIX}:{{g:{token}}}:meta"


def control(token: str) -> str:
    return f"{PREFIX}:{{g:{token}}}:ctl"


def session(session_id: str) -> str:
    """An MCP session's portable state (a Hash: ``state`` JSON, ``owner``)."""
    return f"{PREFIX}:{{s:{session_id}}}:sess"


def alive(worker: str) -> str:
    return f"{PREFIX}:w:{worker}:alive"


def wake(worker: str) -> str:
    return f"{PREFIX}:w:{worker}:wake"


JOBS = f"{PREFIX}:{{q}}:jobs"
JOB_GROUP = "models"


def record_id(last_seq: int) -> str:
    return f"{last_seq}-0"


def ending_id(last_seq: int, lease: int = 0) -> str:
    """After the record ``last_seq``; a writer that took over (a higher lease) can still
    end a stream that a fenced one ended first."""
    return f"{last_seq}-{lease + 1}"
