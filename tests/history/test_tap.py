"""The capture's bookkeeping on the Trio thread (no files): what is kept, when a
snapshot is taken, and the gap windows — including a batch the writer could not
take (memory stays bounded: its books get a gap until their next snapshot)."""

from __future__ import annotations

import itertools

import pytest

from trio_books import load_config_text
from trio_books.book import OrderBook
from trio_books.config import ParquetSinkConfig
from trio_books.errors import ConfigError
from trio_books.model import BookState, Delta
from trio_books.sinks.parquet import CaptureTap
from trio_books.store import BookStore


def served(store: BookStore, symbol: str, update_id: int) -> OrderBook:
    book = OrderBook(10)
    book.apply([("1.0", "2")], [("1.1", "3")])
    store.publish("v", symbol, book)
    store.set_state("v", [symbol], BookState.LIVE)
    store.touched(store.entry("v", symbol), update_id, None)
    return book


async def test_changes_snapshots_and_gaps():
    store = BookStore([("v", "S")])
    clock = itertools.count(1000).__next__
    tap = store.tap = CaptureTap(store, ParquetSinkConfig(), clock, started=clock())
    entry = store.entry("v", "S")
    stray = Delta("S", [("0.9", "1")], [], final_id=4)
    tap.applied(entry, OrderBook(10), stray)  # before any snapshot: nothing to apply it to
    book = served(store, "S", 5)
    tap.applied(entry, OrderBook(10), stray)  # another connection's copy: not the served book
    delta = Delta("S", [("1.0", "0")], [("1.2", "1")], final_id=6, exchange_ts=1.5)
    book.apply(delta.bids, delta.asks)
    tap.applied(entry, book, delta)
    store.set_state("v", ["S"], BookState.STALE, error="gap: at 7")
    tap.applied(entry, book, Delta("S", [("1.0", "1")], [], final_id=7))  # not live: not kept
    batch = tap.take()
    (snap,) = batch.snapshots["v"]
    assert snap[:5] == ("S", 1, snap[2], None, 5) and snap[9] == [("1.0", "2")] and snap[10] == [("1.1", "3")]
    assert batch.changes["v"] == [("S", 2, batch.changes["v"][0][2], 1_500_000, 6, [("1.0", "0")], [("1.2", "1")])]
    (started, stale) = batch.gaps["v"]
    assert started[0] == "S" and started[3] == "capture started" and started[2] == snap[2]  # closed by the snapshot
    assert stale[2] is None and stale[3] == "gap: at 7"  # still open, written as such
    served(store, "S", 9)  # resynced: a new book, a snapshot, the gap closed at it
    batch = tap.take()
    assert [g[2] is not None for g in batch.gaps["v"]] == [True] and len(batch.snapshots["v"]) == 1


async def test_a_batch_the_writer_could_not_take_is_a_gap_until_the_next_snapshot():
    store = BookStore([("v", "S"), ("v", "T")])
    clock = itertools.count(1000).__next__
    tap = store.tap = CaptureTap(store, ParquetSinkConfig(), clock, started=clock())
    book = served(store, "S", 5)
    served(store, "T", 1)
    since = tap.take().until  # queued fine
    delta = Delta("S", [("1.0", "4")], [], final_id=6)
    tap.applied(store.entry("v", "S"), book, delta)
    lost = tap.take()
    tap.lost(lost)  # the queue was full: dropped
    assert tap.stats.dropped_batches == 1
    tap.applied(store.entry("v", "S"), book, Delta("S", [("1.0", "5")], [], final_id=7))  # held by the coming snapshot
    store.touched(store.entry("v", "S"), 7, None)
    batch = tap.take()
    assert "v" not in batch.changes and [s[0] for s in batch.snapshots["v"]] == ["S"]
    (gap,) = batch.gaps["v"]
    assert gap[0] == "S" and gap[1] == since and gap[2] == batch.snapshots["v"][0][2] and gap[3].startswith("overflow")


@pytest.mark.parametrize("table,error", [
    ("flush_interval = 0", "sinks.parquet.flush_interval: must be seconds above 0 and at most 3600, got 0"),
    ("max_rows = 10", "sinks.parquet.max_rows: must be between 1000 and 10000000, got 10"),
    ('compression = "lz"', 'sinks.parquet.compression: must be one of zstd, snappy, gzip, none, got "lz"'),
    ('path = ""', "sinks.parquet.path: must name a directory"),
    ("queue = 0", "sinks.parquet.queue: must be between 1 and 1000, got 0"),
    ("rows = 1", "sinks.parquet.rows: unknown key"),
])
def test_config_errors_are_one_line(table, error):
    with pytest.raises(ConfigError) as exc:
        load_config_text(f"[sinks.parquet]\n{table}\n")
    assert str(exc.value).startswith(error)


def test_capture_cli_sets_the_directory(tmp_path):
    from trio_books.cli import capturing

    config = capturing(load_config_text('[sinks.parquet]\nflush_interval = 2\nenabled = false\n'), str(tmp_path))
    assert config.sinks.parquet == ParquetSinkConfig(path=str(tmp_path), flush_interval=2.0)


async def test_a_failed_write_is_a_gap_of_its_books_not_the_end_of_the_service():
    from loguru import logger

    from trio_books.sinks.parquet import _write

    store = BookStore([("v", "S")])
    clock = itertools.count(1000).__next__
    tap = store.tap = CaptureTap(store, ParquetSinkConfig(), clock, started=clock())
    served(store, "S", 5)

    class FullDisk:
        def write(self, batch):
            raise OSError(28, "No space left on device")

    batch = tap.take()
    await _write(FullDisk(), batch, tap, logger)
    assert tap.stats.failed_batches == 1
    cap = tap.books[("v", "S")]
    assert cap.gap_start == batch.since and cap.dirty and cap.gap_reason.startswith("overflow")
