"""``python -m fuzz --seconds N [--target NAME ...] [--engine hypothesis|atheris] [--list]``.

Runs every registered target (or the named ones) for an equal share of N seconds. Exit
status 0: no failure; 1: a target broke the rule (the input is printed in hex); 2: usage.
With ``--engine atheris`` each target runs in a child process, since libFuzzer exits the
process it runs in.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from fuzz.harness import FuzzFailure, load_targets, run_atheris, run_hypothesis


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="total time (default 60)")
    parser.add_argument("--target", action="append", default=[], help="repeatable")
    parser.add_argument("--engine", choices=("hypothesis", "atheris"), default="hypothesis")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)

    targets = load_targets()
    if args.list:
        for name in sorted(targets):
            print(name)
        return 0
    unknown = sorted(set(args.target) - set(targets))
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(sorted(targets))}")
    names = args.target or sorted(targets)
    share = args.seconds / len(names)

    if args.engine == "atheris":
        if importlib.util.find_spec("atheris") is None:
            parser.error("atheris is not installed (pip install -e '.[fuzz]')")
        if len(names) == 1:
            entry = targets[names[0]]
            corpus = Path(__file__).parent / f"corpus-{entry.name}"
            corpus.mkdir(exist_ok=True)
            for n, seed in enumerate(entry.seeds):
                (corpus / f"seed-{n}").write_bytes(seed)
            run_atheris(entry, share, [str(corpus)])
        status = 0
        for name in names:
            command = [sys.executable, "-m", "fuzz", "--engine", "atheris"]
            command += ["--target", name, "--seconds", str(share)]
            status = max(status, 1 if subprocess.run(command, check=False).returncode else 0)
        return status

    for name in names:
        try:
            stats = run_hypothesis(targets[name], seconds=share)
        except FuzzFailure as failure:
            print(failure.report(), file=sys.stderr)
            return 1
        print(f"{name}: {stats.examples} inputs in {stats.seconds:.1f} s, no failure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
