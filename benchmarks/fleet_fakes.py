"""One venue's fake (``trio_books.testing``) in its own process, for ``benchmarks.fleet``.

    python -m benchmarks.fleet_fakes VENUE_ID --symbols 100 --seed 1

Prints one JSON line once it listens: ``{"config": "<its [venues.ID] table>"}``.
Drives the stream itself (the fake's own ticker is off): every symbol has its
own rate, drawn between ``--min-rate`` and ``--max-rate`` events/s, and every
``--burst-every`` seconds a tenth of the symbols send ``--burst`` events at once.
Reads commands on stdin, one per line: ``pause`` (only heartbeats from then
on), ``resume``; stops when stdin closes or after ``--max-seconds``. Listens on
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import heapq
import json
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


class Driver:
    """Paces the events of every symbol (one heap of due times, one task)."""

    def __init__(self, fake, rng: random.Random, min_rate: float, max_rate: float, burst: int, burst_every: float) -> None:
        self.fake, self.rng = fake, rng
        self.rates = {s: rng.uniform(min_rate, max_rate) for s in fake.symbols}
        self.burst, self.burst_every = burst, burst_every
        self.running = trio.Event()
        self.running.set()

    async def run(self) -> None:
        now = trio.current_time()
        due = [(now + self.rng.random() / r, s) for s, r in self.rates.items()]
        heapq.heapify(due)
        next_burst = now + self.burst_every
        while True:
            if not self.running.is_set():
                await self.running.wait()
                now = trio.current_time()
                due = [(now + self.rng.random() / self.rates[s], s) for _, s in due]
                heapq.heapify(due)
                next_burst = now + self.burst_every
            t, s = due[0]
            await trio.sleep_until(min(t, next_burst))
            now = trio.current_time()
            if not self.running.is_set():
                continue
            if now >= next_burst and self.burst > 0:
                picked = self.rng.sample(self.fake.symbols, max(1, len(self.fake.symbols) // 10))
                await self.fake.burst(self.burst, picked)
                next_burst = now + self.burst_every
            ready = []
            while due and due[0][0] <= now:
                t, s = heapq.heappop(due)
                ready.append(s)
                heapq.heappush(due, (max(t + 1 / self.rates[s], now), s))
            if ready:
                await self.fake.burst(1, ready)


async def main_async(args: argparse.Namespace) -> None:
    cls = fake_for(args.venue)
    fake = cls(symbols_for(args.venue, args.symbols), seed=args.seed, rate=0, levels=args.levels, depth=max(args.levels, 400))
    driver = Driver(fake, random.Random(args.seed), args.min_rate, args.max_rate, args.burst, args.burst_every)
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
    args = p.parse_args(argv)
    try:
        trio.run(main_async, args)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
