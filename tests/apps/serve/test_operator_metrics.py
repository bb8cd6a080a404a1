"""What operators expect of /metrics: the usual process/Python collectors, the generation
metrics, a Grafana dashboard whose every query names a metric the service exposes, bounded
label cardinality, names that pass ``promtool check metrics``, and a real Prometheus scrape.

The dashboard check parses each panel's PromQL with a small tokenizer (metric names are the
identifiers left once strings, label matchers, ranges, grouping label lists, variables,
keywords and function calls are set aside) and compares them with the sample names of a live
server's exposition, after requests so that labelled series exist. Prometheus itself
(Debian's ``prometheus`` package; ``.ci/run`` installs it) scrapes a live server and answers
every dashboard query. Waits are on conditions with generous limits; nothing asserts timing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_fixture import RunningServer, running_server
from support import fast_source
from test_generation import CountingSource, FakeRuntime, RecordingListener
from test_make_run import free_port

from diaproto.apps.serve.generation import Generation, GenerationEnded, GenerationRegistry
from diaproto.apps.serve.metrics import CONTENT_TYPE, OUTCOMES, ServiceMetrics
from diaproto.apps.serve.model_queue import ModelQueue
from diaproto.apps.serve.requests import StreamRequest
from diaproto.apps.serve.sources import SyntheticSource

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "diaproto-dashboard.json"
WAIT = 10.0  # for a fake loop's worker thread
LIMIT = 30.0  # for a request, or for the server to show what a finished one did
PROMETHEUS_LIMIT = 90.0  # for Prometheus to start, scrape, and store what the server shows
MAX_EXPOSITION_BYTES = 64 * 1024
IN_CI = os.environ.get("CI", "").lower() == "true"

# Series Prometheus makes itself for each target (never in an exposition).
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

# --- PromQL: the metric names an expression reads --------------------------------------------

KEYWORDS = frozenset(
    {
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
        "group_right", "bool", "offset", "inf", "nan", "atan2",
        # Aggregation operators (may be followed by ``by (...)`` rather than ``(``).
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile",
    }
)  # fmt: skip
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
TOKEN = re.compile(
    r"""
      (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<variable>\$\{[^}]*\}|\$[A-Za-z_]\w*)
    | (?P<number>(?:\d+(?:ms|[smhdwy]))+|0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<name>[A-Za-z_:][\w:]*)
    | (?P<space>\s+)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
CLOSING = {"{": "}", "[": "]", "(": ")"}


def _tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text) of every token but spaces, strings and variables (which name no
    metric)."""
    kept = []
    for match in TOKEN.finditer(expr):
        kind = match.lastgroup
        assert kind is not None
        if kind not in ("space", "string", "variable"):
            kept.append((kind, match.group()))
    return kept


def _skip_bracketed(tokens: list[tuple[str, str]], start: int) -> int:
    """The index after the bracket opened at ``start`` closes (brackets of one kind)."""
    opening = tokens[start][1]
    depth = 0
    for i in range(start, len(tokens)):
        if tokens[i][1] == opening:
            depth += 1
        elif tokens[i][1] == CLOSING[opening]:
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError(f"unbalanced {opening!r} in the expression")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers not followed by ``(`` (a function
    or an aggregation), not keywords, outside label matchers ``{...}``, ranges ``[...]`` and
    grouping label lists such as ``by (...)``."""
    tokens = _tokens(expr)
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        follows = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if text in ("{", "["):
            i = _skip_bracketed(tokens, i)
            continue
        if kind == "name" and text in GROUPING and follows == "(":
            i = _skip_bracketed(tokens, i + 1)
            continue
        if kind == "name" and text not in KEYWORDS and follows != "(":
            names.add(text)
        i += 1
    return names


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    """Every panel target's ``expr``, rows' nested panels included."""
    exprs: list[str] = []
    pending = list(dashboard["panels"])
    while pending:
        panel = pending.pop(0)
        pending.extend(panel.get("panels", []))
        exprs.extend(target["expr"] for target in panel.get("targets", []) if "expr" in target)
    return exprs


def exposed_names(exposition: str) -> set[str]:
    """The sample names (``_bucket``, ``_total``... as Prometheus stores them) of a text
    exposition, parsed by prometheus_client's own parser."""
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def missing_names(exprs: list[str], exposition: str) -> set[str]:
    """The metric names the expressions read that the exposition lacks."""
    wanted = set().union(*(promql_metric_names(expr) for expr in exprs))
    return wanted - exposed_names(exposition) - SCRAPE_SERIES


def load_dashboard() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(DASHBOARD.read_text(encoding="utf-8")))


# --- a live server ---------------------------------------------------------------------------


@contextmanager
def observed_server() -> Iterator[RunningServer]:
    """A running service whose generations are observed by its metrics, on the synthetic
    voice with a model queue (as ``--model dia`` has, so the model's line is exported)."""
    source = fast_source()
    assert isinstance(source, SyntheticSource)
    source.model_queue = ModelQueue(max_requests=4)
    with running_server(source) as server:
        # The service reports every generation's end to its own metrics.
        assert server.service.generations.on_ended == server.service.metrics.generation_ended
        yield server


def sample_value(exposition: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def wait_for(condition: Callable[[], bool], limit: float, what: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what if isinstance(what, str) else what()}: not within {limit} s"
            )
        time.sleep(0.05)


def speak(http: httpx.Client, server: RunningServer, text: str = "Hi there.") -> None:
    """One whole SSE stream, and the generation behind it observed."""
    before = completed_generations(http, server)
    response = http.get(
        f"{server.url}/v1/stream", params={"text": text}, headers={"accept": "text/event-stream"}
    )
    assert response.status_code == 200, response.text
    assert "event: end" in response.text, response.text[-500:]
    wait_for(
        lambda: completed_generations(http, server) > before,
        LIMIT,
        "the finished generation in /metrics",
    )


def completed_generations(http: httpx.Client, server: RunningServer) -> float:
    exposition = http.get(f"{server.url}/metrics").text
    count = sample_value(
        exposition,
        "diaproto_generation_duration_seconds_count",
        {"model": "synthetic", "outcome": "completed"},
    )
    return count or 0.0


def client() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=LIMIT)


# --- the tokenizer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job="diaproto"} == bool 1', {"up"}),
        (
            'histogram_quantile(0.99, sum by (le, outcome) (rate(a_bucket{job=~"$job", '
            'x="b(c) {d}"}[$__rate_interval])))',
            {"a_bucket"},
        ),
        ("sum(rate(a_total[5m])) by (x) / on (y) group_left (z) b offset 1h30m", {"a_total", "b"}),
        ("1e3 * x + 0x1F - .5 * y:recorded:rate5m", {"x", "y:recorded:rate5m"}),
        ("max_over_time(sum without (instance) (z)[10m:1m])", {"z"}),
        ("rate(a[1m]) and ignoring (le) b unless c or d", {"a", "b", "c", "d"}),
        ("topk(3, sum by (endpoint) (r_total))", {"r_total"}),
        ("${DS} + ${job:regex}", set()),
    ],
)
def test_the_tokenizer_finds_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_the_check_detects_a_metric_the_server_lacks() -> None:
    exposition = "# TYPE a_total counter\na_total 1.0\n# TYPE b gauge\nb 2.0\n"
    exprs = ["rate(a_total[5m]) + b", "rate(diaproto_made_up_total[5m])", "up"]
    assert missing_names(exprs, exposition) == {"diaproto_made_up_total"}
    assert missing_names(["a_total", "b"], exposition) == set()


# --- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_is_an_importable_grafana_model() -> None:
    dashboard = load_dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    assert [item["name"] for item in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert promql_metric_names(target["expr"]), target["expr"]
    names = set().union(*(promql_metric_names(expr) for expr in dashboard_exprs(dashboard)))
    for wanted in (
        "diaproto_connections",
        "diaproto_active_streams",
        "diaproto_active_generations",
        "diaproto_requests_total",
        "diaproto_refused_total",
        "diaproto_time_to_first_byte_seconds_bucket",
        "diaproto_stream_jitter_seconds_bucket",
        "diaproto_stream_bytes_sent_total",
        "diaproto_generation_duration_seconds_bucket",
        "diaproto_generation_real_time_factor_bucket",
        "diaproto_audio_produced_seconds_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_gc_collections_total",
    ):
        assert wanted in names


def test_every_dashboard_metric_is_exposed() -> None:
    with observed_server() as server, client() as http:
        speak(http, server)
        response = http.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    assert response.headers["content-type"].startswith("text/plain; version=")
    exprs = dashboard_exprs(load_dashboard())
    assert len(exprs) >= 20
    assert missing_names(exprs, response.text) == set()
    # The same check fails for a query of a metric nobody exposes.
    assert missing_names([*exprs, "rate(diaproto_made_up_total[5m])"], response.text) == {
        "diaproto_made_up_total"
    }


# --- the metrics themselves ------------------------------------------------------------------


def test_the_usual_collectors_on_every_service_registry() -> None:
    """Process, platform and GC collectors on each registry; several services in one
    process (as tests build them) register them without a duplicate-name error."""
    for metrics in (ServiceMetrics(), ServiceMetrics(), ServiceMetrics()):
        names = exposed_names(metrics.exposition().decode())
        assert {
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "python_info",
            "python_gc_collections_total",
            "python_gc_objects_collected_total",
        } <= names


def test_generation_metrics_observe_what_a_generation_did() -> None:
    metrics = ServiceMetrics()
    one_second = 44100 * 2
    metrics.generation_ended(GenerationEnded("completed", "dia", 3.0, 0.5, 2 * one_second))
    metrics.generation_ended(GenerationEnded("refused", "dia", 0.01, 0.0, 0))
    text = metrics.exposition().decode()
    completed = {"model": "dia", "outcome": "completed"}
    name = "diaproto_generation_duration_seconds"
    assert sample_value(text, f"{name}_count", completed) == 1.0
    assert sample_value(text, f"{name}_sum", completed) == 3.0
    assert sample_value(text, f"{name}_count", {"outcome": "refused"}) == 1.0
    rtf = {"model": "dia"}
    assert sample_value(text, "diaproto_generation_real_time_factor_count", rtf) == 1.0
    assert sample_value(text, "diaproto_generation_real_time_factor_sum", rtf) == 0.25
    assert sample_value(text, "diaproto_audio_produced_seconds_total", rtf) == 2.0
    assert set(OUTCOMES) == {"completed", "failed", "refused", "stopped"}


def observed_generation(
    source: CountingSource, text: str = "One. Two."
) -> tuple[Generation, FakeRuntime, RecordingListener, list[GenerationEnded]]:
    """A generation (on test_generation's fake loop) whose registry records its ending."""
    ended: list[GenerationEnded] = []
    runtime = FakeRuntime()
    registry = GenerationRegistry(on_ended=ended.append)
    generation = Generation("t", StreamRequest(text, "S1"), source, runtime, registry.retire)
    registry.add(generation)
    listener = RecordingListener()
    generation.attach(listener)
    generation.start()
    return generation, runtime, listener, ended


def test_a_completed_generation_is_reported_once() -> None:
    generation, runtime, listener, ended = observed_generation(CountingSource(per_sentence=3))
    runtime.run_until(lambda: bool(ended))
    (report,) = ended
    assert report.outcome == "completed" and report.model == "counting"
    assert report.audio_bytes == sum(len(chunk) for chunk in listener.chunks) == 6 * 8
    assert report.seconds >= 0 and report.compute_seconds >= 0
    generation.stop()  # nothing more to report
    for worker in runtime.workers:
        worker.join(WAIT)
    assert len(ended) == 1


def test_failed_refused_and_stopped_generations_are_reported() -> None:
    _, runtime, _, ended = observed_generation(CountingSource(per_sentence=3, fail_at=4))
    runtime.run_until(lambda: bool(ended))
    assert [report.outcome for report in ended] == ["failed"]

    busy = CountingSource()
    busy.model_queue = ModelQueue(max_requests=1)
    held = busy.model_queue.admit()
    try:
        _, runtime, _, ended = observed_generation(busy)
        runtime.run_until(lambda: bool(ended))
    finally:
        held.close()
    assert [(r.outcome, r.audio_bytes) for r in ended] == [("refused", 0)]

    generation, runtime, listener, ended = observed_generation(CountingSource(10_000), "Long.")
    runtime.run_until(lambda: len(listener.chunks) >= 2)
    generation.detach(listener, cancelled=True, grace=10.0)
    runtime.run_until(lambda: bool(ended))
    (report,) = ended
    assert report.outcome == "stopped" and report.audio_bytes >= 2 * 8


def test_a_served_generation_is_observed() -> None:
    with observed_server() as server, client() as http:
        speak(http, server, "One sentence. And another one.")
        text = http.get(f"{server.url}/metrics").text
    synthetic = {"model": "synthetic"}
    audio = sample_value(text, "diaproto_audio_produced_seconds_total", synthetic)
    assert audio is not None and audio > 0
    assert sample_value(text, "diaproto_generation_real_time_factor_count", synthetic) == 1.0
    rtf_sum = sample_value(text, "diaproto_generation_real_time_factor_sum", synthetic)
    assert rtf_sum is not None and rtf_sum > 0


def series(exposition: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def test_the_exposition_stays_bounded() -> None:
    """No label takes a value per peer, path, token or stream: requests to new paths and
    new generations add no series once each kind has been seen."""

    def round_of_requests(http: httpx.Client, server: RunningServer, n: int) -> str:
        speak(http, server, f"Round {n}.")
        assert http.get(f"{server.url}/no-such-page-{n}").status_code == 404
        assert http.post(f"{server.url}/healthz").status_code == 405
        assert http.get(f"{server.url}/healthz").status_code == 200
        return http.get(f"{server.url}/metrics").text

    with observed_server() as server, client() as http:
        round_of_requests(http, server, 0)
        first = round_of_requests(http, server, 1)
        for n in range(2, 6):
            last = round_of_requests(http, server, n)
    assert series(last) == series(first)
    assert len(last.encode()) < MAX_EXPOSITION_BYTES


def promtool_or_skip() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        reason = "promtool is missing (Debian's prometheus package; .ci/run installs it)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return promtool


def test_every_name_passes_promtool_lint() -> None:
    promtool = promtool_or_skip()
    with observed_server() as server, client() as http:
        speak(http, server)
        exposition = http.get(f"{server.url}/metrics").text
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


# --- a real Prometheus -----------------------------------------------------------------------


@contextmanager
def running_prometheus(target_port: int, workdir: Path) -> Iterator[str]:
    """Prometheus on 127.0.0.1:<free port> scraping the target every second; its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        reason = "prometheus is missing (Debian's prometheus package; .ci/run installs it)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: diaproto\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n",
        encoding="utf-8",
    )
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield f"http://127.0.0.1:{port}"
        assert process.poll() is None, log_path.read_text(errors="replace")
    finally:
        process.terminate()
        try:
            process.wait(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=LIMIT)


def query(http: httpx.Client, url: str, promql: str) -> list[dict[str, Any]]:
    """The result of an instant query (status "success" asserted)."""
    response = http.get(f"{url}/api/v1/query", params={"query": promql})
    body = response.json()
    assert body["status"] == "success", (promql, body)
    return cast(list[dict[str, Any]], body["data"]["result"])


def answers(http: httpx.Client, url: str, promql: str) -> list[dict[str, Any]]:
    """Like :func:`query`, but nothing while Prometheus is still starting up."""
    try:
        response = http.get(f"{url}/api/v1/query", params={"query": promql})
    except httpx.TransportError:
        return []
    if response.status_code != 200:
        return []
    return cast(list[dict[str, Any]], response.json()["data"]["result"])


def stored_names(http: httpx.Client, url: str) -> set[str]:
    response = http.get(f"{url}/api/v1/label/__name__/values")
    return set(response.json()["data"])


def grafana_to_prometheus(expr: str) -> str:
    """A dashboard query as Prometheus takes it: Grafana's variables filled in."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace('"$job"', '"diaproto"')
        .replace('"$instance"', '".+"')
    )


def test_prometheus_scrapes_the_service(tmp_path: Path) -> None:
    with observed_server() as server, client() as http:
        speak(http, server)
        with running_prometheus(server.port, tmp_path) as url:

            def up() -> bool:
                result = answers(http, url, 'up{job="diaproto"}')
                return any(item["value"][1] == "1" for item in result)

            wait_for(up, PROMETHEUS_LIMIT, "Prometheus scraping the service (up == 1)")
            wait_for(
                lambda: bool(answers(http, url, 'diaproto_connections{job="diaproto"}')),
                PROMETHEUS_LIMIT,
                "a diaproto_connections sample in Prometheus",
            )
            exprs = dashboard_exprs(load_dashboard())
            wanted = set().union(*(promql_metric_names(expr) for expr in exprs))
            wait_for(
                lambda: wanted - SCRAPE_SERIES <= stored_names(http, url),
                PROMETHEUS_LIMIT,
                lambda: f"dashboard metrics not stored: {wanted - stored_names(http, url)}",
            )
            for expr in exprs:  # each query is valid PromQL to Prometheus itself
                query(http, url, grafana_to_prometheus(expr))
            connections = query(http, url, 'diaproto_connections{job="diaproto"}')
            assert float(connections[0]["value"][1]) >= 0
