"""The official MCP conformance suite against diaproto's MCP server: every server scenario.

``@modelcontextprotocol/conformance`` (npm), two pinned releases side by side in
tests/interop/mcp/conformance_suite (npm aliases ``conformance-0.1`` = 0.1.16, the latest, and
``conformance-0.2`` = 0.2.0-alpha.12), installed here with ``npm ci``. It acts as an MCP
client against ``diaproto serve``'s service carrying the suite's reference fixtures
(tests/interop/mcp/conformance_fixture.py), once per run:

- 0.1.16, every server scenario (``--suite all``: pending ones too);
- 0.2.0-alpha.12, every server scenario (each at its own newest revision);
- 0.2.0-alpha.12, what 2025-11-25 requires (``--requirements``, at the handshake wire);
- 0.2.0-alpha.12, what 2026-07-28 requires (``--requirements``, at the stateless wire),
  which also runs the extensions and pending scenarios it does not score.

Every scenario the suite lists for a run must report, and every check of it must pass: a
FAILURE or a WARNING (a SHOULD) fails the test, naming the check and the suite's reason.
The few failures diaproto has not fixed yet are listed in :data:`EXPECTED_FAILURES` with
why; an entry that starts passing fails the test too (remove it).

The suite needs node >= 22 (it imports ``fs.globSync``); on node 20 a loader hook
(conformance_suite/node20.mjs) supplies that one name, which only its ``tier-check``
command calls. Without node and npm the test skips, loudly (it fails under CI=true).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conformance_fixture import conformance_service
from mcp_targets import missing

from diaproto.adapters import start_in_thread
from diaproto.runtime import ServerHandle

SUITE_DIR = Path(__file__).resolve().parent / "conformance_suite"
PACKAGES = {"0.1.16": "conformance-0.1", "0.2.0-alpha.12": "conformance-0.2"}
NPM_TIMEOUT = 300.0
RUN_TIMEOUT = 600.0  # one whole suite run; each scenario has the suite's own 30 s limit
STOP_LIMIT = 15.0


@dataclass(frozen=True)
class Run:
    version: str  # a key of PACKAGES
    args: tuple[str, ...]  # what selects the scenarios
    list_args: tuple[str, ...]  # `conformance list` arguments naming the same scenarios

    @property
    def name(self) -> str:
        return f"{self.version} {' '.join(self.args)}"


RUNS = [
    Run("0.1.16", ("--suite", "all"), ("--server",)),
    Run("0.2.0-alpha.12", ("--suite", "all"), ("--server",)),
    Run(
        "0.2.0-alpha.12",
        ("--requirements", "2025-11-25"),
        ("--server", "--requirements", "2025-11-25"),
    ),
    Run(
        "0.2.0-alpha.12",
        ("--requirements", "2026-07-28"),
        ("--server", "--requirements", "2026-07-28"),
    ),
]

#: (scenario, check id or None for the whole scenario) -> why it fails today. Keep small.
EXPECTED_FAILURES: dict[tuple[str, str | None], str] = {}
#: Scenarios the suite itself cannot judge yet: every check it reports is SKIPPED, whatever
#: the server does. Listed with the suite's own reason; an entry that starts giving a
#: verdict fails the test (remove it).
NO_VERDICT_BY_DESIGN: dict[str, str] = {
    "tasks-status-notifications": (
        "0.2.0-alpha.12 returns one SKIPPED check: 'pending subscriptions/listen rewrite' "
        "(notifications/tasks are optional in SEP-2663)"
    ),
}

FAILING = ("FAILURE", "WARNING")
_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$")


def _node() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing("node/npm not found (the official MCP conformance suite runs on node)")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    major, minor = (int(part) for part in version.lstrip("v").split(".")[:2])
    if (major, minor) < (20, 6):
        missing(f"node {version} is too old for the conformance suite (needs >= 20.6)")
    return node, npm


@pytest.fixture(scope="module")
def node() -> str:
    node, npm = _node()
    installed = all(
        (SUITE_DIR / "node_modules" / package / "dist" / "index.js").is_file()
        for package in PACKAGES.values()
    )
    if not installed:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=SUITE_DIR,
            check=True,
            capture_output=True,
            timeout=NPM_TIMEOUT,
        )
    return node


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The fixture service on the asyncio adapter, once for the module."""
    handle: ServerHandle = start_in_thread("asyncio", conformance_service(), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{handle.port}/mcp"
    finally:
        stopped = handle.stop(STOP_LIMIT)
    assert stopped, "the conformance fixture server did not stop"


def suite(node: str, version: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    entry = SUITE_DIR / "node_modules" / PACKAGES[version] / "dist" / "index.js"
    return subprocess.run(
        [node, "--import", str(SUITE_DIR / "node20.mjs"), str(entry), *args],
        cwd=SUITE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def listed_scenarios(node: str, run: Run) -> set[str]:
    """The server scenarios ``conformance list`` says this run covers."""
    listing = suite(node, run.version, "list", *run.list_args, timeout=60)
    assert listing.returncode == 0, listing.stderr
    names: set[str] = set()
    section = ""
    for line in listing.stdout.splitlines():
        if not line.startswith(" "):
            section = line
            continue
        item = re.fullmatch(r"\s+- (\S+)(?: \[([^\]]+)\])?", line)
        if item is None:
            continue
        name, tag = item.groups()
        if section.startswith("Server scenarios") or (
            section.startswith("Run and reported") and tag == "server"
        ):
            names.add(name)
    assert names, f"no server scenarios in `conformance list {' '.join(run.list_args)}`"
    return names


def read_results(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Scenario name -> its checks, from the suite's ``server-<scenario>-<time>`` folders."""
    results: dict[str, list[dict[str, Any]]] = {}
    for folder in sorted(directory.iterdir()):
        match = _RESULT_DIR.match(folder.name)
        if match is None or not (folder / "checks.json").is_file():
            continue
        checks = json.loads((folder / "checks.json").read_text())
        assert isinstance(checks, list), f"{folder}/checks.json is not a list of checks"
        results[match.group("scenario")] = checks
    return results


def verdicts(
    results: dict[str, list[dict[str, Any]]],
    expected_failures: dict[tuple[str, str | None], str] | None = None,
) -> tuple[dict[str, str], list[str], list[str]]:
    """Per scenario "pass", "FAIL" or "expected failure"; the unexpected failures; and the
    expected failures that no longer fail (stale entries). ``expected_failures`` defaults to
    :data:`EXPECTED_FAILURES`."""
    expected = EXPECTED_FAILURES if expected_failures is None else expected_failures
    table: dict[str, str] = {}
    unexpected: list[str] = []
    stale: list[str] = []
    for scenario, checks in sorted(results.items()):
        failing = [check for check in checks if check.get("status") in FAILING]
        decided = [check for check in checks if check.get("status") in ("SUCCESS", *FAILING)]
        whole = (scenario, None) in expected
        excused = [c for c in failing if whole or (scenario, c.get("id")) in expected]
        wrong = [c for c in failing if c not in excused]
        by_design = scenario in NO_VERDICT_BY_DESIGN
        if by_design and decided:
            stale.append(f"{scenario} (now gives a verdict)")
        if not decided and not whole and not by_design:
            wrong_text = "no check passed or failed: the scenario gave no verdict"
            unexpected.append(f"{scenario}: {wrong_text} ({[c.get('status') for c in checks]})")
        for check in wrong:
            reason = check.get("errorMessage") or json.dumps(check.get("details"))[:500]
            unexpected.append(f"{scenario}: {check.get('status')} {check.get('id')}: {reason}")
        failing_ids = {check.get("id") for check in failing}
        stale.extend(
            f"{scenario}:{check_id}"
            for name, check_id in expected
            if name == scenario and check_id is not None and check_id not in failing_ids
        )
        if whole and not failing and decided:
            stale.append(scenario)
        if wrong or not (decided or whole or by_design):
            table[scenario] = "FAIL"
        elif excused or whole:
            table[scenario] = "expected failure"
        else:
            table[scenario] = "pass" if decided else "no verdict (the suite skips it)"
    return table, unexpected, stale


@pytest.mark.parametrize("run", RUNS, ids=[run.name for run in RUNS])
def test_official_conformance_suite(run: Run, node: str, server_url: str, tmp_path: Path) -> None:
    expected = listed_scenarios(node, run)
    out = tmp_path / "results"
    done = suite(
        node,
        run.version,
        "server",
        "--url",
        server_url,
        *run.args,
        "--output-dir",
        str(out),
        timeout=RUN_TIMEOUT,
    )
    assert out.is_dir(), (
        f"the suite wrote no results:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    results = read_results(out)
    absent = sorted(expected - set(results))
    assert not absent, (
        f"{run.name}: scenarios listed but not reported: {absent}\n{done.stderr[-3000:]}"
    )
    table, unexpected, stale = verdicts(results)
    print(f"\n{run.name}: " + ", ".join(f"{name} {verdict}" for name, verdict in table.items()))
    assert not unexpected, f"{run.name}: checks failing:\n" + "\n".join(unexpected)
    assert not stale, f"{run.name}: expected failures that now pass (remove them): {stale}"


def _check(check_id: str, status: str) -> dict[str, Any]:
    return {"id": check_id, "status": status, "errorMessage": f"{check_id} said so"}


def test_verdicts_catch_failures_warnings_silence_and_stale_entries() -> None:
    """The judge itself: what must fail the suite test does (no node needed)."""
    table, unexpected, stale = verdicts(
        {
            "good": [_check("a", "SUCCESS"), _check("b", "INFO")],
            "bad": [_check("a", "SUCCESS"), _check("b", "FAILURE")],
            "should": [_check("a", "WARNING")],
            "silent": [_check("a", "INFO"), _check("b", "SKIPPED")],
            "http-custom-header-server-validation": [
                _check("sep-2243-server-reject-param-mismatch", "FAILURE"),
                _check("sep-2243-server-reject-invalid-param-chars", "FAILURE"),
                _check("sep-2243-server-validate-param-match", "FAILURE"),
                _check("sep-2243-server-decode-base64", "SUCCESS"),
            ],
            "tasks-status-notifications": [_check("a", "SKIPPED")],
            "server-stateless": [_check("sep-2575-missing-capability-http-400", "SUCCESS")],
        },
        {
            **{
                ("http-custom-header-server-validation", check): "not checked yet"
                for check in (
                    "sep-2243-server-reject-param-mismatch",
                    "sep-2243-server-reject-invalid-param-chars",
                    "sep-2243-server-validate-param-match",
                )
            },
            ("server-stateless", "sep-2575-missing-capability-http-400"): "answered with 200",
        },
    )
    assert table == {
        "bad": "FAIL",
        "good": "pass",
        "server-stateless": "pass",
        "should": "FAIL",
        "silent": "FAIL",
        "http-custom-header-server-validation": "expected failure",
        "tasks-status-notifications": "no verdict (the suite skips it)",
    }
    assert [line.split(":")[0] for line in unexpected] == ["bad", "should", "silent"]
    assert "b said so" in unexpected[0]
    assert stale == ["server-stateless:sep-2575-missing-capability-http-400"]
