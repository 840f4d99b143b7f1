"""Consolidated depth: one instrument across venues, merged level by level.

An instrument is ``BASE-QUOTE`` where ``QUOTE`` may be ``USD`` meaning any
USD-like quote (USD, USDT, USDC, FDUSD). Each venue symbol is read in that
venue's notation (``BTCUSDT``, ``BTC-USDT``, ``BTC/USD``). Only live books take
part; each merged level names its venue. Prices are compared exactly (Decimal)
and served as the venues' own strings. Market types stay apart: spot books by
default, perpetual futures only when asked for (``markets``), since a perpetual
trades at a basis to spot.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, Final

from .analytics import Ladder, Lvl, cost, mid_price
from .model import BookState
from .store import BookEntry, BookStore
from .venues import get_venue

USD_LIKE: Final = ("USDT", "USDC", "FDUSD", "USD")
QUOTES: Final = ("USDT", "USDC", "FDUSD", "USD", "EUR", "BTC", "ETH", "BNB")
ALIASES: Final = {"XBT": "BTC"}


def split_symbol(symbol: str) -> tuple[str, str] | None:
    """``BTCUSDT``/``BTC-USDT``/``BTC/USD`` → ``("BTC", "USDT")``."""
    s = symbol.upper()
    for sep in ("-", "/", "_"):
        if sep in s:
            base, _, quote = s.partition(sep)
            return ALIASES.get(base, base), quote
    for quote in QUOTES:
        if s.endswith(quote) and len(s) > len(quote):
            base = s[: -len(quote)]
            return ALIASES.get(base, base), quote
    return None


def matches(instrument: str, symbol: str) -> bool:
    want = split_symbol(instrument)
    got = split_symbol(symbol)
    if want is None or got is None or want[0] != got[0]:
        return False
    if want[1] == "USD":
        return got[1] in USD_LIKE
    return want[1] == got[1]


MARKETS: Final = ("spot", "perp")


def _select(store: BookStore, instrument: str, venues: set[str] | None, markets: frozenset[str]) -> tuple[list[BookEntry], list[dict]]:
    """The live books of ``instrument`` on ``venues`` of ``markets``, and the ones left out (not live)."""
    used, left_out = [], []
    for e in store.entries():
        if venues is not None and e.venue not in venues:
            continue
        if get_venue(e.venue).market not in markets:
            continue
        if not matches(instrument, e.symbol):
            continue
        if e.state is not BookState.LIVE or e.book is None:
            left_out.append({"venue": e.venue, "symbol": e.symbol, "state": e.state.value})
            continue
        used.append(e)
    return used, left_out


def consolidated(store: BookStore, instrument: str, depth: int = 20, venues: set[str] | None = None,
                 markets: frozenset[str] = frozenset({"spot"})) -> dict[str, Any]:
    """Merge the live books of every venue of ``markets`` listing ``instrument``."""
    bids: list[tuple[Decimal, str, str, str]] = []
    asks: list[tuple[Decimal, str, str, str]] = []
    entries, left_out = _select(store, instrument, venues, markets)
    for e in entries:
        assert e.book is not None
        bids.extend((Decimal(p), p, q, e.venue) for p, q in e.book.top_bids(depth))
        asks.extend((Decimal(p), p, q, e.venue) for p, q in e.book.top_asks(depth))
    bids.sort(key=lambda x: -x[0])
    asks.sort(key=lambda x: x[0])
    return {
        "instrument": instrument.upper(),
        "markets": sorted(markets),
        "venues": [{"venue": e.venue, "symbol": e.symbol} for e in entries],
        "left_out": left_out,
        "bids": [[p, q, v] for _, p, q, v in bids[:depth]],
        "asks": [[p, q, v] for _, p, q, v in asks[:depth]],
    }


def merge(books: dict[str, tuple[Sequence[Lvl], Sequence[Lvl]]]) -> tuple[Iterator[Lvl], Iterator[Lvl]]:
    """Every source's levels on one price ladder, best first (at one price, by source name);
    lazy, so a walk converts and compares only the levels it reaches."""
    bids = heapq.merge(*(b for b, _ in books.values()), key=lambda x: (-x.price, x.source))
    asks = heapq.merge(*(a for _, a in books.values()), key=lambda x: (x.price, x.source))
    return bids, asks


def consolidated_cost(store: BookStore, instrument: str, side: str, *, base: Decimal | None = None,
                      quote: Decimal | None = None, venues: set[str] | None = None,
                      markets: frozenset[str] = frozenset({"spot"})) -> dict[str, Any]:
    """The cost of a ``side`` of ``base`` (or for ``quote``) units of ``instrument``
    over the merged live books, naming each venue's share (``fills``). Each book
    takes part with every level it provably holds; a venue's book that ends
    earlier than another's may hold better levels past its end than the merge
    knows of, so the split is the best over the known levels."""
    entries, left_out = _select(store, instrument, venues, markets)
    books: dict[str, tuple[Sequence[Lvl], Sequence[Lvl]]] = {}
    for e in entries:
        assert e.book is not None
        books[e.venue] = (Ladder(e.book.top_bids(), e.venue), Ladder(e.book.top_asks(), e.venue))
    bid = max((b[0] for b, _ in books.values() if b), key=lambda x: x.price, default=None)
    ask = min((a[0] for _, a in books.values() if a), key=lambda x: x.price, default=None)
    mid = mid_price([bid], [ask]) if bid is not None and ask is not None else None
    bids, asks = merge(books)
    out: dict[str, Any] = {
        "instrument": instrument.upper(),
        "markets": sorted(markets),
        "venues": [{"venue": e.venue, "symbol": e.symbol, "seq": e.seq, "update_id": e.update_id} for e in entries],
        "left_out": left_out,
        "crossed": bid is not None and ask is not None and bid.price > ask.price,
    }
    out.update(cost(side, asks if side == "buy" else bids, mid, base=base, quote=quote))
    symbols = {e.venue: e.symbol for e in entries}
    if "fills" in out:
        out["fills"] = [{"venue": f["source"], "symbol": symbols[f["source"]], **{k: v for k, v in f.items() if k != "source"}}
                        for f in out["fills"]]
    return out
