"""What escalates from the book domain to the connection: a book that keeps
failing (``book_resync_limit`` within ``book_resync_window``), and a per-book
resync the venue never answers (the book's own ``sync_timeout``)."""

from __future__ import annotations

import attrs
import trio

from trio_books import load_config_text
from trio_books.model import BookState
from trio_books.runner import Books, build_store
from trio_books.supervise import supervise_venue
from trio_books.testing import fake_for
from trio_books.testing.harness import LiveWatch, recover
from trio_books.venues import get_venue

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


async def test_a_book_that_keeps_failing_restarts_its_connection(nursery, autojump_clock, pacer):
    fake = await nursery.start(fake_for("bybit_futures")(SYMBOLS, rate=20, levels=40).serve)
    cfg = load_config_text(fake.config_toml(depth=50, book_resync_limit=2, book_resync_window=120, backoff_base=0.1, backoff_cap=0.2))
    store = build_store(cfg)
    books = Books(store)
    async with trio.open_nursery() as inner:
        inner.start_soon(supervise_venue, get_venue("bybit_futures"), cfg.venues["bybit_futures"], cfg.service, store)
        with trio.fail_after(60):
            await books.wait_live("bybit_futures")
        entry = store.entry("bybit_futures", "ETHUSDT")
        for n in (1, 2):  # within the limit: that book alone, the connection goes on
            fake.skip_next_update("ETHUSDT")
            with trio.fail_after(60):
                while entry.resyncs["gap"] < n:
                    await trio.sleep(0.01)
                await books.wait_state("bybit_futures", "ETHUSDT", BookState.LIVE)
        assert store.venues["bybit_futures"].attempts == 1
        fake.skip_next_update("ETHUSDT")  # the third within the window: a systematic fault
        with trio.fail_after(60):
            while store.venues["bybit_futures"].failures.get("resync_limit", 0) == 0:
                await trio.sleep(0.01)
        assert "ETHUSDT: 3 resyncs within 120 s" in books.statistics()["bybit_futures"].last_error
        await recover(books, fake, "bybit_futures")
        assert books.statistics()["bybit_futures"].attempts == 2
        inner.cancel_scope.cancel()


async def test_a_resync_the_venue_never_answers_restarts_the_connection(nursery, autojump_clock, pacer):
    """The resubscription of one book goes out and nothing comes back: after that
    book's own ``sync_timeout`` the connection restarts (the others stayed live
    until then)."""
    base = get_venue("bybit_spot")

    def connect(spec):
        proto = base.connect(spec)
        proto.resubscribe = lambda symbol, unsubscribe=True: []  # "sent", but the venue never answers
        return proto

    venue = attrs.evolve(base, connect=connect)
    fake = await nursery.start(fake_for("bybit_spot")(SYMBOLS, rate=20, levels=40).serve)
    cfg = load_config_text(fake.config_toml(depth=50, sync_timeout=20, backoff_base=0.1, backoff_cap=0.2))
    store = build_store(cfg)
    books = Books(store)
    async with trio.open_nursery() as inner:
        inner.start_soon(supervise_venue, venue, cfg.venues["bybit_spot"], cfg.service, store)
        with trio.fail_after(60):
            await books.wait_live("bybit_spot")
        with LiveWatch(store, "bybit_spot", ["BTCUSDT", "SOLUSDT"]) as watch:
            fake.skip_next_update("ETHUSDT")
            with trio.fail_after(60):
                while not store.entry("bybit_spot", "ETHUSDT").resyncs:
                    await trio.sleep(0.01)
            failed_at = trio.current_time()
            with trio.fail_after(60):
                while store.venues["bybit_spot"].failures.get("sync_timeout", 0) == 0:
                    await trio.sleep(0.01)
            waited = trio.current_time() - failed_at
            first_not_live = min((t for t, _, _ in watch.not_live), default=None)
        assert 19.9 <= waited <= 21, waited
        assert first_not_live is not None and first_not_live - failed_at >= 19.9  # the neighbours were live until then
        assert "ETHUSDT" in books.statistics()["bybit_spot"].last_error
        await recover(books, fake, "bybit_spot")
        inner.cancel_scope.cancel()
