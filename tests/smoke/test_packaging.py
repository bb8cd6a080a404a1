"""What a user installs: the wheel and the sdist hold every package and file, and both an
editable and a plain install import every module.

The runtimes and applications live in the top-level ``adapters/`` and ``apps/`` folders and
install as ``diaproto.adapters`` and ``diaproto.apps`` (setuptools ``package-dir``); the page's
JavaScript client is ``clients/js/src/diaproto.js``. A package missing from pyproject's list,
or a file missing from MANIFEST.in, fails here rather than on a user's machine.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Everything the tests, fuzzers and examples need from the tree, besides what npm installs.
NOT_SHIPPED = ("node_modules", "__pycache__")
IN_A_CHECKOUT = (ROOT / ".git").exists()

# Imports every module of the installed package and prints where diaproto came from.
IMPORT_ALL = """
import importlib, sys
import diaproto
for name in sys.argv[1:]:
    importlib.import_module(name)
print(diaproto.__file__)
"""


def source_files(folder: str, suffixes: tuple[str, ...] = (".py",)) -> set[str]:
    return {
        str(path.relative_to(ROOT / folder))
        for path in (ROOT / folder).rglob("*")
        if path.is_file()
        and path.suffix in suffixes
        and not any(part in NOT_SHIPPED for part in path.parts)
    }


def module_names() -> list[str]:
    """Every module the package has, by the names it installs under."""
    names = []
    for folder, package in (
        ("diaproto", "diaproto"),
        ("adapters", "diaproto.adapters"),
        ("cluster", "diaproto.cluster"),
        ("apps", "diaproto.apps"),
    ):
        for name in sorted(source_files(folder)):
            parts = name.removesuffix(".py").split("/")
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join([package, *parts]))
    return names


def tracked(prefix: str) -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", prefix], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return set(listed)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel and an sdist built from this tree, as a user's build frontend would."""
    out = tmp_path_factory.mktemp("dist")
    build = (
        # build_wheel leaves sys.argv changed, so the folder is read first.
        "import sys\nfrom setuptools import build_meta as backend\nout = sys.argv[1]\n"
        "backend.build_wheel(out)\nbackend.build_sdist(out)"
    )
    subprocess.run(
        [sys.executable, "-c", build, str(out)], cwd=ROOT, check=True, capture_output=True
    )
    return out


def test_the_wheel_holds_every_module_and_file(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = (
        {f"diaproto/{name}" for name in source_files("diaproto", (".py", ".json", ".typed"))}
        | {f"diaproto/adapters/{name}" for name in source_files("adapters")}
        | {f"diaproto/cluster/{name}" for name in source_files("cluster")}
        | {f"diaproto/apps/{name}" for name in source_files("apps")}
        | {f"diaproto/apps/serve/static/{p.name}" for p in (ROOT / "apps/serve/static").iterdir()}
        | {"diaproto/apps/serve/client/diaproto.js"}
    )
    assert expected - names == set()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    # Nothing from outside the package: no tests, no top-level adapters/ or apps/.
    assert {name.split("/")[0] for name in names} == {
        "diaproto",
        wheel.name.split("-py3")[0] + ".dist-info",
    }


@pytest.mark.skipif(not IN_A_CHECKOUT, reason="compares with git's files: needs a git checkout")
def test_the_sdist_holds_the_whole_project_to_test(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        names = {name.removeprefix(f"{top}/") for name in archive.getnames()}
    wanted = {
        name
        for name in tracked(".")
        if name.startswith(
            (
                "diaproto/",
                "adapters/",
                "cluster/",
                "apps/",
                "tests/",
                "fuzz/",
                "examples/",
                "tools/",
                "deploy/",
            )
        )
        or name in ("LICENSE", "README.md", "pyproject.toml", "Makefile", "MANIFEST.in")
    }
    assert wanted - names == set()


def test_a_plain_install_imports_every_module(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target, wheel],
        check=True,
        capture_output=True,
    )
    # Run outside the checkout, with the installed copy ahead of the editable one.
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, *module_names()],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(target)


def test_the_editable_install_imports_every_module(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, *module_names()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(ROOT / "diaproto")


def test_every_source_folder_is_a_listed_package() -> None:
    """pyproject lists packages by hand (package-dir needs it): a new folder must be added."""
    import tomllib  # noqa: PLC0415

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    folders = {name.rsplit(".", 1)[0] for name in module_names() if "." in name}
    packages = {name for name in module_names() if (name in folders)}
    assert packages <= listed
