"""What the drift audit costs at its default interval, for 100 books.

Two numbers, printed (nothing asserts):

* REST weight: one snapshot per connection per ``audit_interval`` (60 s by
  default), from each venue's own weight table, as a share of its budget;
* CPU: the audit's own work, measured in process on books of the configured
  depth — parsing the snapshot body, and comparing it with the live book while
  leaving out the prices a minute of events touched (the slow, rare path:
  ``Decimal`` on every level) — per audit and per hour.

100 books fit on one connection of every Binance-family venue, so the default
interval audits each of them every 100 minutes. ``python -m benchmarks.audit_cost``
(``--depth N``, ``--events-per-second N``, ``--interval S``).
"""

from __future__ import annotations

import argparse
import random
import time

import orjson

from trio_books.audit import drift
from trio_books.book import OrderBook
from trio_books.venues import ConnectionSpec, get_venue

VENUES = ("binance_spot", "binance_futures", "asterdex_futures")
BOOKS = 100


def snapshot_body(depth: int, last: int) -> bytes:
    bids = [[f"{50_000 - i * 0.5:.2f}", f"{random.randint(1, 9_999) / 1000:.3f}"] for i in range(depth)]
    asks = [[f"{50_000.5 + i * 0.5:.2f}", f"{random.randint(1, 9_999) / 1000:.3f}"] for i in range(depth)]
    return orjson.dumps({"lastUpdateId": last, "bids": bids, "asks": asks})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=1000)
    ap.add_argument("--events-per-second", type=float, default=10.0, help="per book (a liquid Binance symbol: ~10)")
    ap.add_argument("--interval", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    random.seed(7)
    print(f"Drift audit at audit_interval = {args.interval:g} s, {BOOKS} books on one connection, depth {args.depth}\n")
    print("| venue | snapshot weight | audits / min | weight / min | share of the budget |")
    print("|---|---|---|---|---|")
    for vid in VENUES:
        venue = get_venue(vid)
        budget = venue.rest_budget
        depth = min(args.depth, venue.max_depth)
        weight = budget.snapshot_weight(depth)
        per_minute = 60.0 / args.interval
        print(f"| {vid} | {weight} | {per_minute:g} | {weight * per_minute:g} | "
              f"{100 * weight * per_minute / budget.weight_per_minute:.2f} % of {budget.weight_per_minute} |")

    venue = get_venue("binance_spot")
    proto = venue.connect(ConnectionSpec("ws://x", "http://x", ("BTCUSDT",), args.depth))
    body = snapshot_body(args.depth, 1_000)
    snap = proto.parse_snapshot("BTCUSDT", body)
    book = OrderBook(args.depth, tracked=True)
    book.apply_snapshot(snap.bids, snap.asks)
    n_events = int(args.events_per_second * args.interval)
    # what the book records while an audit waits: (update id, bid levels, ask levels) of each event
    events = [(1_001 + i, [(snap.bids[random.randrange(50)][0], "1.000")], [(snap.asks[random.randrange(50)][0], "1.000")])
              for i in range(n_events)]
    parse_s, compare_s = [], []
    for _ in range(args.repeat):
        t0 = time.process_time()
        s = proto.parse_snapshot("BTCUSDT", body)
        t1 = time.process_time()
        found = drift(book, s, events)
        t2 = time.process_time()
        assert found is None
        parse_s.append(t1 - t0)
        compare_s.append(t2 - t1)
    parse, compare = sorted(parse_s)[len(parse_s) // 2], sorted(compare_s)[len(compare_s) // 2]
    per_audit = parse + compare
    per_hour = per_audit * 3600 / args.interval
    print(f"\nCPU per audit (median of {args.repeat}): parse {parse * 1e3:.2f} ms + compare {compare * 1e3:.2f} ms "
          f"({n_events} events recorded) = {per_audit * 1e3:.2f} ms")
    print(f"CPU per hour at one audit per {args.interval:g} s: {per_hour:.2f} s "
          f"({100 * per_hour / 3600:.3f} % of a core); each of the {BOOKS} books audited every {BOOKS * args.interval / 60:g} min")


if __name__ == "__main__":
    main()
