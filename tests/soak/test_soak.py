"""Soak: every venue's fake at high rates with random faults for about two
minutes (``SOAK_SECONDS``). Afterwards every book equals truth, memory is flat
and the counters add up. Run with ``python -m pytest -m soak tests/soak -s``."""

from __future__ import annotations

import os
import random
import tracemalloc

import pytest
import trio

from tests.chaos.test_matrix import CHECKSUM_VENUES, all_converge, fast_config
from trio_books import load_config_text, open_books
from trio_books.demo import DEMO_SYMBOLS
from trio_books.testing import fake_for
from trio_books.venues import available

pytestmark = pytest.mark.soak
SECONDS = float(os.environ.get("SOAK_SECONDS", "100"))
# Knobs to narrow a reproduction down: comma-separated venue ids / fault names, and the seed.
VENUES = [v for v in os.environ.get("SOAK_VENUES", "").split(",") if v]
FAULTS = [f for f in os.environ.get("SOAK_FAULTS", "").split(",") if f]
SEED = int(os.environ.get("SOAK_SEED", "2026"))


async def test_soak_all_venues_with_random_faults(nursery):
    rng = random.Random(SEED)
    fakes = {}
    tables = ['[service]\nchannel_capacity = 5000\n']
    for vid in VENUES or available():
        fake = await nursery.start(fake_for(vid)(DEMO_SYMBOLS.get(vid, ["BTCUSDT"]), rate=100, seed=rng.randrange(1000)).serve)
        fakes[vid] = fake
        tables.append(fast_config(fake, vid))
    tracemalloc.start()
    faults = 0
    injected: list[tuple[float, str, str, str]] = []  # (trio time, venue, fault, symbol) for the failure message
    async with open_books(load_config_text("\n".join(tables))) as books:
        with trio.fail_after(30):
            for vid in fakes:
                await books.wait_live(vid)
        await trio.sleep(min(20.0, SECONDS / 5))
        warm, _ = tracemalloc.get_traced_memory()
        end = trio.current_time() + SECONDS
        while trio.current_time() < end:
            await trio.sleep(rng.uniform(0.5, 2.0))
            vid = rng.choice(list(fakes))
            fake = fakes[vid]
            fault = rng.choice(FAULTS or ["drop", "gap", "malformed", "duplicate"] + (["checksum"] if vid in CHECKSUM_VENUES else []))
            faults += 1
            symbol = rng.choice(fake.symbols) if fault in ("gap", "checksum") else ""
            injected.append((trio.current_time(), vid, fault, symbol))
            if fault == "drop":
                await fake.drop()
            elif fault == "gap":
                fake.skip_next_update(symbol)
            elif fault == "malformed":
                fake.send_malformed()
            elif fault == "duplicate":
                fake.duplicate_next()
            else:
                fake.corrupt_checksum_next(symbol)
        with trio.fail_after(60):  # the last faults take effect (converging pauses a stream, which would hold them back)
            while any(fake.pending_faults() for fake in fakes.values()):
                await trio.sleep(0.05)
            for vid in fakes:
                await books.wait_live(vid)
        for vid, fake in fakes.items():
            try:
                await all_converge(books, fake, vid, timeout=30)
            except AssertionError as exc:
                last = "\n".join(f"  t={t:.3f} {v} {f} {s}" for t, v, f, s in injected[-5:])
                raise AssertionError(f"{exc}\nlast faults injected (loop ended at t={trio.current_time():.3f}):\n{last}") from None
        after, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        stats = books.statistics()
        frames = sum(s.frames for s in stats.values())
        ended = sum(sum(s.failures.values()) for s in stats.values())
        alone = sum(sum(s.book_resyncs.values()) for s in stats.values())
        print(f"\nsoak: {SECONDS:.0f} s, {len(fakes)} venues, {faults} faults injected, {frames} frames, "
              f"{ended} attempts ended, {alone} books resynced alone; traced memory after warm-up {warm / 1e6:.1f} MB -> {after / 1e6:.1f} MB (peak {peak / 1e6:.1f} MB)")
        for vid, s in stats.items():
            # every attempt but the ones open now ended with a counted reason
            assert s.attempts - s.connections == sum(s.failures.values()), (vid, s)
            assert s.state == "live", (vid, s.books, s.book_errors, s.last_error)
        assert after - warm < 30e6, "memory grew by more than 30 MB during the soak"
