"""The pure order book: exact levels, no I/O, no Trio.

Each side is a :class:`BookSide`: a dict from an exact sort key of the price to
the venue's own ``(price, qty)`` text, plus a plain list of those keys kept in
ascending order with :mod:`bisect`, the *best level last* (asks by the negated
price): changes cluster at the top of the book, and at the end of a list an
insert or delete moves few pointers. Reads go best-first. The text is what gets served: a value never passes through float,
and two spellings of one price (``"0.10"``/``"0.1"``) are one level.

The sort key stands for the price's exact value. While every price the book
has seen has at most 15 significant digits, keys are ``float``: in that range
distinct decimals convert to distinct doubles, in the same order, so the floats
order and identify the prices exactly (and compare fast). The first price with
more digits (or far out of a double's range) switches the whole book — both
sides, for good until it is cleared — to ``Decimal`` keys. The two kinds never
meet in one book: a float's exact value is not the decimal it came from, so a
float key and a Decimal key would not compare as the prices do.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal, InvalidOperation

from .errors import BadFrame
from .model import Level

_Key = float | Decimal
_FLOAT_DIGITS = 15  # DBL_DIG: decimals of up to 15 significant digits survive a round trip through a double


def _plain(text: object) -> bool:
    """The venues' number grammar: ASCII digits with at most one dot (``Decimal()``
    alone also takes ``" 1.0"``, ``"1_000"``, ``"+5"``, ``"1e3"`` and non-ASCII digits)."""
    return type(text) is str and text.isascii() and text.replace(".", "", 1).isdigit()


def _decimal(price: str) -> Decimal:
    """The price's value; raises BadFrame unless it is a plain positive number."""
    if not _plain(price):
        raise BadFrame(f"bad price {price!r}")
    try:
        k = Decimal(price)
    except (InvalidOperation, TypeError, ValueError):
        raise BadFrame(f"bad price {price!r}") from None
    if not k.is_finite() or k <= 0:
        raise BadFrame(f"bad price {price!r}")
    return k


def _float_key(k: Decimal) -> float | None:
    """``float(k)`` when that identifies and orders ``k`` exactly among such keys, else None."""
    _, digits, exponent = k.as_tuple()
    n = len(digits)
    while n > 1 and digits[n - 1] == 0:  # trailing zeros are not significant
        n -= 1
        exponent += 1  # type: ignore[operator]
    if n <= _FLOAT_DIGITS and -290 <= exponent + n <= 290:  # type: ignore[operator]  # far from subnormals and overflow
        return float(k)
    return None


def _key(price: str) -> _Key:
    """The key of ``price`` in a book still on float keys (Decimal if it cannot be a float)."""
    k = _decimal(price)
    f = _float_key(k)
    return k if f is None else f


def _is_zero(qty: str) -> bool:
    """True for ``"0"``/``"0.000"``; raises BadFrame for anything but a plain number."""
    if not _plain(qty):
        raise BadFrame(f"bad quantity {qty!r}")
    try:
        q = Decimal(qty)
    except InvalidOperation:
        raise BadFrame(f"bad quantity {qty!r}") from None
    if not q.is_finite() or q < 0:
        raise BadFrame(f"bad quantity {qty!r}")
    return not q


class BookSide(dict):
    """One side of a book: ``{sort key: (price, qty)}`` plus ``_keys``, the
    keys in ascending order, best last. Reads go best-first: iteration,
    :meth:`keys`, :meth:`values`, :meth:`items` and :meth:`peekitem` follow
    ``_keys`` backwards (the interface of the ``SortedDict`` this replaced)."""

    __slots__ = ("_keys", "bound", "bound_price")

    def __init__(self) -> None:
        super().__init__()
        self._keys: list[_Key] = []
        # The worst key this side provably knows completely (see OrderBook); None: all of it.
        self.bound: _Key | None = None
        self.bound_price: str | None = None

    def clear(self) -> None:
        dict.clear(self)
        del self._keys[:]
        self.bound = self.bound_price = None

    def proven_start(self) -> int:
        """Index in ``_keys`` of the worst level inside the proven range."""
        return 0 if self.bound is None else bisect_left(self._keys, self.bound)

    def complete_depth(self) -> int:
        """Levels inside the range this side provably knows completely."""
        return len(self._keys) - self.proven_start()

    def _narrow(self) -> None:
        """The proven range ends at the worst level held now (levels past it were
        dropped, or never came with a depth-limited snapshot)."""
        keys = self._keys
        if keys and (self.bound is None or keys[0] > self.bound):
            self.bound = keys[0]
            self.bound_price = dict.__getitem__(self, keys[0])[0]

    def peekitem(self, index: int = -1) -> tuple[_Key, Level]:
        """The item at ``index`` in best-first order (0: the best, -1: the worst)."""
        key = self._keys[-1 - index]
        return key, dict.__getitem__(self, key)

    def __iter__(self) -> Iterator[_Key]:
        return reversed(self._keys)

    def __reversed__(self) -> Iterator[_Key]:
        return iter(self._keys)

    def keys(self) -> list[_Key]:  # type: ignore[override]
        return self._keys[::-1]

    def values(self) -> list[Level]:  # type: ignore[override]
        return list(map(self.__getitem__, reversed(self._keys)))

    def items(self) -> list[tuple[_Key, Level]]:  # type: ignore[override]
        return [(k, dict.__getitem__(self, k)) for k in reversed(self._keys)]

    def __repr__(self) -> str:
        return f"BookSide({self.items()!r})"


class OrderBook:
    """One symbol's L2 book. Read best-first: bids descending, asks ascending.

    ``depth`` bounds the levels kept per side: after every change the worst
    levels past it are dropped (venues whose checksum covers the top N need
    exactly this; for the others it keeps memory bounded).

    ``tracked``: the feed sends a change for every level of the book but the
    book starts from a depth-limited snapshot or is truncated (Binance's diff
    streams, Coinbase ``level2``), so a level outside what the book has seen can
    move into its top ranks. Each side then keeps ``bound``: the worst price of
    the range it provably knows completely (every level in it came with the
    snapshot or changed since). A snapshot of ``depth`` levels or more ends the
    range at its worst level (a shorter one is the whole side); truncation
    narrows it. Reads serve only levels inside it. Venues that maintain the
    window themselves (they push the levels that enter it) need none of this.
    """

    __slots__ = ("bids", "asks", "depth", "tracked", "_bid_keys", "_ask_keys", "_cache_max", "_floats")

    def __init__(self, depth: int | None = None, *, tracked: bool = False) -> None:
        self.bids = BookSide()
        self.asks = BookSide()
        self.depth = depth
        self.tracked = tracked and depth is not None
        self._bid_keys: dict[str, _Key] = {}
        self._ask_keys: dict[str, _Key] = {}
        # price-key cache per side, bounded relative to the book: prices drift over a day,
        # and a full cache keeps only the prices the side holds (see _new_key)
        self._cache_max = min(max(2 * depth, 1024), _KEY_CACHE_MAX) if depth is not None else _KEY_CACHE_MAX
        self._floats = True  # keys are floats (else Decimals); see the module doc

    # --- writing -------------------------------------------------------------------
    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        if not self._floats:  # empty again: back to float keys
            self._floats = True
            self._bid_keys.clear()
            self._ask_keys.clear()

    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the whole book."""
        self.clear()
        self.apply(bids, asks)
        if self.tracked:
            for side in (self.bids, self.asks):
                if len(side) >= self.depth:  # type: ignore[operator]  # depth-limited: nothing past its worst level is known
                    side._narrow()

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Set levels; a zero quantity removes its level (absent levels are fine)."""
        if bids:
            _set(self, self.bids, bids, False, self._bid_keys)
        if asks:
            _set(self, self.asks, asks, True, self._ask_keys)
        depth = self.depth
        if depth is not None:
            if len(self.bids) > depth:
                _truncate(self.bids, depth, self.tracked)
            if len(self.asks) > depth:
                _truncate(self.asks, depth, self.tracked)

    # --- reading -------------------------------------------------------------------
    def top_bids(self, n: int | None = None) -> list[Level]:
        return _top(self.bids, n)

    def top_asks(self, n: int | None = None) -> list[Level]:
        return _top(self.asks, n)

    def complete_depth(self) -> tuple[int, int]:
        """``(bids, asks)``: levels per side inside the range the book provably knows."""
        return self.bids.complete_depth(), self.asks.complete_depth()

    def proven_bounds(self) -> tuple[str | None, str | None]:
        """``(bid, ask)``: the worst price of each side's proven range (None: the whole side)."""
        return self.bids.bound_price, self.asks.bound_price

    def best_bid(self) -> Level | None:
        keys = self.bids._keys
        return dict.__getitem__(self.bids, keys[-1]) if keys else None

    def best_ask(self) -> Level | None:
        keys = self.asks._keys
        return dict.__getitem__(self.asks, keys[-1]) if keys else None

    def is_crossed(self) -> bool:
        """True when the best bid is at or above the best ask."""
        bids = self.bids._keys
        asks = self.asks._keys
        if not bids or not asks:
            return False
        if self._floats:
            return bids[-1] >= -asks[-1]  # negating a float is exact
        return bids[-1] >= asks[-1].copy_negate()  # a Decimal's unary minus rounds to the context's 28 digits

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)


_KEY_CACHE_MAX = 200_000
_PAIRS = (list, tuple)  # what a level may be (JSON arrays; typed decoders' tuples)


def _top(side: BookSide, n: int | None) -> list[Level]:
    keys = side._keys
    start = side.proven_start()  # only levels inside the proven range are served
    if n is not None:
        if n <= 0:
            return []
        start = max(start, len(keys) - n)
    return list(map(side.__getitem__, reversed(keys[start:] if start else keys)))


def _set(book: OrderBook, side: BookSide, levels: Iterable[Level], negate: bool, cache: dict[str, _Key]) -> None:
    """Set levels on one side. The hot path: price keys are cached per side
    (price strings repeat), plain decimal quantities are checked without
    building a Decimal, and only a new or removed level touches the key list
    (one bisect)."""
    keys = side._keys
    get = cache.get
    for level in levels:
        kind = type(level)
        if kind not in _PAIRS:
            raise BadFrame(f"bad level {level!r}")
        try:
            price, qty = level
        except ValueError:
            raise BadFrame(f"bad level {level!r}") from None
        try:
            key = get(price)
        except TypeError:  # unhashable
            raise BadFrame(f"bad price {price!r}") from None
        if key is None:
            key = _new_key(book, price, negate, cache)
        try:  # a plain decimal (bytes and non-strings fail here and take the slow path)
            plain = qty.isascii() and qty.replace(".", "", 1).isdigit()
        except (AttributeError, TypeError):
            plain = False
        if plain:
            if qty.lstrip("0."):  # a digit 1-9 (lstrip: stops at the first one; strip would scan the trailing zeros too)
                if key not in side:
                    insort(keys, key)
                side[key] = level if kind is tuple else (price, qty)  # a tuple level is kept as it came
            elif side.pop(key, None) is not None:
                del keys[bisect_left(keys, key)]
        elif _is_zero(qty):
            if side.pop(key, None) is not None:
                del keys[bisect_left(keys, key)]
        else:
            if key not in side:
                insort(keys, key)
            side[key] = (price, qty)


def _new_key(book: OrderBook, price: str, negate: bool, cache: dict[str, _Key]) -> _Key:
    """The sort key of a price not in the side's cache (kept out of :func:`_set`'s
    loop: the loop is faster without it, and ~98% of level changes hit the cache)."""
    if type(price) is not str:
        raise BadFrame(f"bad price {price!r}")
    key: _Key = _decimal(price)
    if book._floats:
        f = _float_key(key)  # type: ignore[arg-type]
        if f is None:
            _to_decimal_keys(book)  # rebuilds both sides; the side's key list stays the same list
        else:
            key = f
    if negate:
        key = -key if type(key) is float else key.copy_negate()  # type: ignore[union-attr]  # exact (-Decimal rounds to 28 digits)
    if len(cache) >= book._cache_max:
        _prune(book.asks if negate else book.bids, cache, book._cache_max)
    cache[price] = key
    return key


def _prune(side: BookSide, cache: dict[str, _Key], limit: int) -> None:
    """A full price-key cache keeps only the prices the side holds now (their
    strings shared with the levels): the prices a drifting market left behind
    cost nothing, and the live ones still hit. O(levels), at most once per
    ``limit - levels`` new prices."""
    cache.clear()
    if len(side) * 2 <= limit:
        cache.update({level[0]: key for key, level in dict.items(side)})


def _to_decimal_keys(book: OrderBook) -> None:
    """Switch a book from float keys to Decimal keys (both sides, their caches)."""
    book._floats = False
    for side, negate, cache in ((book.bids, False, book._bid_keys), (book.asks, True, book._ask_keys)):
        levels = list(dict.values(side))
        dict.clear(side)
        for level in levels:
            key = Decimal(level[0])
            dict.__setitem__(side, key.copy_negate() if negate else key, level)
        side._keys[:] = sorted(dict.keys(side))
        cache.clear()
        if side.bound_price is not None:
            bound = Decimal(side.bound_price)
            side.bound = bound.copy_negate() if negate else bound


def _truncate(side: BookSide, depth: int, tracked: bool) -> None:
    """Keep the best ``depth`` levels (the end of the key list); a tracked side's
    proven range then ends at the worst level kept."""
    keys = side._keys
    cut = len(keys) - depth
    if cut > 0:
        for key in keys[:cut]:
            dict.__delitem__(side, key)
        del keys[:cut]
        if tracked:
            side._narrow()


def levels_equal(a: Sequence[Level], b: Sequence[Level]) -> bool:
    """Compare level lists by numeric value (``"1.50"`` equals ``"1.5"``)."""
    if len(a) != len(b):
        return False
    return all(Decimal(p1) == Decimal(p2) and Decimal(q1) == Decimal(q2) for (p1, q1), (p2, q2) in zip(a, b))
