"""A refused symbol's retry subscribes its stream again before its REST snapshot
(OKX with ``rest_snapshot = true``): a book that went live from the snapshot alone
would never change while served as live."""

from __future__ import annotations

import trio

from trio_books import BookState, load_config_text, open_books
from trio_books.testing import FakeOkxSpot
from trio_books.testing.harness import converge, view_top


async def test_a_refused_symbol_of_a_rest_seeded_venue_is_subscribed_again_before_its_snapshot(nursery, pacer, autojump_clock):
    fake = await nursery.start(FakeOkxSpot(["BTC-USDT", "ETH-USDT"], rate=5, levels=30).serve)
    fake.reject_subscribe = True
    text = fake.config_toml(rejected_retry=10.0) + "[venues.okx_spot.options]\nrest_snapshot = true\n"
    async with open_books(load_config_text(text)) as books:
        with trio.fail_after(5):
            await books.wait_state("okx_spot", "ETH-USDT", BookState.REJECTED)
        fake.reject_subscribe = False
        with trio.fail_after(30):
            await books.wait_live("okx_spot")
        subscribed = [r.args for r in fake.requests if r.op == "subscribe"]
        assert len(subscribed) >= 2  # the first (refused) subscription, then the retry's
        await trio.sleep(5)
        for symbol in fake.symbols:
            await converge(view_top(books, "okx_spot", symbol), fake, symbol, timeout=10)
        assert books.statistics()["okx_spot"].attempts == 1
