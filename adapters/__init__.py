"""Runtime adapters, importable as ``diaproto.adapters.<runtime>``.

Each adapter is the same small pump loop around a core connection; none makes a protocol
decision. They arrive with the anyio, tornado and sockets issues.
"""
