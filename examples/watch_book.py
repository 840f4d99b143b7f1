"""Embed trio-books in a Trio program, against the shipped fake Binance venue.

    python examples/watch_book.py            # prints 5 changes of the top of book, then exits

Point `config` at real venues (trio_books.load_config("config.toml")) to use it for real.
"""

from __future__ import annotations

import trio

import trio_books
from trio_books.testing import FakeBinanceSpot


async def main(updates: int = 5) -> None:
    async with trio.open_nursery() as nursery:
        fake = await nursery.start(FakeBinanceSpot(["BTCUSDT"], rate=20).serve)
        fake.trend["BTCUSDT"] = 1  # a rising market: the top of the book moves with every update
        config = trio_books.load_config_text(fake.config_toml(depth=100))
        async with trio_books.open_books(config) as books:
            await books.wait_live("binance_spot", "BTCUSDT")
            seen, last = 0, None
            async for view in books.updates("binance_spot", "BTCUSDT", depth=1):
                if view.state is not trio_books.BookState.LIVE or not view.bids or not view.asks:
                    continue
                top = (view.bids[0], view.asks[0])
                if top == last:
                    continue  # a change deeper in the book
                last = top
                (bid, bid_qty), (ask, ask_qty) = top
                print(f"seq {view.seq}: best bid {bid} x {bid_qty}  best ask {ask} x {ask_qty}")
                seen += 1
                if seen >= updates:
                    break
            stats = books.statistics()["binance_spot"]
            print(f"frames received: {stats.frames}, reconnects: {stats.reconnects}")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
