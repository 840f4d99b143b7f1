"""A deployment's shape: every venue at once with a few hundred books, one bad
book and one symbol the venue refuses on each. Every other book stays live at
every scheduling point (one instrument per venue), the bad books come back
alone and equal to their fake's truth, the refused ones are reported, and no
connection restarts."""

from __future__ import annotations

import trio

from trio_books import load_config_text, open_books
from trio_books.model import BookState
from trio_books.testing import fake_for
from trio_books.testing.harness import LiveWatch, converge, view_top
from trio_books.venues import available, get_venue

PER_VENUE = 30
NOTATION = {
    "okx_spot": "{}-USDT", "bingx_spot": "{}-USDT", "coinbase_spot": "{}-USD", "kraken_spot": "{}/USD",
}


def symbols_of(vid: str) -> list[str]:
    form = NOTATION.get(vid, "{}USDT")
    return [form.format(f"S{i:02d}") for i in range(PER_VENUE)]


def depth_of(vid: str) -> int:
    venue = get_venue(vid)
    if venue.depths is not None:
        return min((d for d in venue.depths if d >= 20), default=venue.depths[-1])
    return 100


def break_one(fake, symbol: str) -> None:
    if hasattr(fake, "cross_next"):  # full-snapshot and sequence-less feeds: a crossed book
        fake.cross_next(symbol)
    else:
        fake.skip_next_update(symbol)


async def test_hundreds_of_books_one_bad_book_and_one_refused_symbol_per_venue(nursery, autojump_clock, pacer):
    venues = available()
    fakes = {}
    text = ""
    for vid in venues:
        symbols = symbols_of(vid)
        fakes[vid] = fake = await nursery.start(fake_for(vid)(symbols, rate=1, levels=20).serve)
        refused = NOTATION.get(vid, "{}USDT").format("ZZZ")
        text += fake.config_toml(depth=depth_of(vid)).replace('symbols = [', f'symbols = ["{refused}", ', 1)
        text += "rejected_retry = 600\n"
    async with open_books(load_config_text(text)) as books:
        for vid, fake in fakes.items():
            with trio.fail_after(120):
                for s in fake.symbols:
                    await books.wait_live(vid, s)
        sick = {vid: fake.symbols[7] for vid, fake in fakes.items()}
        watches = [LiveWatch(books.store, vid, [s for s in fake.symbols if s != sick[vid]],
                             served_ok=lambda e: not e.book.is_crossed()) for vid, fake in fakes.items()]
        for w in watches:
            w.__enter__()
        try:
            for vid, fake in fakes.items():
                break_one(fake, sick[vid])
            with trio.fail_after(120):
                for vid in fakes:
                    entry = books.store.entry(vid, sick[vid])
                    while not entry.resyncs:
                        await trio.sleep(0.05)
                    await books.wait_state(vid, sick[vid], BookState.LIVE)
            for vid, fake in fakes.items():
                for s in (sick[vid], fake.symbols[0]):
                    await converge(view_top(books, vid, s, 10), fake, s, n=10, timeout=30)
        finally:
            for w in watches:
                w.__exit__(None, None, None)
        for w in watches:
            assert w.steps > 1000
            assert w.not_live == [], (w.venue, w.not_live[:3])
            assert w.bad_served == [], (w.venue, w.bad_served[:3])
        for vid in fakes:
            stats = books.statistics()[vid]
            refused = NOTATION.get(vid, "{}USDT").format("ZZZ")
            assert stats.failures == {} and stats.reconnects == 0, (vid, stats.failures, stats.last_error)
            assert stats.books[refused] == "rejected" and refused in stats.book_errors, (vid, stats.book_errors)
            assert sum(n for r, n in stats.book_resyncs.items() if r != "rejected") == 1, (vid, stats.book_resyncs)
            raw = books.store.venues[vid]
            assert raw.channel_high_water < raw.channel_capacity // 10
