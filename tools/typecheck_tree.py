"""Lay out, under build/typecheck/, the package tree an installed diaproto has, for mypy.

The runtimes and applications live in the top-level ``adapters/`` and ``apps/`` folders and
install as ``diaproto.adapters`` and ``diaproto.apps`` (setuptools ``package-dir``). mypy
cannot follow that mapping, so ``make typecheck`` points it at this tree: links to the real
files, in a build folder git ignores, rebuilt on every run (copies where the system refuses links,
as Windows may without developer mode).
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"
MAPPED = {"adapters": ROOT / "adapters", "apps": ROOT / "apps", "cluster": ROOT / "cluster"}


def place(target: Path, source: Path) -> None:
    try:
        target.symlink_to(source)
    except OSError:
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)


def main() -> None:
    shutil.rmtree(TREE, ignore_errors=True)
    package = TREE / "diaproto"
    package.mkdir(parents=True)
    for entry in sorted((ROOT / "diaproto").iterdir()):
        if entry.name != "__pycache__":
            place(package / entry.name, entry)
    for name, folder in MAPPED.items():
        place(package / name, folder)


if __name__ == "__main__":
    main()
