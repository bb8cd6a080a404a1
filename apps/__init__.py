"""Applications on the diaproto core, importable as ``diaproto.apps``.

They are written against the runtime-neutral interface in :mod:`diaproto.runtime`, so each runs
unchanged on every adapter. They may use threads and the clock (the core may not).
"""
