"""Hot standby (``redundancy = 2``): two connections keep the same books; a
fault on either never makes a book non-live while the other is healthy, and
two live books at the same update id that disagree are both rebuilt."""

from __future__ import annotations

import itertools

import attrs
import pytest
import trio

from trio_books import load_config_text
from trio_books.model import Delta
from trio_books.runner import Books, build_store
from trio_books.supervise import supervise_venue
from trio_books.testing import fake_for
from trio_books.testing.harness import LiveWatch, recover
from trio_books.venues import get_venue

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


async def start(nursery, vid: str, venue=None):
    fake = await nursery.start(fake_for(vid)(SYMBOLS, rate=20, levels=40).serve)
    cfg = load_config_text(fake.config_toml(depth=50 if vid.startswith("bybit") else 100, redundancy=2,
                                            backoff_base=0.1, backoff_cap=0.2))
    store = build_store(cfg)
    nursery.start_soon(supervise_venue, venue or get_venue(vid), cfg.venues[vid], cfg.service, store)
    books = Books(store)
    with trio.fail_after(30):
        await books.wait_live(vid)
        await both_live(books, vid)
    return fake, books


async def both_live(books, vid: str) -> None:
    """Until both connections have every book live (the keepers behind the served books)."""
    while True:
        group = books.store.entry(vid, SYMBOLS[0]).owner.group
        if len(group) == 2 and all(k.syncs[s].live for k in group for s in SYMBOLS):
            return
        await trio.sleep(0.05)


@pytest.mark.parametrize("vid", ["binance_spot", "bybit_futures"])
async def test_killing_either_connection_leaves_every_book_live(vid, nursery, autojump_clock, pacer):
    fake, books = await start(nursery, vid)
    with LiveWatch(books.store, vid, SYMBOLS) as watch:
        for _ in range(2):  # one connection, then (after it is back) the other
            first = fake.clients[0]
            await first.ws.aclose(code=1011, reason="fake: one connection dropped")
            with trio.fail_after(30):
                while first in fake.clients:
                    await trio.sleep(0.05)
                await both_live(books, vid)  # the dropped connection is back, with every book
        await recover(books, fake, vid)
    assert watch.steps > 100 and watch.not_live == []
    stats = books.statistics()[vid]
    assert stats.failures == {"close": 2} and stats.attempts == 4


async def test_two_connections_that_disagree_are_both_rebuilt(nursery, autojump_clock, pacer):
    """One connection's parser alters one quantity once: at the next update id both
    connections reach, the books differ; both are rebuilt, the others stay live."""
    base = get_venue("binance_spot")
    numbers = itertools.count()
    altered = {"done": False}

    def connect(spec):
        proto = base.connect(spec)
        if next(numbers) == 0:
            parse = proto.parse

            def altering(raw):
                items = parse(raw)
                if altered.get("armed") and not altered["done"]:
                    for i, item in enumerate(items):
                        if type(item) is Delta and item.symbol == "ETHUSDT" and item.bids:
                            (price, _), *rest = item.bids
                            items = list(items)
                            items[i] = item._replace(bids=[(price, "77.777"), *rest])
                            altered["done"] = True
                            break
                return items

            proto.parse = altering
        return proto

    fake, books = await start(nursery, "binance_spot", attrs.evolve(base, connect=connect))
    entry = books.store.entry("binance_spot", "ETHUSDT")
    copies = {id(k.syncs["ETHUSDT"].book) for k in entry.owner.group}  # the two books that will disagree

    def not_a_disagreeing_copy(e) -> bool:  # once the disagreement is counted, neither copy is served, not for one step
        return e.symbol != "ETHUSDT" or not e.resyncs.get("disagree") or id(e.book) not in copies

    with LiveWatch(books.store, "binance_spot", ["BTCUSDT", "SOLUSDT"], served_ok=not_a_disagreeing_copy) as watch:
        altered["armed"] = True
        stats = books.store.venues["binance_spot"]
        with trio.fail_after(30):
            while stats.book_resyncs.get("disagree", 0) < 2:
                await trio.sleep(0.05)
        await recover(books, fake, "binance_spot")
    assert altered["done"] and watch.not_live == [] and watch.bad_served == []
    assert entry.resyncs == {"disagree": 2} and stats.failures == {}
