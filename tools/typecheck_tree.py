"""Lay out, under build/typecheck/, the package tree an installed diaproto has, for mypy.

The runtimes and applications live in the top-level ``adapters/`` and ``apps/`` folders and
install as ``diaproto.adapters`` and ``diaproto.apps`` (setuptools ``package-dir``). mypy
cannot follow that mapping, so ``make typecheck`` points it at this tree: links to the real
files, in a build folder git ignores, rebuilt on every run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"
MAPPED = {"adapters": ROOT / "adapters", "apps": ROOT / "apps"}


def main() -> None:
    shutil.rmtree(TREE, ignore_errors=True)
    package = TREE / "diaproto"
    package.mkdir(parents=True)
    for entry in sorted((ROOT / "diaproto").iterdir()):
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name, folder in MAPPED.items():
        (package / name).symlink_to(folder)


if __name__ == "__main__":
    main()
