"""What traders read off a book: exact figures from its levels (pure, no I/O).

Every figure is computed from the book's own decimal strings. Sums and products
are exact: they run in :data:`EXACT`, a ``Decimal`` context that traps any
rounding, so a figure is either exact or an error, never silently rounded (the
mid, the spread, the depth within a band, the quote paid for a base amount).
A division is rounded once, from the exact rational quotient, half to even
(``fractions.Fraction`` and ``round``): to :data:`BPS_PLACES` decimal places for
basis points, to :data:`PLACES` for every other quotient (micro-price,
imbalance, average fill price, a base amount bought or sold for a quote amount
when its last level is taken in part). Values are
shown as plain decimal strings without trailing zeros (``"1.5"``, never
``"1.50"`` or ``"1.5E+1"``); a level's own values (best bid/ask, the best and
worst price reached) are the venue's own text.

Only the levels a book holds are used: a served book holds its provably
complete levels, which may be fewer than the venue has. A cost larger than
they hold is reported as insufficient depth, never extrapolated, and a depth
band reaching past a side's last held level says it is not ``complete``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, Rounded, localcontext
from fractions import Fraction
from itertools import takewhile
from typing import Any, Final, NamedTuple

from .model import Level

PLACES: Final = 18
"""Decimal places of a rounded quotient that is not in basis points."""
BPS_PLACES: Final = 4
"""Decimal places of a figure in basis points (1 bp = 0.01 %)."""
EXACT: Final = Context(prec=2000, Emax=999_999, Emin=-999_999,
                       traps=[Inexact, Rounded, InvalidOperation, DivisionByZero, Overflow])
SIDES: Final = ("buy", "sell")
_BP: Final = Decimal(10_000)


class Lvl(NamedTuple):
    """A level as numbers, with the venue's text of both and where it comes from."""

    price: Decimal
    qty: Decimal
    text: str
    qty_text: str
    source: str = ""


class Ladder(Sequence[Lvl]):
    """A side's ``(price, qty)`` strings, best first, as :class:`Lvl` (exact ``Decimal``),
    each converted on first use: a band or a fill rarely reaches deep into a book."""

    def __init__(self, raw: Sequence[Level], source: str = "") -> None:
        self._raw, self._source = raw, source
        self._done: list[Lvl] = []

    def __len__(self) -> int:
        return len(self._raw)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self._raw)))]
        if i < 0:
            i += len(self._raw)
        if not 0 <= i < len(self._raw):
            raise IndexError(i)
        if i >= len(self._done):
            self._convert(i + 1)
        return self._done[i]

    def __iter__(self) -> Iterator[Lvl]:
        i = 0
        while i < len(self._raw):
            if i == len(self._done):
                self._convert(i + 1)
            yield self._done[i]
            i += 1

    def _convert(self, n: int) -> None:
        """Convert at least up to level ``n`` (doubling: few calls however deep a walk goes)."""
        start = len(self._done)
        end = min(len(self._raw), max(n, 2 * start, 8))
        source = self._source
        self._done.extend([Lvl(Decimal(p), Decimal(q), p, q, source) for p, q in self._raw[start:end]])


def rounded(x: Fraction, places: int = PLACES) -> Decimal:
    """``x`` rounded half to even to ``places`` decimal places (one rounding)."""
    return Decimal(round(x * 10**places)).scaleb(-places, EXACT)


def show(d: Decimal | None) -> str | None:
    """A plain decimal string without exponent or trailing zeros (None stays None)."""
    if d is None:
        return None
    if d == 0:
        return "0"
    s = format(d, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def _bps(num: Decimal | Fraction, mid: Decimal) -> Decimal:
    return rounded(Fraction(num) * 10_000 / Fraction(mid), BPS_PLACES)


def mid_price(bids: Sequence[Lvl], asks: Sequence[Lvl]) -> Decimal | None:
    """``(best bid + best ask) / 2`` (exact), or None when a side is empty."""
    if not bids or not asks:
        return None
    with localcontext(EXACT):
        return (bids[0].price + asks[0].price) / 2


def stats(bids: Sequence[Lvl], asks: Sequence[Lvl], top: int = 5, bands: Sequence[Decimal] = ()) -> dict[str, Any]:
    """Top-of-book figures and the depth within each band (bps of the mid).

    * ``mid = (bid + ask) / 2``; ``spread = ask - bid``; ``spread_bps = spread / mid × 10⁴``
    * ``micro_price = (bid × ask_qty + ask × bid_qty) / (bid_qty + ask_qty)``
    * ``imbalance = (B − A) / (B + A)``, B and A the base quantity of the top ``top`` levels per side
    * per band X: bids priced ≥ ``mid × (1 − X/10⁴)``, asks ≤ ``mid × (1 + X/10⁴)``: base ``Σ qty``,
      quote ``Σ price × qty``, and ``complete`` when the side holds a level beyond the band.
    """
    mid = mid_price(bids, asks)
    out: dict[str, Any] = {
        "best_bid": [bids[0].text, bids[0].qty_text] if bids else None,
        "best_ask": [asks[0].text, asks[0].qty_text] if asks else None,
        "mid": show(mid), "spread": None, "spread_bps": None, "micro_price": None,
    }
    with localcontext(EXACT):
        if mid is not None:
            bid, ask = bids[0], asks[0]
            spread = ask.price - bid.price
            out["spread"] = show(spread)
            out["spread_bps"] = show(_bps(spread, mid))
            out["micro_price"] = show(rounded(Fraction(bid.price * ask.qty + ask.price * bid.qty) / Fraction(bid.qty + ask.qty)))
        b = sum((x.qty for x in bids[:top]), Decimal(0))
        a = sum((x.qty for x in asks[:top]), Decimal(0))
        out["imbalance"] = {"levels": top, "value": show(rounded(Fraction(b - a) / Fraction(b + a))) if b + a else None}
        depth: dict[str, Any] = {}
        if mid is not None and bands:
            # running sums, each side once, out to the widest band
            lowest, highest = mid - mid * max(bands) / _BP, mid + mid * max(bands) / _BP
            bid_sums = _running(takewhile(lambda x: x.price >= lowest, bids))
            ask_sums = _running(takewhile(lambda x: x.price <= highest, asks))
        for band in bands:
            if mid is None:
                depth[show(band)] = None
                continue
            low, high = mid - mid * band / _BP, mid + mid * band / _BP
            depth[show(band)] = {"bids": _band(bid_sums, len(bids), low, bisect_right(bid_sums, -low, key=lambda r: -r[0])),
                                 "asks": _band(ask_sums, len(asks), high, bisect_right(ask_sums, high, key=lambda r: r[0]))}
        out["depth"] = depth
    return out


def _running(inside: Iterable[Lvl]) -> list[tuple[Decimal, Decimal, Decimal]]:
    """``(price, Σ qty, Σ price × qty)`` up to each level (in :data:`EXACT`)."""
    out, base, quote = [], Decimal(0), Decimal(0)
    for x in inside:
        base += x.qty
        quote += x.price * x.qty
        out.append((x.price, base, quote))
    return out


def _band(sums: list[tuple[Decimal, Decimal, Decimal]], held: int, bound: Decimal, n: int) -> dict[str, Any]:
    """The first ``n`` levels of a side (those within ``bound``) of the ``held``."""
    base, quote = (sums[n - 1][1], sums[n - 1][2]) if n else (Decimal(0), Decimal(0))
    return {"bound": show(bound), "base": show(base), "quote": show(quote), "levels": n, "complete": n < held}


def parse_amount(raw: str | None) -> Decimal | None:
    """A positive plain decimal (``"1.5"``); None when ``raw`` is not one."""
    if raw is None or not (0 < len(raw) <= 64 and raw.isascii() and raw.replace(".", "", 1).isdigit()):
        return None
    value = Decimal(raw)
    return value if value > 0 else None


def as_amount(value: str | Decimal | None, name: str) -> Decimal | None:
    """A library caller's amount (a decimal string or ``Decimal``); ValueError unless above 0."""
    if value is None:
        return None
    amount = parse_amount(value) if isinstance(value, str) else value
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise ValueError(f"{name} must be a plain decimal number above 0, got {value!r}")
    return amount


def cost(side: str, book: Iterable[Lvl], mid: Decimal | None, *, base: Decimal | None = None,
         quote: Decimal | None = None) -> dict[str, Any]:
    """Walk ``book`` (the asks best first for a buy, the bids for a sell) to trade
    ``base`` units, or to spend/receive ``quote`` units, exactly.

    ``avg_price = quote / base`` over the fill; ``slippage_bps = (avg − mid) / mid × 10⁴``
    for a buy, ``(mid − avg) / mid × 10⁴`` for a sell (positive: worse than the mid).
    With more than ``book`` holds: ``sufficient`` false, the ``available`` total, no prices.
    Levels from several sources (a consolidated book) name each one's share in ``fills``.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}")
    if (base is None) == (quote is None) or (base or quote or 0) <= 0:
        raise ValueError("give exactly one of base or quote, above 0")
    want = base if base is not None else quote
    assert want is not None
    out: dict[str, Any] = {"side": side, "want": {"base" if base is not None else "quote": show(want)}}
    got_base, got_quote = Decimal(0), Decimal(0)
    part = Fraction(0)  # base bought at the last level with the rest of a quote amount (a quotient)
    per: dict[str, list] = {}  # source -> [base, part, quote, levels, worst text]
    walked: list[str] = []  # the price text of each level reached
    with localcontext(EXACT):
        left = want
        for lvl in book:
            if left <= 0:
                break
            if lvl.qty <= 0:
                continue
            walked.append(lvl.text)
            share = per.setdefault(lvl.source, [Decimal(0), Fraction(0), Decimal(0), 0, ""])
            whole = lvl.price * lvl.qty
            if base is not None and lvl.qty > left:
                whole, take = left * lvl.price, left
            elif base is None and whole > left:
                whole, take, part = left, Decimal(0), Fraction(left) / Fraction(lvl.price)
                share[1] = part
            else:
                take = lvl.qty
            left -= take if base is not None else whole
            got_base += take
            got_quote += whole
            share[0] += take
            share[2] += whole
            share[3] += 1
            share[4] = lvl.text
        if left > 0:
            out.update(sufficient=False, error="insufficient depth", available={
                "base": show(got_base), "quote": show(got_quote), "levels": len(walked)},
                filled=None, avg_price=None, best_price=None, worst_price=None, mid=show(mid), slippage_bps=None)
            return out
        avg = Fraction(got_quote) / (Fraction(got_base) + part)
        slip = None
        if mid is not None and mid > 0:
            slip = _bps((avg - Fraction(mid)) if side == "buy" else (Fraction(mid) - avg), mid)
        out.update(sufficient=True, filled={"base": _show_base(got_base, part), "quote": show(got_quote), "levels": len(walked)},
                   avg_price=show(rounded(avg)), best_price=walked[0], worst_price=walked[-1],
                   mid=show(mid), slippage_bps=show(slip))
    if len(per) > 1 or (per and next(iter(per)) != ""):
        out["fills"] = [{"source": s, "base": _show_base(b, pt), "quote": show(q), "levels": n, "worst_price": w}
                        for s, (b, pt, q, n, w) in per.items()]
    return out


def _show_base(exact: Decimal, part: Fraction) -> str | None:
    """A filled base amount: exact, or rounded to :data:`PLACES` when it includes a
    quotient (``part``, the base a quote amount's rest buys at its last level)."""
    return show(exact) if not part else show(rounded(Fraction(exact) + part))
