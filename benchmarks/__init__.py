"""diaproto's benchmark suite: each scenario of docs/benchmarks.md against the peers, in one run.

Run ``python -m benchmarks [--full] [--only P1,P2]`` (or ``make bench``). Servers run in
subprocesses pinned to core 0, the load clients in this process pinned to core 1; systems
alternate round by round and every figure is a median over rounds with its ratio to the peers.
"""
