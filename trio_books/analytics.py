"""What traders read off a book: exact figures from its levels (pure, no I/O).

Every figure is computed from the book's own decimal strings. Sums and products
are exact: they run in :data:`EXACT`, a ``Decimal`` context that traps any
rounding, so a figure is either exact or an error, never silently rounded (the
mid, the spread, the depth within a band, the quote paid for a base amount).
A division is rounded once, from the exact rational quotient, half to even
(``fractions.Fraction`` and ``round``): to :data:`BPS_PLACES` decimal places for
basis points, to :data:`PLACES` for every other quotient (micro-price,
imbalance, average fill price, the base amount a quote amount buys). Values are
shown as plain decimal strings without trailing zeros (``"1.5"``, never
``"1.50"`` or ``"1.5E+1"``); a level's own values (best bid/ask, the best and
worst price reached) are the venue's own text.

Only the levels a book holds are used: a served book holds its provably
complete levels, which may be fewer than the venue has. A cost larger than
they hold is reported as insufficient depth, never extrapolated, and a depth
band reaching past a side's last held level says it is not ``complete``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, Rounded, localcontext
from fractions import Fraction
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
    """A level as numbers, with the venue's price text and where it comes from."""

    price: Decimal
    qty: Decimal
    text: str
    qty_text: str
    source: str = ""


def levels(raw: Iterable[Level], source: str = "") -> list[Lvl]:
    """``(price, qty)`` strings, best first, as :class:`Lvl` (exact ``Decimal``)."""
    return [Lvl(Decimal(p), Decimal(q), p, q, source) for p, q in raw]


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
        for band in bands:
            if mid is None:
                depth[show(band)] = None
                continue
            low = mid - mid * band / _BP
            high = mid + mid * band / _BP
            depth[show(band)] = {"bids": _band([x for x in bids if x.price >= low], len(bids), low),
                                 "asks": _band([x for x in asks if x.price <= high], len(asks), high)}
        out["depth"] = depth
    return out


def _band(inside: list[Lvl], held: int, bound: Decimal) -> dict[str, Any]:
    base = sum((x.qty for x in inside), Decimal(0))
    quote = sum((x.price * x.qty for x in inside), Decimal(0))
    return {"bound": show(bound), "base": show(base), "quote": show(quote), "levels": len(inside),
            "complete": len(inside) < held}


def parse_amount(raw: str | None) -> Decimal | None:
    """A positive plain decimal (``"1.5"``); None when ``raw`` is not one."""
    if raw is None or not (0 < len(raw) <= 64 and raw.isascii() and raw.replace(".", "", 1).isdigit()):
        return None
    value = Decimal(raw)
    return value if value > 0 else None


def cost(side: str, book: Sequence[Lvl], mid: Decimal | None, *, base: Decimal | None = None,
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
    got_base, got_quote = Fraction(0), Decimal(0)
    per: dict[str, list] = {}  # source -> [base, quote, levels, worst text]
    walked: list[str] = []  # the price text of each level reached
    with localcontext(EXACT):
        left = want
        for lvl in book:
            if left <= 0:
                break
            if lvl.qty <= 0:
                continue
            walked.append(lvl.text)
            if base is not None:
                take_base: Fraction = Fraction(min(left, lvl.qty))
                take_quote = min(left, lvl.qty) * lvl.price
                left -= min(left, lvl.qty)
            else:
                whole = lvl.price * lvl.qty
                if whole <= left:
                    take_base, take_quote = Fraction(lvl.qty), whole
                else:
                    take_base, take_quote = Fraction(left) / Fraction(lvl.price), left
                left -= take_quote
            got_base += take_base
            got_quote += take_quote
            share = per.setdefault(lvl.source, [Fraction(0), Decimal(0), 0, ""])
            share[0] += take_base
            share[1] += take_quote
            share[2] += 1
            share[3] = lvl.text
        if left > 0:
            held = [x for x in book if x.qty > 0]
            out.update(sufficient=False, error="insufficient depth", available={
                "base": show(sum((x.qty for x in held), Decimal(0))),
                "quote": show(sum((x.price * x.qty for x in held), Decimal(0))), "levels": len(held)},
                filled=None, avg_price=None, best_price=None, worst_price=None, mid=show(mid), slippage_bps=None)
            return out
        avg = Fraction(got_quote) / got_base
        slip = None
        if mid is not None and mid > 0:
            slip = _bps((avg - Fraction(mid)) if side == "buy" else (Fraction(mid) - avg), mid)
        out.update(sufficient=True, filled={"base": _show_q(got_base), "quote": show(got_quote), "levels": len(walked)},
                   avg_price=show(rounded(avg)), best_price=walked[0], worst_price=walked[-1],
                   mid=show(mid), slippage_bps=show(slip))
    if len(per) > 1 or (per and next(iter(per)) != ""):
        out["fills"] = [{"source": s, "base": _show_q(b), "quote": show(q), "levels": n, "worst_price": w}
                        for s, (b, q, n, w) in per.items()]
    return out


def _show_q(x: Fraction) -> str | None:
    """A base amount: exact when it is a finite decimal, else rounded to :data:`PLACES`."""
    d = x.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d == 1:
        with localcontext(EXACT):
            return show(Decimal(x.numerator) / Decimal(x.denominator))
    return show(rounded(x))
