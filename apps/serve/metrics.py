"""Prometheus metrics of the service, through prometheus_client (one registry per app)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from diaproto.apps.serve.audio import duration
from diaproto.apps.serve.generation import GenerationEnded
from diaproto.apps.serve.model_queue import ModelQueue
from diaproto.metrics import StreamMetrics

TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
JITTER_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)
GENERATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
RTF_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
# How a generation ended (the ``outcome`` label): a closed set, so the series stay few.
OUTCOMES = ("completed", "failed", "refused", "stopped")
# The label values the service is known to use, set to 0 from the start so that a dashboard
# shows a rate of 0 rather than no data (a value not listed here appears on its first use).
DISCONNECT_REASONS = ("slow_consumer", "protocol_error")
REFUSAL_REASONS = (
    "origin",
    "api_key",
    "journal_unavailable",
    "generations_per_peer",
    "streams_per_connection",
)
MCP_REFUSAL_REASONS = ("full", "peer")

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # What every Python exporter shows (process_*, python_info, python_gc_*), on this
        # registry; registering them on several registries of one process is allowed.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.ttfb = Histogram(
            "diaproto_time_to_first_byte_seconds",
            "From opening a stream to its first chunk leaving the scheduler.",
            buckets=TTFB_BUCKETS,
            registry=r,
        )
        self.jitter = Histogram(
            "diaproto_stream_jitter_seconds",
            "Standard deviation of the gaps between a stream's sends.",
            buckets=JITTER_BUCKETS,
            registry=r,
        )
        self.active_streams = Gauge("diaproto_active_streams", "Open streams.", registry=r)
        self.active_generations = Gauge(
            "diaproto_active_generations", "Model runs in progress.", registry=r
        )
        self.connections = Gauge("diaproto_connections", "Open connections.", registry=r)
        self.bytes_sent = Counter(
            "diaproto_stream_bytes_sent", "Bytes sent on streams.", registry=r
        )
        self.drops = Counter("diaproto_stream_drops", "Messages dropped by policy.", registry=r)
        self.disconnects = Counter(
            "diaproto_disconnects", "Connections ended, by reason.", ["reason"], registry=r
        )
        self.requests = Counter(
            "diaproto_requests",
            "Requests by endpoint and status.",
            ["endpoint", "status"],
            registry=r,
        )

        self.refused = Counter(
            "diaproto_refused",
            "Requests refused, by reason: a per-client limit, a foreign web page, a missing "
            "or wrong API key, the shared journal unavailable.",
            ["reason"],
            registry=r,
        )

        self.mcp_sessions_refused = Counter(
            "diaproto_mcp_sessions_refused",
            "MCP initialize requests refused because every session was in use, by reason.",
            ["reason"],
            registry=r,
        )
        self.mcp_sessions = Gauge(
            "diaproto_mcp_sessions", "Open MCP sessions, by transport.", ["transport"], registry=r
        )
        self.mcp_calls = Counter(
            "diaproto_mcp_tool_calls", "MCP tool calls started, by tool.", ["tool"], registry=r
        )

        self.generation_time = Histogram(
            "diaproto_generation_duration_seconds",
            "From a generation's start to its source's close (pauses for a slow listener "
            "included), by model and outcome (completed, failed, refused, stopped).",
            ["model", "outcome"],
            buckets=GENERATION_BUCKETS,
            registry=r,
        )
        self.real_time_factor = Histogram(
            "diaproto_generation_real_time_factor",
            "RTF = compute time / audio duration, per generation that produced audio: the "
            "seconds spent waiting on the model for chunks (its queue included, pauses for a "
            "slow listener not) over the seconds of audio they hold; below 1 is faster than "
            "real time.",
            ["model"],
            buckets=RTF_BUCKETS,
            registry=r,
        )
        self.audio_produced = Counter(
            "diaproto_audio_produced_seconds",
            "Seconds of audio the model produced, counted as each generation ends.",
            ["model"],
            registry=r,
        )

        for counter, values in (
            (self.disconnects, DISCONNECT_REASONS),
            (self.refused, REFUSAL_REASONS),
            (self.mcp_sessions_refused, MCP_REFUSAL_REASONS),
        ):
            for value in values:
                counter.labels(value)

    def watch_model_queue(self, queue: ModelQueue) -> None:
        """Export the model's line (read at each scrape)."""
        self.registry.register(_ModelQueueCollector(queue))

    def stream_finished(self, metrics: StreamMetrics) -> None:
        ttfb = metrics.time_to_first_byte
        if ttfb is not None:
            self.ttfb.observe(ttfb)
        jitter = metrics.jitter
        if jitter is not None:
            self.jitter.observe(jitter)
        self.bytes_sent.inc(metrics.bytes_sent)
        self.drops.inc(metrics.drops)

    def generation_ended(self, ended: GenerationEnded) -> None:
        """Observe a generation whose source has closed (a :class:`GenerationRegistry`'s
        ``on_ended``)."""
        outcome = ended.outcome if ended.outcome in OUTCOMES else "failed"
        self.generation_time.labels(ended.model, outcome).observe(max(ended.seconds, 0.0))
        audio = duration(ended.audio_bytes)
        if audio > 0:
            self.real_time_factor.labels(ended.model).observe(
                max(ended.compute_seconds, 0.0) / audio
            )
        self.audio_produced.labels(ended.model).inc(audio)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ModelQueueCollector(Collector):
    def __init__(self, queue: ModelQueue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        stats = self.queue.stats()
        yield GaugeMetricFamily(
            "diaproto_model_running", "Generations running on the model.", value=stats.running
        )
        yield GaugeMetricFamily(
            "diaproto_model_waiting", "Requests waiting for the model.", value=stats.waiting
        )
        yield GaugeMetricFamily(
            "diaproto_model_requests",
            "Requests in progress on the model (running, waiting, or between turns).",
            value=stats.admitted,
        )
        yield GaugeMetricFamily(
            "diaproto_model_requests_limit",
            "Requests the model takes on at once; past it new ones are refused.",
            value=stats.max_requests,
        )
        yield CounterMetricFamily(
            "diaproto_model_turns", "Turns at the model granted.", value=stats.served
        )
        yield CounterMetricFamily(
            "diaproto_model_refused",
            "Requests refused because the model had as many as it takes.",
            value=stats.refused,
        )
