"""What a Redis sink counts (``store.sinks["redis"]``), and its Prometheus families."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any, Final

import attrs

from ..store import LATENCY_BUCKETS, LatencyHistogram

RECENT_LATENCIES: Final = 4096


@attrs.define
class RedisSinkStats:
    """Counters of one Redis sink (``store.sinks["redis"]``); all plain numbers."""

    url: str
    shard: str
    publisher: str
    queue_capacity: int
    books: int = 0
    connected: bool = False
    messages: int = 0
    snapshots: int = 0
    updates: int = 0
    bytes: int = 0  # bytes written to Redis (the protocol, all included)
    batches: int = 0
    errors: int = 0  # failed Redis operations (writes, connection attempts)
    outages: int = 0  # times Redis went from reachable to not (the first failure counts too)
    overflows: int = 0  # books that found the pending queue full (each got a snapshot later)
    outage_snapshots: int = 0  # snapshots published because Redis had failed
    pending: int = 0
    pending_high_water: int = 0
    write_seconds: float = 0.0  # time spent in pipelines (round trips)
    encode_seconds: float = 0.0  # time spent encoding on the Trio thread
    encode_max_s: float = 0.0  # longest stretch the sink held the Trio thread
    last_error: str | None = None
    last_publish_at: float | None = None  # trio clock
    latency: LatencyHistogram = attrs.field(factory=LatencyHistogram)  # change seen -> written to Redis
    recent: collections.deque = attrs.field(factory=lambda: collections.deque(maxlen=RECENT_LATENCIES))

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in attrs.fields(type(self)) if f.name not in ("latency", "recent")}
        out["latency_mean_s"] = self.latency.total / self.latency.n if self.latency.n else None
        return out


def sink_metric_families(stats: RedisSinkStats | None) -> Iterator[Any]:
    """Prometheus families for ``/metrics`` (nothing when no sink runs)."""
    if stats is None:
        return
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    def counter(name: str, doc: str, value: float) -> Any:
        m = CounterMetricFamily(f"trio_books_redis_{name}", doc)
        m.add_metric([], value)
        return m

    def gauge(name: str, doc: str, value: float) -> Any:
        m = GaugeMetricFamily(f"trio_books_redis_{name}", doc)
        m.add_metric([], value)
        return m

    yield gauge("connected", "1 while the Redis sink can write", 1.0 if stats.connected else 0.0)
    yield counter("messages", "Stream messages published (snapshots and updates)", stats.messages)
    yield counter("snapshots", "Snapshots published", stats.snapshots)
    yield counter("updates", "Updates published", stats.updates)
    yield counter("written_bytes", "Bytes written to Redis", stats.bytes)
    yield counter("batches", "Batches written (one pipeline each)", stats.batches)
    yield counter("errors", "Failed Redis operations", stats.errors)
    yield counter("outages", "Times Redis became unreachable or failed", stats.outages)
    yield counter("overflows", "Books that found the pending queue full (a snapshot followed)", stats.overflows)
    yield gauge("pending", "Books with changes not yet published", stats.pending)
    yield gauge("pending_high_water", "Most books pending at once", stats.pending_high_water)
    yield gauge("queue_capacity", "Bound of the pending queue", stats.queue_capacity)
    hist = HistogramMetricFamily("trio_books_redis_publish_latency_seconds", "Book change seen to written to Redis")
    buckets, running = [], 0
    for bound, count in zip(LATENCY_BUCKETS, stats.latency.counts):
        running += count
        buckets.append((repr(bound), running))
    buckets.append(("+Inf", stats.latency.n))
    hist.add_metric([], buckets, stats.latency.total)
    yield hist
