"""diaproto.cluster: the shared journal on Redis Streams, so that many workers (processes,
hosts) serve one set of streams (``pip install 'diaproto[cluster]'``, ``diaproto serve
--cluster redis://...``).

A generation runs on one worker and is written to Redis as it goes; a client that reconnects
to any other worker resumes from there (:mod:`diaproto.apps.serve.mirror`). The core's
:class:`~diaproto.journal.Journal` port is what this package implements: the core decides
what a record holds and whether what was read back is whole; this package moves it, on
threads of its own, with redis-py (hiredis where installed).
"""

from diaproto.cluster.journal import RedisJournal

__all__ = ["RedisJournal"]
