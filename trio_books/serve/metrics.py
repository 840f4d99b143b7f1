"""Prometheus metrics, collected from the store at scrape time (nothing on the hot path)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import trio
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import CollectorRegistry

from ..model import BookState
from ..store import LATENCY_BUCKETS, BookStore

REASONS = ("gap", "checksum", "crossed", "heartbeat", "overflow", "close", "error", "bad_frame",
           "rejected", "snapshot", "sync_timeout", "no_data", "resync_limit", "planned")


class ClientCounts:
    """API and stream client counts, kept by the HTTP app."""

    def __init__(self) -> None:
        self.http_requests = 0
        self.stream_clients = 0
        self.stream_clients_total = 0
        self.stream_snapshots = 0


class StoreCollector:
    def __init__(self, store: BookStore, clients: ClientCounts, figure_books: tuple[str, ...] = ()) -> None:
        self.store = store
        self.clients = clients
        self.figure_books = figure_books

    def collect(self) -> Iterator:
        store = self.store
        frames = CounterMetricFamily("trio_books_frames", "WebSocket frames received", labels=["venue"])
        nbytes = CounterMetricFamily("trio_books_received_bytes", "WebSocket payload bytes received", labels=["venue"])
        reconnects = CounterMetricFamily("trio_books_reconnects", "Connection attempts after the first", labels=["venue"])
        ended = CounterMetricFamily("trio_books_attempt_failures", "Connection attempts ended, by reason", labels=["venue", "reason"])
        resyncs = CounterMetricFamily("trio_books_resyncs", "Books rebuilt after an integrity failure (single books and whole connections), by reason", labels=["venue", "reason"])
        book_resyncs = CounterMetricFamily("trio_books_book_resyncs", "Faults of single books (each resynced alone; rejected: refused by the venue), by book and reason",
                                           labels=["venue", "symbol", "reason"])
        book_error = GaugeMetricFamily("trio_books_book_error_info", "1 for a book that is not live, with why (its last fault or the venue's refusal)",
                                       labels=["venue", "symbol", "reason", "error"])
        parse_errors = CounterMetricFamily("trio_books_parse_errors", "Frames that could not be parsed", labels=["venue"])
        snapshots = CounterMetricFamily("trio_books_rest_snapshots", "REST snapshots fetched", labels=["venue"])
        rest_errors = CounterMetricFamily("trio_books_rest_errors", "REST snapshot requests that failed (HTTP errors, timeouts)", labels=["venue"])
        ignored = CounterMetricFamily(
            "trio_books_events_ignored",
            "Events dropped on purpose, by reason: unrequested (a symbol or topic the connection did not ask for, or whose subscription the venue has not confirmed), "
            "before_snapshot (a delta before the first socket snapshot), already_applied (a replay the chain has passed)",
            labels=["venue", "reason"],
        )
        connected = GaugeMetricFamily("trio_books_connected", "Open venue connections", labels=["venue"])
        occupancy = GaugeMetricFamily("trio_books_channel_occupancy", "Update channel batches waiting", labels=["venue"])
        high = GaugeMetricFamily("trio_books_channel_high_water", "Highest update channel occupancy seen", labels=["venue"])
        capacity = GaugeMetricFamily("trio_books_channel_capacity", "Update channel capacity", labels=["venue"])
        state = GaugeMetricFamily("trio_books_book_state", "1 for the book's current state", labels=["venue", "symbol", "state"])
        audits = CounterMetricFamily("trio_books_audits", "Drift audits of live books against a fresh REST snapshot, by result",
                                     labels=["venue", "result"])
        complete = GaugeMetricFamily("trio_books_book_complete_depth",
                                     "Levels a live book provably knows completely, per side (only these are served)",
                                     labels=["venue", "symbol", "side"])
        age = GaugeMetricFamily("trio_books_book_age_seconds", "Seconds since the book last applied an update", labels=["venue", "symbol"])
        latency = HistogramMetricFamily("trio_books_apply_latency_seconds", "Exchange timestamp to book applied", labels=["venue"])
        from ..store import IGNORE_REASONS, INTEGRITY_REASONS

        now = trio.current_time() if _in_trio() else None
        for venue, st in store.venues.items():
            frames.add_metric([venue], st.frames)
            nbytes.add_metric([venue], st.bytes)
            reconnects.add_metric([venue], st.reconnects)
            for reason in REASONS:
                ended.add_metric([venue, reason], st.failures.get(reason, 0))
                if reason in INTEGRITY_REASONS or reason == "snapshot":
                    resyncs.add_metric([venue, reason], st.failures.get(reason, 0) + st.book_resyncs.get(reason, 0))
            parse_errors.add_metric([venue], st.failures.get("bad_frame", 0))
            snapshots.add_metric([venue], st.snapshots_fetched)
            rest_errors.add_metric([venue], st.rest_errors)
            for reason in IGNORE_REASONS:
                ignored.add_metric([venue, reason], st.ignored.get(reason, 0))
            connected.add_metric([venue], st.connected)
            for result in ("passed", "failed", "skipped"):
                audits.add_metric([venue, result], st.audits.get(result, 0))
            occupancy.add_metric([venue], st.channel_used)
            high.add_metric([venue], st.channel_high_water)
            capacity.add_metric([venue], st.channel_capacity)
            buckets, running = [], 0
            for bound, count in zip(LATENCY_BUCKETS, st.latency.counts):
                running += count
                buckets.append((repr(bound), running))
            buckets.append(("+Inf", st.latency.n))
            latency.add_metric([venue], buckets, st.latency.total)
        for e in store.entries():
            for s in BookState:
                state.add_metric([e.venue, e.symbol, s.value], 1.0 if e.state is s else 0.0)
            if e.applied_at is not None and now is not None:
                age.add_metric([e.venue, e.symbol], max(0.0, now - e.applied_at))
            if e.state is BookState.LIVE and e.book is not None:
                n_bids, n_asks = e.book.complete_depth()
                complete.add_metric([e.venue, e.symbol, "bids"], n_bids)
                complete.add_metric([e.venue, e.symbol, "asks"], n_asks)
            for reason, n in e.resyncs.items():
                book_resyncs.add_metric([e.venue, e.symbol, reason], n)
            if e.error is not None and e.state is not BookState.LIVE:
                reason, _, text = e.error.partition(": ")
                book_error.add_metric([e.venue, e.symbol, reason, text[:160]], 1.0)
        yield from (frames, nbytes, reconnects, ended, resyncs, book_resyncs, book_error, parse_errors, snapshots, rest_errors, ignored, connected,
                    occupancy, high, capacity, state, complete, age, latency, audits)
        requests = CounterMetricFamily("trio_books_http_requests", "HTTP API requests served")
        requests.add_metric([], self.clients.http_requests)
        stream = GaugeMetricFamily("trio_books_stream_clients", "Connected WebSocket stream clients")
        stream.add_metric([], self.clients.stream_clients)
        stream_total = CounterMetricFamily("trio_books_stream_clients_accepted", "WebSocket stream clients accepted")
        stream_total.add_metric([], self.clients.stream_clients_total)
        info = GaugeMetricFamily("trio_books_shard_info", "This instance's shard (K/N; empty when not sharded)", labels=["shard"])
        info.add_metric([store.shard], 1)
        yield info
        uptime = GaugeMetricFamily("trio_books_uptime_seconds", "Seconds since start")
        uptime.add_metric([], time.time() - store.started_at)
        yield from (requests, stream, stream_total, uptime)
        if self.figure_books:
            yield from figure_families(store, self.figure_books)
        if store.sinks.get("redis") is not None:
            from ..sinks.redis import sink_metric_families

            yield from sink_metric_families(store.sinks["redis"])


FIGURE_BANDS = ("10", "50", "100")


def figure_families(store: BookStore, books: tuple[str, ...]) -> Iterator:
    """Derived figures of the live books listed in ``service.metrics_books`` (``venue:SYMBOL``);
    exact decimals in the API, Prometheus' doubles here (for graphs and alerts)."""
    labels = ["venue", "symbol"]
    mid = GaugeMetricFamily("trio_books_book_mid", "(best bid + best ask) / 2", labels=labels)
    spread = GaugeMetricFamily("trio_books_book_spread_bps", "(best ask - best bid) / mid, in basis points", labels=labels)
    micro = GaugeMetricFamily("trio_books_book_micro_price", "Size-weighted mid of the best levels", labels=labels)
    imbalance = GaugeMetricFamily("trio_books_book_imbalance", "(bid - ask) / (bid + ask) base quantity over the top 5 levels",
                                  labels=labels)
    base = GaugeMetricFamily("trio_books_book_depth_base", "Base quantity within bps of the mid, per side", labels=[*labels, "side", "bps"])
    quote = GaugeMetricFamily("trio_books_book_depth_quote", "Quote amount within bps of the mid, per side", labels=[*labels, "side", "bps"])
    for name in dict.fromkeys(books):  # (a book listed twice is exported once)
        venue, _, symbol = name.partition(":")
        if (venue, symbol) not in store or store.state(venue, symbol) is not BookState.LIVE:
            continue  # another shard's book, or not live: no figure rather than a stale one
        figures = store.view(venue, symbol).stats(5, FIGURE_BANDS)
        for family, value in ((mid, figures["mid"]), (spread, figures["spread_bps"]), (micro, figures["micro_price"]),
                              (imbalance, figures["imbalance"]["value"])):
            if value is not None:
                family.add_metric([venue, symbol], float(value))
        for band, sides in figures["depth"].items():
            for side, d in (sides or {}).items():
                base.add_metric([venue, symbol, side, band], float(d["base"]))
                quote.add_metric([venue, symbol, side, band], float(d["quote"]))
    yield from (mid, spread, micro, imbalance, base, quote)


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_task()
        return True
    except RuntimeError:
        return False


def build_registry(store: BookStore, clients: ClientCounts, figure_books: tuple[str, ...] = ()) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, clients, figure_books))
    return registry
