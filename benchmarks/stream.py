"""A realistic Binance Spot diff-depth stream, deterministic per seed.

What it imitates (Binance Spot ``<symbol>@depth@100ms`` on a combined stream):

* every frame is ``{"stream": "<sym>@depth@100ms", "data": {"e": "depthUpdate",
  "E": ms, "s": "SYM", "U": first, "u": final, "b": [[price, qty], ...], "a": [...]}}``;
* ``U`` is the previous event's ``u + 1`` and ``u - U`` is 0..30 (one event
  aggregates several engine updates);
* 2..8 level changes per event, clustered near the top of the book (a few far
  away), about a quarter of them removals (``"0.00000000"``), some removals of
  levels that are not in the book (Binance sends those too);
* prices and quantities are decimal strings with 8 decimals, as Binance writes them;
* the book has ~1000 levels per side and is never crossed (bids below a fixed
  mid, asks above it);
* symbols are not equally busy (BTCUSDT gets the most events).

Nothing here does I/O; the fake server (``fake_venue.py``) and the orchestrator
both use it.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Sequence

import orjson

# symbol, base, quote, price decimals, qty decimals, mid price (in ticks), share of the events
SYMBOLS: tuple[tuple[str, str, str, int, int, int, float], ...] = (
    ("BTCUSDT", "BTC", "USDT", 2, 5, 6_701_234, 0.24),
    ("ETHUSDT", "ETH", "USDT", 2, 4, 345_678, 0.16),
    ("SOLUSDT", "SOL", "USDT", 2, 3, 14_567, 0.11),
    ("DOGEUSDT", "DOGE", "USDT", 5, 0, 12_345, 0.09),
    ("XRPUSDT", "XRP", "USDT", 4, 0, 5_234, 0.08),
    ("BNBUSDT", "BNB", "USDT", 2, 3, 58_912, 0.08),
    ("ADAUSDT", "ADA", "USDT", 4, 1, 4_512, 0.06),
    ("LINKUSDT", "LINK", "USDT", 3, 2, 14_560, 0.06),
    ("AVAXUSDT", "AVAX", "USDT", 3, 2, 28_910, 0.06),
    ("TRXUSDT", "TRX", "USDT", 5, 1, 12_340, 0.06),
)

MAX_OFFSET = 1400
"""Levels live at 1..MAX_OFFSET ticks from the mid (about 75% of them occupied)."""
ZERO = "0.00000000"


def symbols(n: int) -> list[str]:
    if not 1 <= n <= len(SYMBOLS):
        raise ValueError(f"between 1 and {len(SYMBOLS)} symbols")
    return [s[0] for s in SYMBOLS[:n]]


def exchange_info(names: Sequence[str]) -> dict:
    """The part of ``GET /api/v3/exchangeInfo`` that clients read."""
    out = []
    for name, base, quote, pd, qd, _mid, _w in SYMBOLS:
        if name in names:
            tick = f"{10 ** -pd:.8f}"
            step = f"{10 ** -qd:.8f}"
            out.append({
                "symbol": name, "status": "TRADING", "baseAsset": base, "quoteAsset": quote,
                "baseAssetPrecision": 8, "quoteAssetPrecision": 8,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000", "tickSize": tick},
                    {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000000.00000000", "stepSize": step},
                ],
                "permissions": ["SPOT"],
            })
    return {"timezone": "UTC", "serverTime": 1_760_000_000_000, "rateLimits": [], "symbols": out}


def _fmt(units: int, decimals: int) -> str:
    """``units`` of 10**-decimals as Binance writes it: always 8 decimals."""
    if decimals == 0:
        return f"{units}.00000000"
    scale = 10**decimals
    return f"{units // scale}.{units % scale:0{decimals}d}" + "0" * (8 - decimals)


class SymbolBook:
    """The true book of one symbol: offsets (ticks from the mid) → quantity units."""

    __slots__ = ("name", "lower", "pd", "qd", "mid", "mu", "bids", "asks", "last_u", "_bid_px", "_ask_px", "stream_name")

    def __init__(self, index: int, rng: random.Random, levels: int = 1000, first_u: int | None = None) -> None:
        name, _b, _q, pd, qd, mid, _w = SYMBOLS[index]
        self.name, self.lower, self.pd, self.qd, self.mid = name, name.lower(), pd, qd, mid
        self.stream_name = f"{self.lower}@depth@100ms"
        self.mu = math.log(2000.0 / (mid / 10**pd))
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bid_px: dict[int, str] = {}
        self._ask_px: dict[int, str] = {}
        self.last_u = first_u if first_u is not None else 40_000_000_000 + 1_000_000_000 * index
        for side in (self.bids, self.asks):
            off = 0
            while len(side) < levels:
                off += 1
                if off > MAX_OFFSET:
                    off = 1
                if off not in side and rng.random() < 0.72:
                    side[off] = self._qty(rng)
        assert mid - MAX_OFFSET > 0

    def _qty(self, rng: random.Random) -> int:
        # lognormal sizes around $2,000 a level: many small resting orders, a few large ones
        return max(1, int(math.exp(self.mu + 1.6 * rng.gauss()) * 10**self.qd))

    def price(self, is_bid: bool, off: int) -> str:
        cache = self._bid_px if is_bid else self._ask_px
        text = cache.get(off)
        if text is None:
            text = cache[off] = _fmt(self.mid - off if is_bid else self.mid + off, self.pd)
        return text

    def change(self, rng: random.Random, k: int) -> tuple[list[list[str]], list[list[str]]]:
        """Apply ``k`` random level changes; return them as Binance ``b``/``a`` lists."""
        bids: dict[int, str] = {}
        asks: dict[int, str] = {}
        for _ in range(k):
            is_bid = rng.random() < 0.5
            side = self.bids if is_bid else self.asks
            if rng.random() < 0.88:
                off = 1 + int(rng.expovariate(1 / 22.0))  # near the top
                if off > MAX_OFFSET:
                    off = MAX_OFFSET
            else:
                off = rng.randint(1, MAX_OFFSET)  # anywhere in the book
            if off in side:
                if rng.random() < 0.3:
                    del side[off]
                    qty = ZERO
                else:
                    units = side[off] = self._qty(rng)
                    qty = _fmt(units, self.qd)
            elif rng.random() < 0.9:
                units = side[off] = self._qty(rng)
                qty = _fmt(units, self.qd)
            else:
                qty = ZERO  # removal of a level the client may not hold
            (bids if is_bid else asks)[off] = qty
        return ([[self.price(True, o), q] for o, q in bids.items()],
                [[self.price(False, o), q] for o, q in asks.items()])

    def event(self, rng: random.Random, event_ms: int) -> tuple[bytes, int, int]:
        """One depthUpdate frame: ``(json bytes, final update id, level changes)``."""
        b, a = self.change(rng, rng.randint(2, 8))
        first = self.last_u + 1
        final = first + (rng.randint(0, 30) if rng.random() < 0.8 else 0)
        self.last_u = final
        frame = orjson.dumps({"stream": self.stream_name, "data": {
            "e": "depthUpdate", "E": event_ms, "s": self.name, "U": first, "u": final, "b": b, "a": a}})
        return frame, final, len(b) + len(a)

    def snapshot(self, limit: int) -> dict:
        """``GET /api/v3/depth`` of the current state."""
        bids = sorted(self.bids)[:limit]
        asks = sorted(self.asks)[:limit]
        qd = self.qd
        return {
            "lastUpdateId": self.last_u,
            "bids": [[self.price(True, o), _fmt(self.bids[o], qd)] for o in bids],
            "asks": [[self.price(False, o), _fmt(self.asks[o], qd)] for o in asks],
        }


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked (server → client) RFC 6455 frame, FIN set."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


class ReplayStream:
    """A fixed stream for throughput and latency runs, identical for every client.

    ``prefix`` rounds of one event per symbol come first; the REST snapshot
    served for the run is the book right after the prefix (so the snapshot is
    newer than the first buffered event, as Binance's procedure requires),
    then ``n_body`` events follow.
    """

    def __init__(self, n_symbols: int, n_body: int, *, seed: int = 20240601, prefix: int = 2, levels: int = 1000) -> None:
        rng = random.Random(seed)
        self.symbols = symbols(n_symbols)
        self.books = [SymbolBook(i, rng, levels) for i in range(n_symbols)]
        weights = [SYMBOLS[i][6] for i in range(n_symbols)]
        self.sym = array("B")  # symbol index of each frame
        self.final_u = array("q")  # u of each frame
        self.levels = array("B")  # level changes in each frame
        self.payloads: list[bytes] = []
        e_ms = 1_760_000_000_000
        for _ in range(prefix):
            for i, book in enumerate(self.books):
                self._add(i, book.event(rng, e_ms))
        self.n_prefix = len(self.payloads)
        self.snapshots = [book.snapshot(5000) for book in self.books]
        order = rng.choices(range(n_symbols), weights=weights, k=n_body)
        for k, i in enumerate(order):
            self._add(i, self.books[i].event(rng, e_ms + k // 5))
        self.n_body = n_body
        self.last_u = [book.last_u for book in self.books]

    def _add(self, i: int, ev: tuple[bytes, int, int]) -> None:
        payload, final, n = ev
        self.payloads.append(payload)
        self.sym.append(i)
        self.final_u.append(final)
        self.levels.append(n)

    def snapshot_body(self, symbol_index: int, limit: int) -> bytes:
        snap = self.snapshots[symbol_index]
        return orjson.dumps({"lastUpdateId": snap["lastUpdateId"], "bids": snap["bids"][:limit], "asks": snap["asks"][:limit]})

    def meta(self) -> dict:
        """What the orchestrator needs to join logs and count levels."""
        return {
            "symbols": self.symbols,
            "n_prefix": self.n_prefix,
            "n_body": self.n_body,
            "last_u": self.last_u,
            "sym": list(self.sym),
            "u": list(self.final_u),
            "levels": list(self.levels),
            "bytes": sum(len(p) for p in self.payloads),
        }


class LiveVenue:
    """A venue that changes in real time (for the 9-venue footprint run)."""

    def __init__(self, n_symbols: int, seed: int, levels: int = 1000) -> None:
        self.rng = random.Random(seed)
        self.symbols = symbols(n_symbols)
        self.books = [SymbolBook(i, self.rng, levels) for i in range(n_symbols)]
        self.by_name = {b.name: b for b in self.books}

    def tick(self, event_ms: int) -> list[bytes]:
        return [book.event(self.rng, event_ms)[0] for book in self.books]
