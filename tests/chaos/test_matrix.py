"""The chaos matrix: every venue × every fault that applies to it.

Each cell starts the venue's fake, waits for live books, injects one fault and
asserts that (1) the counter for the expected reason moved (a connection
failure, or a fault of one book) — nothing is lost silently, (2) every book returns to the fake's truth, and (3) no task of a
finished attempt is left behind. Time-driven cells (silence) run under MockClock.
"""

from __future__ import annotations

from collections import Counter

import pytest
import trio

from trio_books import load_config_text, open_books
from trio_books.demo import DEMO_SYMBOLS
from trio_books.testing import fake_for
from trio_books.testing.harness import converge, view_top
from trio_books.venues import available, get_venue

VENUES = available()
REST_VENUES = {"binance_spot", "binance_futures", "asterdex_futures"}
CHECKSUM_VENUES = {"okx_spot", "kraken_spot"}
SNAPSHOT_ONLY = {"bingx_spot"}  # every push is a full book: a skipped push is not a gap
REST_SEQUENCED = REST_VENUES  # update ids against a REST snapshot: a replayed event is already applied
# absolute quantities and no sequence number (Kraken v2: the CRC32 still matches after a repeat;
# BingX: the same full book again): a repeated frame changes nothing, and nothing can tell it apart
IDEMPOTENT_REPEAT = {"kraken_spot", "bingx_spot"}

FAULTS = ["drop", "shutdown", "gap", "malformed", "unexpected", "reject", "refuse", "duplicate", "rest429", "rest500", "checksum"]


def applies(vid: str, fault: str) -> bool:
    if fault in ("rest429", "rest500"):
        return vid in REST_VENUES
    if fault == "checksum":
        return vid in CHECKSUM_VENUES
    return True


def expected(vid: str, fault: str) -> set[str] | None:
    """The counters (failures, book resyncs, ignored events) one of which must move."""
    if fault == "gap":
        if vid in SNAPSHOT_ONLY:
            return None
        return {"gap", "checksum"}
    if fault == "duplicate":
        if vid in IDEMPOTENT_REPEAT:
            return None
        return {"already_applied"} if vid in REST_SEQUENCED else {"gap"}
    return {
        "drop": {"close"},
        "shutdown": {"close"},
        "malformed": {"bad_frame"},
        "reject": {"rejected"},
        "refuse": {"close", "rejected"},
        "unexpected": {"unknown"},  # a well-formed frame of a kind the feed does not know: dropped, counted
        "rest429": {"rest_errors"},  # the venue's limiter waits out Retry-After; the connection goes on
        "rest500": {"rest_errors"},  # retried within the attempt
        "checksum": {"checksum"},
    }[fault]


CELLS = [(v, f) for v in VENUES for f in FAULTS if applies(v, f)]


def count_tasks() -> int:
    def walk(task) -> int:
        return 1 + sum(walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    return walk(trio.lowlevel.current_root_task())


def fast_config(fake, vid: str) -> str:
    venue = get_venue(vid)
    depth = venue.default_depth if venue.depths is None else max(d for d in venue.depths if d <= 1000)
    return fake.config_toml(depth=depth, backoff_base=0.05, backoff_cap=0.2, snapshot_timeout=2, rejected_retry=0.5)


async def wait_for(predicate, timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def all_converge(books, fake, vid, timeout=15.0) -> None:
    for symbol in fake.symbols:
        await converge(view_top(books, vid, symbol, 10), fake, symbol, n=10, timeout=timeout)


async def inject(fake, fault: str) -> None:
    if fault == "drop":
        await fake.drop()
    elif fault == "shutdown":
        await fake.drop(code=1001, reason="scheduled disconnect")
    elif fault == "gap":
        fake.skip_next_update(fake.symbols[0])
    elif fault == "malformed":
        fake.send_malformed()
    elif fault == "duplicate":
        fake.duplicate_next()
    elif fault == "unexpected":
        await fake.send_unexpected()
    elif fault == "checksum":
        fake.corrupt_checksum_next(fake.symbols[0])
    elif fault == "reject":
        fake.reject_subscribe = True
        await fake.drop()
    elif fault == "refuse":
        fake.refuse_connections = True
        await fake.drop()
    elif fault == "rest429":
        fake.rest_fail(429, count=1, retry_after=0.5)
        await fake.drop()
    elif fault == "rest500":
        fake.rest_fail(500, count=4)
        await fake.drop()


@pytest.mark.parametrize("vid,fault", CELLS, ids=[f"{v}-{f}" for v, f in CELLS])
async def test_cell(vid, fault, nursery):
    fake = await nursery.start(fake_for(vid)(DEMO_SYMBOLS.get(vid, ["BTCUSDT"]), rate=40).serve)
    async with open_books(load_config_text(fast_config(fake, vid))) as books:
        with trio.fail_after(15):
            await books.wait_live(vid)
        await all_converge(books, fake, vid)
        baseline_tasks = count_tasks()
        first = books.statistics()[vid]
        before = Counter(first.failures) + Counter(first.book_resyncs) + Counter(first.ignored)
        await inject(fake, fault)
        want = expected(vid, fault)

        rest_before = books.statistics()[vid].rest_errors

        def moved() -> bool:
            stats = books.statistics()[vid]
            if fault == "rest500":  # retried within the attempt: counted as REST errors
                return stats.rest_errors >= rest_before + 3
            if fault == "rest429":
                return stats.rest_errors > rest_before
            now = Counter(stats.failures) + Counter(stats.book_resyncs) + Counter(stats.ignored)
            return any(now.get(r, 0) > before.get(r, 0) for r in want)

        if want is not None:
            await wait_for(moved, 15, f"a failure counted as {sorted(want)}")
        elif fault == "duplicate":
            await wait_for(lambda: "duplicate" not in fake.pending_faults(), 15, "the repeated frame sent")
        if fault in ("reject", "refuse"):
            fake.reject_subscribe = False
            fake.refuse_connections = False
        with trio.fail_after(20):
            await books.wait_live(vid)
        await all_converge(books, fake, vid)
        # the finished attempt left nothing behind
        await wait_for(lambda: count_tasks() <= baseline_tasks, 5, f"task count back to {baseline_tasks} (now {count_tasks()})")
        if want is not None:
            assert books.statistics()[vid].state in ("live", "syncing")


@pytest.mark.parametrize("vid", VENUES)
async def test_silence_past_the_heartbeat_deadline(vid, nursery, pacer, autojump_clock):
    fake = await nursery.start(fake_for(vid)(DEMO_SYMBOLS.get(vid, ["BTCUSDT"]), rate=20).serve)
    async with open_books(load_config_text(fast_config(fake, vid))) as books:
        with trio.fail_after(60):
            await books.wait_live(vid)
        fake.silence()
        silenced = trio.current_time()
        with trio.fail_after(300):
            while books.statistics()[vid].failures.get("heartbeat", 0) == 0:
                await trio.sleep(0.5)
        waited = trio.current_time() - silenced
        hb = get_venue(vid).heartbeat
        bound = max(filter(None, [hb.watchdog, (hb.ping_interval or 0) + hb.pong_timeout])) + 2
        assert waited <= bound, f"{vid}: silence noticed after {waited:.1f} s (bound {bound:.1f} s)"
        with trio.fail_after(120):
            await books.wait_live(vid)
        await all_converge(books, fake, vid, timeout=60)
