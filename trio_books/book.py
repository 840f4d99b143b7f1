"""The pure order book: exact levels, no I/O, no Trio.

Each side is a ``SortedDict`` keyed by the price as a ``Decimal`` (bids by the
negated price, so both sides iterate best-first). The value is the venue's own
``(price, qty)`` text, which is what gets served: a value never passes through
float, and two spellings of one price (``"0.10"``/``"0.1"``) are one level.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from itertools import islice

from sortedcontainers import SortedDict

from .errors import BadFrame
from .model import Level

def _key(price: str) -> Decimal:
    try:
        k = Decimal(price)
    except (InvalidOperation, TypeError, ValueError):
        raise BadFrame(f"bad price {price!r}") from None
    if not k.is_finite() or k <= 0:
        raise BadFrame(f"bad price {price!r}")
    return k


def _is_zero(qty: str) -> bool:
    """True for ``"0"``/``"0.000"``; raises BadFrame for non-numbers and negatives."""
    if type(qty) is not str:
        raise BadFrame(f"bad quantity {qty!r}")
    try:
        q = Decimal(qty)
    except InvalidOperation:
        raise BadFrame(f"bad quantity {qty!r}") from None
    if not q.is_finite() or q < 0:
        raise BadFrame(f"bad quantity {qty!r}")
    return not q


class OrderBook:
    """One symbol's L2 book. Bids descending, asks ascending.

    ``depth`` bounds the levels kept per side: after every change the worst
    levels past it are dropped (venues whose checksum covers the top N need
    exactly this; for the others it keeps memory bounded).
    """

    __slots__ = ("bids", "asks", "depth", "_bid_keys", "_ask_keys", "_cache_max")

    def __init__(self, depth: int | None = None) -> None:
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.depth = depth
        self._bid_keys: dict[str, Decimal] = {}
        self._ask_keys: dict[str, Decimal] = {}
        # price-key cache per side, bounded relative to the book (prices drift over a day)
        self._cache_max = min(max(4 * depth, 4096), _KEY_CACHE_MAX) if depth is not None else _KEY_CACHE_MAX

    # --- writing -------------------------------------------------------------------
    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the whole book."""
        self.clear()
        self.apply(bids, asks)

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Set levels; a zero quantity removes its level (absent levels are fine)."""
        _set(self.bids, bids, True, self._bid_keys, self._cache_max)
        _set(self.asks, asks, False, self._ask_keys, self._cache_max)
        depth = self.depth
        if depth is not None:
            if len(self.bids) > depth:
                _truncate(self.bids, depth)
            if len(self.asks) > depth:
                _truncate(self.asks, depth)

    def truncate(self, depth: int) -> None:
        _truncate(self.bids, depth)
        _truncate(self.asks, depth)

    # --- reading -------------------------------------------------------------------
    def top_bids(self, n: int | None = None) -> list[Level]:
        return list(self.bids.values() if n is None else islice(self.bids.values(), n))

    def top_asks(self, n: int | None = None) -> list[Level]:
        return list(self.asks.values() if n is None else islice(self.asks.values(), n))

    def best_bid(self) -> Level | None:
        return self.bids.peekitem(0)[1] if self.bids else None

    def best_ask(self) -> Level | None:
        return self.asks.peekitem(0)[1] if self.asks else None

    def is_crossed(self) -> bool:
        """True when the best bid is at or above the best ask."""
        bids = self.bids._list
        asks = self.asks._list
        return bool(bids) and bool(asks) and -bids[0] >= asks[0]

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)


_KEY_CACHE_MAX = 200_000


def _set(side: SortedDict, levels: Iterable[Level], negate: bool, cache: dict[str, Decimal], cache_max: int = 200_000) -> None:
    """Set levels on one side. The hot path: price keys are cached per side
    (price strings repeat), plain decimal quantities are checked without
    building a Decimal, and the SortedDict's dict and key list are updated
    directly (no per-call method dispatch)."""
    contains = dict.__contains__
    setitem = dict.__setitem__
    delitem = dict.__delitem__
    keys_add = side._list_add
    keys_remove = side._list_remove
    for level in levels:
        if type(level) is not list and type(level) is not tuple:
            raise BadFrame(f"bad level {level!r}")
        try:
            price, qty = level
        except ValueError:
            raise BadFrame(f"bad level {level!r}") from None
        key = cache.get(price)  # type: ignore[arg-type]
        if key is None:
            if type(price) is not str:
                raise BadFrame(f"bad price {price!r}")
            key = _key(price)
            if negate:
                key = -key
            if len(cache) >= cache_max:
                cache.clear()
            cache[price] = key
        if type(qty) is str and qty.isascii() and qty.replace(".", "", 1).isdigit():
            zero = not qty.strip("0.")
        else:
            zero = _is_zero(qty)
        if zero:
            if contains(side, key):
                delitem(side, key)
                keys_remove(key)
        else:
            if not contains(side, key):
                keys_add(key)
            setitem(side, key, (price, qty))


def _truncate(side: SortedDict, depth: int) -> None:
    if len(side) > depth:
        keys = side._list
        delitem = dict.__delitem__
        for key in keys[depth:]:
            delitem(side, key)
        del keys[depth:]


def levels_equal(a: Sequence[Level], b: Sequence[Level]) -> bool:
    """Compare level lists by numeric value (``"1.50"`` equals ``"1.5"``)."""
    if len(a) != len(b):
        return False
    return all(Decimal(p1) == Decimal(p2) and Decimal(q1) == Decimal(q2) for (p1, q1), (p2, q2) in zip(a, b))
