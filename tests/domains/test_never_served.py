"""Nothing wrong is served, not even for one read: a Trio instrument checks the
store after every scheduling step (no sleeps, no sampling).

* A book that fails a check (here: crossed) is not live in the very step the
  check failed, so no reader sees the corrupted book; its neighbours stay live.
* When a connection fault ends an attempt (here: a frame that cannot be
  parsed), every book of the connection is not live from the step the read
  task raised — before the close handshake, before any reader can run.
"""

from __future__ import annotations

import attrs
import pytest
import trio

from trio_books import load_config_text
from trio_books.model import Delta
from trio_books.runner import Books, build_store
from trio_books.supervise import supervise_venue
from trio_books.testing import fake_for
from trio_books.testing.harness import LiveWatch, resyncs_alone
from trio_books.venues import available, get_venue

SYMBOLS = {
    "okx_spot": ["BTC-USDT", "ETH-USDT", "SOL-USDT"],
    "coinbase_spot": ["BTC-USD", "ETH-USD", "SOL-USD"],
    "kraken_spot": ["BTC/USD", "ETH/USD", "SOL/USD"],
    "bingx_spot": ["BTC-USDT", "ETH-USDT", "SOL-USDT"],
}
VENUES = available()


def symbols_of(vid: str) -> list[str]:
    return SYMBOLS.get(vid, ["BTCUSDT", "ETHUSDT", "SOLUSDT"])


def config_of(fake, vid: str):
    venue = get_venue(vid)
    depth = venue.default_depth if venue.depths is None else max(d for d in venue.depths if d <= 1000)
    return load_config_text(fake.config_toml(depth=depth, backoff_base=0.1, backoff_cap=0.2))


def with_parse(vid: str, wrap):
    """The venue with every connection's parser wrapped by ``wrap(proto, parse)``."""
    venue = get_venue(vid)

    def connect(spec):
        proto = venue.connect(spec)
        proto.parse = wrap(proto, proto.parse)
        return proto

    return attrs.evolve(venue, connect=connect)


async def run_venue(nursery, venue, cfg):
    store = build_store(cfg)
    nursery.start_soon(supervise_venue, venue, cfg.venues[venue.id], cfg.service, store)
    books = Books(store)
    with trio.fail_after(60):
        await books.wait_live(venue.id)
    return books


@pytest.mark.parametrize("vid", [v for v in VENUES if v != "bingx_spot"])
async def test_a_book_that_crossed_is_never_served(vid, nursery, autojump_clock, pacer):
    """One delta of one book is made to cross (its best bid jumps above every
    ask); that book is never live while crossed, the other two never leave live."""
    symbols = symbols_of(vid)
    sick = symbols[1]
    armed = {"on": False, "done": False}

    def wrap(proto, parse):
        def crossing(raw):
            items = parse(raw)
            if armed["on"] and not armed["done"]:
                for i, item in enumerate(items):
                    if type(item) is Delta and item.symbol == sick and item.bids:
                        items = list(items)
                        items[i] = item._replace(bids=[("99999999", "1")], checksum=None)
                        armed["done"] = True
                        break
            return items

        return crossing

    fake = await nursery.start(fake_for(vid)(symbols, rate=20, levels=40).serve)
    cfg = config_of(fake, vid)
    async with trio.open_nursery() as inner:
        books = await run_venue(inner, with_parse(vid, wrap), cfg)
        entry = books.store.entry(vid, sick)
        watch, _ = await resyncs_alone(books, fake, vid, sick, lambda: armed.update(on=True))
        inner.cancel_scope.cancel()
    assert armed["done"] and dict(entry.resyncs) == {"crossed": 1}
    assert watch.bad_served == [] and watch.not_live == []
    assert books.statistics()[vid].attempts == 1


@pytest.mark.parametrize("vid", VENUES)
async def test_books_of_a_failing_connection_are_not_live_from_the_failing_step(vid, nursery, autojump_clock, pacer):
    """The parser fails on one frame (a connection fault). From the step it
    raised until a new attempt starts, no book of the connection is live."""
    symbols = symbols_of(vid)
    seen = {"armed": False, "attempt": None}
    stats_box = {}

    def wrap(proto, parse):
        def failing(raw):
            if seen["armed"] and seen["attempt"] is None:
                seen["attempt"] = stats_box["stats"].attempts
                raise ValueError("injected: cannot parse this frame")
            return parse(raw)

        return failing

    fake = await nursery.start(fake_for(vid)(symbols, rate=20, levels=40).serve)
    cfg = config_of(fake, vid)
    async with trio.open_nursery() as inner:
        books = await run_venue(inner, with_parse(vid, wrap), cfg)
        stats_box["stats"] = books.store.venues[vid]

        def not_from_the_dying_attempt(e) -> bool:
            return seen["attempt"] is None or stats_box["stats"].attempts != seen["attempt"]

        with LiveWatch(books.store, vid, (), served_ok=not_from_the_dying_attempt) as watch:
            seen["armed"] = True
            with trio.fail_after(60):
                while stats_box["stats"].failures.get("bad_frame", 0) == 0:
                    await trio.sleep(0.01)
                await books.wait_live(vid)
        inner.cancel_scope.cancel()
    assert seen["attempt"] == 1
    assert watch.bad_served == [], watch.bad_served[:5]
    assert watch.steps > 20
