"""Prometheus metrics of the service, through prometheus_client (one registry per app)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from diaproto.apps.serve.model_queue import ModelQueue
from diaproto.metrics import StreamMetrics

TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
JITTER_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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
            "Requests refused for a per-client limit or a foreign web page, by reason.",
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
