"""The Parquet capture's cost: bytes per change on disk and CPU.

``python -m benchmarks.history_capture [--seconds 30] [--symbols 10] [--rate 10]``

Runs the nine shipped fakes (``--symbols`` books each, ``--rate`` events per book
per second: 10 × 10 is the fleet benchmark's rate) and the books in this process
twice for the same window: without a capture, then with ``[sinks.parquet]``. The
process CPU time of the two windows (the writer thread included) gives the
capture's CPU cost; the files written give bytes per change (every file of the
capture, snapshots and manifests included, over the level changes captured).
Prints one line per figure.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import trio

from trio_books.config import ParquetSinkConfig, load_config_text
from trio_books.demo import DEMO_SYMBOLS
from trio_books.log import setup_logging
from trio_books.model import BookState
from trio_books.runner import build_store, run_venues
from trio_books.sinks.parquet import run_parquet_sink
from trio_books.testing import fake_for
from trio_books.venues import available

BASES = ["BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "LTC", "DOT", "AVAX", "LINK", "ATOM", "TRX", "BCH", "NEAR", "UNI"]


def symbols(vid: str, n: int) -> list[str]:
    """``n`` symbols in the venue's notation (the demo's BTC symbol with other bases)."""
    return [DEMO_SYMBOLS[vid][0].replace("BTC", base, 1) for base in BASES[:n]]


async def window(seconds: float, n: int, rate: float, capture: Path | None) -> dict:
    async with trio.open_nursery() as nursery:
        tables = []
        for vid in available():
            fake = await nursery.start(fake_for(vid)(symbols(vid, n), rate=rate, seed=7).serve)
            tables.append(fake.config_toml())
        config = load_config_text("\n".join(tables))
        store = build_store(config)
        tap = None
        if capture is not None:
            tap = await nursery.start(run_parquet_sink, ParquetSinkConfig(path=str(capture)), store)
        venues = trio.CancelScope()

        async def books() -> None:
            with venues:
                await run_venues(config, store)

        nursery.start_soon(books)
        with trio.fail_after(60):
            while not all(e.state is BookState.LIVE for e in store.entries()):
                await store.wait_change()
        await trio.sleep(2.0)
        changes0 = tap.stats.changes + sum(map(len, tap.batch.changes.values())) if tap else 0
        c0, t0, w0 = time.process_time(), time.monotonic(), WRITER_CPU[0]
        await trio.sleep(seconds)
        cpu, wall = time.process_time() - c0, time.monotonic() - t0
        out = {"cpu": cpu / wall, "writer": (WRITER_CPU[0] - w0) / wall, "books": len(store.entries()), "frames": sum(v.frames for v in store.venues.values())}
        if tap is not None:
            out["deltas"] = tap.stats.changes + sum(map(len, tap.batch.changes.values())) - changes0
        venues.cancel()  # the books stop; the capture then writes its last rows and closes
        await trio.sleep(0)
        nursery.cancel_scope.cancel()
    return out


WRITER_CPU = [0.0]


def _timed_writes() -> None:
    """Count the writer thread's own CPU time (``HistoryWriter.write``)."""
    from trio_books.history.writer import HistoryWriter

    write = HistoryWriter.write

    def timed(self, batch):
        c0 = time.thread_time()
        try:
            return write(self, batch)
        finally:
            WRITER_CPU[0] += time.thread_time() - c0

    HistoryWriter.write = timed


def micro(n: int = 100_000) -> tuple[float, float]:
    """CPU µs per change (three levels) on the Trio thread (the tap) and in the writer
    thread, measured alone: figures other load moves less than the windows above."""
    from trio_books.book import OrderBook
    from trio_books.history.writer import HistoryWriter
    from trio_books.model import Delta
    from trio_books.sinks.parquet import CaptureTap, wall_clock_us
    from trio_books.store import BookStore

    async def run() -> tuple[float, float]:
        store = BookStore([("v", "S")])
        clock = wall_clock_us()
        tap = CaptureTap(store, ParquetSinkConfig(), clock, clock())
        book = OrderBook(1000)
        book.apply([(f"{1000 - i}.00", "1.0") for i in range(1, 100)], [(f"{1000 + i}.00", "1.0") for i in range(1, 100)])
        store.publish("v", "S", book)
        store.set_state("v", ["S"], BookState.LIVE)
        entry = store.entry("v", "S")
        delta = Delta("S", [("999.00", "2.0"), ("998.00", "0")], [("1001.00", "3.0")], final_id=5, exchange_ts=time.time())
        times = []
        for tapped in (None, tap):
            store.tap = tapped
            store.touched(entry, 1, None)
            c0 = time.process_time()
            for i in range(n):
                if tapped is not None:
                    tapped.applied(entry, book, delta)
                store.touched(entry, i, None)
            times.append(time.process_time() - c0)
        batch = tap.take()
        with tempfile.TemporaryDirectory() as tmp:
            writer = HistoryWriter(tmp, "micro")
            writer.open_run(clock())
            c0 = time.process_time()
            writer.write(batch)
            written = time.process_time() - c0
        return (times[1] - times[0]) / n * 1e6, written / n * 1e6

    return trio.run(run)


def on_disk(root: Path) -> tuple[int, int, int]:
    import pyarrow.parquet as pq

    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    changes = sum(pq.read_metadata(p).num_rows for p in root.rglob("changes-*.parquet"))
    deltas = sum(pq.read_table(p, columns=["symbol", "seq"]).group_by(["symbol", "seq"]).aggregate([]).num_rows
                 for p in root.rglob("changes-*.parquet"))
    return total, changes, deltas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--rate", type=float, default=10.0)
    args = ap.parse_args()
    setup_logging("ERROR")
    _timed_writes()
    import pyarrow.parquet  # noqa: F401  (imported before both windows: same heap, same GC work)

    from trio_books.gcpolicy import tune_gc

    tune_gc(10_000)  # as the service does at start (service.gc_threshold)
    with tempfile.TemporaryDirectory(prefix="trio-books-capture-") as tmp:
        root = Path(tmp)
        base = trio.run(window, args.seconds, args.symbols, args.rate, None)
        cap = trio.run(window, args.seconds, args.symbols, args.rate, root)
        total, rows, deltas = on_disk(root)
    events = args.rate * base["books"]
    print(f"fleet: 9 venues × {args.symbols} books × {args.rate:g} events/s = {events:.0f} events/s, {args.seconds:g} s windows")
    print(f"CPU without capture: {base['cpu']:.1%} of a core; with capture: {cap['cpu']:.1%}; "
          f"capture cost: {cap['cpu'] - base['cpu']:+.1%} of a core ({(cap['cpu'] - base['cpu']) / max(events, 1) * 1e6:.1f} µs per event), "
          f"of which the writer thread {cap['writer']:.1%} ({cap['writer'] / max(events, 1) * 1e6:.1f} µs per event)")
    print(f"on disk: {total / 1e6:.2f} MB for {rows} level changes in {deltas} changes (snapshots and manifests included): "
          f"{total / max(rows, 1):.1f} bytes per level change, {total / max(deltas, 1):.1f} bytes per change")
    tap_us, writer_us = micro()
    print(f"per change of 3 levels, measured alone: {tap_us:.1f} µs on the Trio thread, {writer_us:.1f} µs in the writer thread")
    hour = total / max(deltas, 1) * events * 3600
    print(f"an hour at this rate: {hour / 1e6:.0f} MB; per event per second of rate: {hour / max(events, 1) / 1e6:.2f} MB an hour")


if __name__ == "__main__":
    main()
