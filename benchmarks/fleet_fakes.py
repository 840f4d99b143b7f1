"""One venue's fake (``trio_books.testing``) in its own process, for ``benchmarks.fleet``.

    python -m benchmarks.fleet_fakes VENUE_ID --symbols 100 --seed 1

Prints one JSON line once it listens: ``{"config": "<its [venues.ID] table>"}``.
Drives the stream itself (the fake's own ticker is off): every symbol has its
own rate, drawn between ``--min-rate`` and ``--max-rate`` events/s (capped at the
venue's documented push cadence, :data:`CADENCE`), and every
``--burst-every`` seconds a tenth of the symbols send ``--burst`` events at once.
Events go out on a ``--grid`` of ticks (see :class:`Driver`). Reads commands on
stdin, one per line: ``pause`` (only heartbeats from then on), ``resume``,
``stats`` (prints one JSON line: :meth:`Driver.stats`); stops when stdin closes
or after ``--max-seconds``. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import sys

import trio

from trio_books.testing import fake_for

SYMBOL_FORMS = {
    "okx_spot": "S{:03d}-USDT",
    "bingx_spot": "S{:03d}-USDT",
    "coinbase_spot": "S{:03d}-USD",
    "kraken_spot": "S{:03d}/USD",
}


def symbols_for(venue_id: str, n: int) -> list[str]:
    form = SYMBOL_FORMS.get(venue_id, "S{:03d}USDT")
    return [form.format(i) for i in range(n)]


BINANCE_FAMILY = ("binance_spot", "binance_futures", "asterdex_futures")
"""Venues whose ``@100ms`` streams publish every symbol's update on 100 ms boundaries."""


def default_grid(venue_id: str) -> float:
    return 0.1 if venue_id in BINANCE_FAMILY else 0.01


CADENCE = {**{v: 0.1 for v in BINANCE_FAMILY}, "okx_spot": 0.1, "bingx_spot": 0.3}
"""Seconds between two pushes of one symbol, where the venue's docs fix it (shared/protocols):
Binance's ``@100ms`` streams and OKX ``books`` send a symbol's changes every 100 ms, BingX's
``@depth<L>`` a full book every 300 ms. Bybit's ``orderbook.50`` (20 ms), Coinbase and Kraken
push as changes come."""


class Driver:
    """Paces the events of every symbol (one heap of due times, one task).

    With ``grid`` > 0 it wakes on a fixed grid: each tick sends every event due
    by then (a symbol whose rate exceeds the grid's gets several), ``batch`` events
    per :meth:`~trio_books.testing.FakeVenue.corked` block, so each connection gets
    one write per batch (more events per write would make the first ones wait longer
    between their timestamp and the wire). ``grid`` 0: a wake-up and a write per
    event as it falls due. ``lags`` holds, per tick, how long after the tick its
    last frames were written; ``waits``, per event, how long its frames waited."""

    def __init__(self, fake, rng: random.Random, min_rate: float, max_rate: float, burst: int, burst_every: float,
                 grid: float = 0.0, batch: int = 8, cadence: float = 0.0) -> None:
        self.fake, self.rng, self.grid = fake, rng, grid
        # a venue with a push cadence sends a symbol at most once per cadence (its rate is capped,
        # and a symbol due twice in one tick, a burst's included, goes out once)
        self.cadence = cadence
        cap = 1 / cadence if cadence > 0 else float("inf")
        self.rates = {s: min(rng.uniform(min_rate, max_rate), cap) for s in fake.symbols}
        self.burst, self.burst_every = burst, burst_every
        self.running = trio.Event()
        self.running.set()
        self.batch = batch
        self.lags: list[float] = []
        self.waits: list[float] = []
        self.events = 0

    def _schedule(self, now: float) -> list[tuple[float, str]]:
        due = [(now + self.rng.random() / r, s) for s, r in self.rates.items()]
        heapq.heapify(due)
        return due

    async def run(self) -> None:
        now = trio.current_time()
        due, next_burst, tick = self._schedule(now), now + self.burst_every, now
        while True:
            if not self.running.is_set():
                await self.running.wait()
                now = trio.current_time()
                due, next_burst, tick = self._schedule(now), now + self.burst_every, now
            if self.grid > 0:
                tick = max(tick + self.grid, trio.current_time() - self.grid)  # no catching up past one tick
            else:
                tick = min(due[0][0], next_burst)
            await trio.sleep_until(tick)
            if not self.running.is_set():
                continue
            ready = []
            if tick >= next_burst and self.burst > 0:
                picked = self.rng.sample(self.fake.symbols, max(1, len(self.fake.symbols) // 10))
                ready = [s for _ in range(self.burst) for s in picked]
                next_burst += self.burst_every
            while due[0][0] <= tick:
                t, s = heapq.heappop(due)
                ready.append(s)
                heapq.heappush(due, (max(t + 1 / self.rates[s], tick - self.grid), s))
            if not ready:
                continue
            if self.cadence > 0:
                ready = list(dict.fromkeys(ready))
            for i in range(0, len(ready), self.batch):
                await self._send(ready[i:i + self.batch])
            self.events += len(ready)
            self.lags.append(trio.current_time() - tick)

    async def _send(self, symbols: list[str]) -> None:
        """One write per connection for these events (grid > 0); notes how long each
        event's frames waited for it (from the start of the event's encoding)."""
        started = []
        clock = trio.current_time
        if self.grid > 0:
            async with self.fake.corked():
                for s in symbols:
                    started.append(clock())
                    await self.fake.burst(1, (s,))
        else:
            for s in symbols:
                started.append(clock())
                await self.fake.burst(1, (s,))
        done = clock()
        self.waits.extend(done - t for t in started)

    def stats(self) -> dict:
        """Since the last call: events sent, ticks, and the p50/p99/max (seconds) of
        the ticks' lags and of the events' waits for their write."""
        out: dict = {"events": self.events, "ticks": len(self.lags)}
        for name in ("lag", "wait"):
            xs = sorted(getattr(self, name + "s"))
            for q, key in ((0.5, "p50"), (0.99, "p99"), (1.0, "max")):
                out[f"{name}_{key}"] = xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None
        self.lags, self.waits, self.events = [], [], 0
        return out


async def main_async(args: argparse.Namespace) -> None:
    cls = fake_for(args.venue)
    fake = cls(symbols_for(args.venue, args.symbols), seed=args.seed, rate=0, levels=args.levels, depth=max(args.levels, 400))
    grid = default_grid(args.venue) if args.grid is None else args.grid
    cadence = CADENCE.get(args.venue, 0.0) if args.cadence is None else args.cadence
    driver = Driver(fake, random.Random(args.seed), args.min_rate, args.max_rate, args.burst, args.burst_every, grid,
                    args.batch, cadence)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        # REST-snapshot venues at depth 100: the documented weight budget then fetches 100
        # snapshots in seconds (1000-level ones take ~50 s; the fakes' books are shallower anyway)
        extra = {"depth": 100} if args.venue in ("binance_spot", "binance_futures", "asterdex_futures") else {}
        print(json.dumps({"config": fake.config_toml(**extra)}), flush=True)
        nursery.start_soon(driver.run)
        with trio.move_on_after(args.max_seconds):
            stdin = trio.wrap_file(sys.stdin)
            async for line in stdin:
                cmd = line.strip()
                if cmd == "pause":
                    driver.running = trio.Event()
                elif cmd == "resume":
                    driver.running.set()
                elif cmd == "stats":
                    print(json.dumps(driver.stats()), flush=True)
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("venue")
    p.add_argument("--symbols", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--levels", type=int, default=60, help="levels per side of each true book at the start")
    p.add_argument("--min-rate", type=float, default=5.0)
    p.add_argument("--max-rate", type=float, default=20.0)
    p.add_argument("--burst", type=int, default=5, help="events per symbol in a burst (0: none)")
    p.add_argument("--burst-every", type=float, default=2.0)
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--grid", type=float, default=None,
                   help="seconds between ticks (default 0.1 for the Binance family, 0.01 otherwise; 0: per event)")
    p.add_argument("--batch", type=int, default=8, help="most events per write of a tick (default 8)")
    p.add_argument("--cadence", type=float, default=None,
                   help="seconds between two pushes of one symbol (default: the venue's documented cadence, CADENCE; 0: none)")
    p.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority by this much")
    args = p.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    try:
        trio.run(main_async, args)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
