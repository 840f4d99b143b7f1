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

from decimal import Decimal
from typing import Any, Final

from .model import BookState
from .store import BookStore
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


def consolidated(store: BookStore, instrument: str, depth: int = 20, venues: set[str] | None = None,
                 markets: frozenset[str] = frozenset({"spot"})) -> dict[str, Any]:
    """Merge the live books of every venue of ``markets`` listing ``instrument``."""
    bids: list[tuple[Decimal, str, str, str]] = []
    asks: list[tuple[Decimal, str, str, str]] = []
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
        used.append({"venue": e.venue, "symbol": e.symbol})
        bids.extend((Decimal(p), p, q, e.venue) for p, q in e.book.top_bids(depth))
        asks.extend((Decimal(p), p, q, e.venue) for p, q in e.book.top_asks(depth))
    bids.sort(key=lambda x: -x[0])
    asks.sort(key=lambda x: x[0])
    return {
        "instrument": instrument.upper(),
        "markets": sorted(markets),
        "venues": used,
        "left_out": left_out,
        "bids": [[p, q, v] for _, p, q, v in bids[:depth]],
        "asks": [[p, q, v] for _, p, q, v in asks[:depth]],
    }
