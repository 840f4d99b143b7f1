"""The derived figures against a brute-force reference written here from the
formulas (Fractions and cumulative sums, not the module's walk)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_books import analytics
from trio_books.consolidate import merge
from trio_books.model import BookState
from trio_books.store import BookView


def dec(n: int, places: int) -> str:
    return format(Decimal(n).scaleb(-places), "f")


def plain(x: Fraction | int) -> str:
    """The reference's spelling of an exact finite decimal (no trailing zeros)."""
    x = Fraction(x)
    places = 0
    while (x * 10**places).denominator != 1:
        places += 1
    n = int(x * 10**places)
    digits = str(abs(n)).rjust(places + 1, "0")
    text = digits[: len(digits) - places] + ("." + digits[len(digits) - places:] if places else "")
    return ("-" if n < 0 else "") + text


def ref_round(x: Fraction, places: int) -> str:
    """Half to even, by hand: floor, then compare the remainder with one half."""
    scaled = x * 10**places
    floor = scaled.numerator // scaled.denominator
    rest = scaled - floor
    n = floor + (1 if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2) else 0)
    return plain(Fraction(n, 10**places))


prices = st.builds(dec, st.integers(1, 10**9), st.integers(0, 8))
qtys = st.builds(dec, st.integers(1, 10**12), st.integers(0, 18))  # quantities with up to 18 decimals


@st.composite
def side(draw, descending: bool, min_size: int = 0):
    ps = draw(st.lists(prices, min_size=min_size, max_size=12, unique_by=lambda p: Decimal(p)))
    ps.sort(key=Decimal, reverse=descending)
    return [(p, draw(qtys)) for p in ps]


@st.composite
def book(draw, min_size: int = 0):
    """Bids below asks (the top of each side apart)."""
    asks = draw(side(False, min_size))
    bids = draw(side(True, min_size))
    if asks and bids and Decimal(bids[0][0]) >= Decimal(asks[0][0]):
        shift = Decimal(bids[0][0]) - Decimal(asks[0][0]) + 1
        asks = [(format(Decimal(p) + shift, "f"), q) for p, q in asks]
    return bids, asks


def view(bids, asks) -> BookView:
    return BookView("v", "S", BookState.LIVE, tuple(bids), tuple(asks), 1, None, None, None)


def ref_cost(levels, base: Fraction | None = None, quote: Fraction | None = None):
    """(base, quote, worst price, whether base is a quotient) of a fill, from the
    cumulative step function, or None."""
    cum_b, cum_q = [Fraction(0)], [Fraction(0)]
    for p, q in levels:
        cum_b.append(cum_b[-1] + Fraction(q))
        cum_q.append(cum_q[-1] + Fraction(p) * Fraction(q))
    if base is not None:
        if base > cum_b[-1]:
            return None
        i = next(i for i in range(1, len(cum_b)) if cum_b[i] >= base)
        return base, cum_q[i - 1] + (base - cum_b[i - 1]) * Fraction(levels[i - 1][0]), levels[i - 1][0], False
    assert quote is not None
    if quote > cum_q[-1]:
        return None
    i = next(i for i in range(1, len(cum_q)) if cum_q[i] >= quote)
    return cum_b[i - 1] + (quote - cum_q[i - 1]) / Fraction(levels[i - 1][0]), quote, levels[i - 1][0], quote < cum_q[i]


def amount(levels, frac: Fraction, of: str) -> Fraction:
    total = sum((Fraction(q) * (Fraction(p) if of == "quote" else 1) for p, q in levels), Fraction(0))
    return total * frac


fractions_ = st.fractions(min_value=Fraction(1, 1000), max_value=Fraction(3, 2), max_denominator=1000)


def to_amount(x: Fraction) -> Decimal:
    return Decimal(ref_round(x, 12) if x * 10**12 >= 1 else "0.000000000001")


@settings(max_examples=300, deadline=None)
@given(book(min_size=1), fractions_, st.sampled_from(["base", "quote"]), st.sampled_from(["buy", "sell"]))
def test_cost_matches_the_reference(b, frac, of, side_):
    bids, asks = b
    levels = asks if side_ == "buy" else bids
    want = to_amount(amount(levels, frac, of))
    got = view(bids, asks).cost(side_, **{of: want})
    ref = ref_cost(levels, **{of: Fraction(want)})
    if ref is None:
        assert got["sufficient"] is False and got["avg_price"] is None and got["error"] == "insufficient depth"
        assert got["available"]["levels"] == len(levels)
        return
    fb, fq, worst, divided = ref
    assert got["sufficient"] is True
    assert got["worst_price"] == worst and got["best_price"] == levels[0][0]
    assert got["filled"]["quote"] == plain(fq)
    assert got["filled"]["base"] == (ref_round(fb, 18) if divided else plain(fb))
    avg = fq / fb
    assert got["avg_price"] == ref_round(avg, 18)
    best, worst_ = Fraction(levels[0][0]), Fraction(worst)
    assert min(best, worst_) <= Fraction(Decimal(got["avg_price"])) <= max(best, worst_)
    mid = (Fraction(bids[0][0]) + Fraction(asks[0][0])) / 2
    signed = (avg - mid) if side_ == "buy" else (mid - avg)
    assert got["slippage_bps"] == ref_round(signed * 10_000 / mid, 4)
    assert Decimal(got["slippage_bps"]) >= 0  # the mid is inside the spread


@settings(max_examples=200, deadline=None)
@given(book(min_size=1), st.lists(fractions_, min_size=2, max_size=5), st.sampled_from(["buy", "sell"]))
def test_average_price_is_monotone_in_size(b, fracs, side_):
    bids, asks = b
    levels = asks if side_ == "buy" else bids
    v = view(bids, asks)
    avgs = []
    for frac in sorted(fracs):
        got = v.cost(side_, base=to_amount(amount(levels, frac, "base")))
        if not got["sufficient"]:
            break
        avgs.append(Decimal(got["avg_price"]))
    assert avgs == sorted(avgs, reverse=side_ == "sell")


@settings(max_examples=200, deadline=None)
@given(book(min_size=1), fractions_)
def test_buy_and_sell_are_symmetric_on_a_mirrored_book(b, frac):
    """Prices reflected about K (p -> K - p) swap the sides: a buy becomes a sell."""
    bids, asks = b
    k = max(Decimal(p) for p, _ in bids + asks) + 1
    mirror = lambda levels: [(format(k - Decimal(p), "f"), q) for p, q in levels]  # noqa: E731
    want = to_amount(amount(asks, frac, "base"))
    buy = view(bids, asks).cost("buy", base=want)
    sell = view(mirror(asks), mirror(bids)).cost("sell", base=want)
    assert buy["sufficient"] == sell["sufficient"]
    if buy["sufficient"]:
        assert buy["filled"]["base"] == sell["filled"]["base"] and buy["filled"]["levels"] == sell["filled"]["levels"]
        assert Decimal(sell["avg_price"]) == k - Decimal(buy["avg_price"])
        assert Decimal(sell["worst_price"]) == k - Decimal(buy["worst_price"])


@settings(max_examples=150, deadline=None)
@given(st.lists(book(min_size=1), min_size=2, max_size=4), fractions_, st.sampled_from(["base", "quote"]),
       st.sampled_from(["buy", "sell"]))
def test_consolidated_cost_is_the_merge_of_per_venue_fills(books, frac, of, side_):
    """Venues may cross each other; each venue's share is what it alone gives for that share."""
    per = {f"v{i}": (analytics.Ladder(b, f"v{i}"), analytics.Ladder(a, f"v{i}")) for i, (b, a) in enumerate(books)}
    bids, asks = map(list, merge(per))
    merged = asks if side_ == "buy" else bids
    raw = [(x.text, format(x.qty, "f")) for x in merged]
    want = to_amount(amount(raw, frac, of))
    got = analytics.cost(side_, merged, analytics.mid_price(bids, asks), **{of: want})
    ref = ref_cost(raw, **{of: Fraction(want)})
    assert got["sufficient"] == (ref is not None)
    if ref is None:
        return
    assert got["filled"]["quote"] == plain(ref[1]) and got["worst_price"] == ref[2]
    assert sum(Fraction(Decimal(f["quote"])) for f in got["fills"]) == ref[1]
    for fill in got["fills"]:
        own = per[fill["source"]][1 if side_ == "buy" else 0]
        alone = analytics.cost(side_, own, None, quote=Decimal(fill["quote"]))
        assert alone["sufficient"] and alone["filled"]["quote"] == fill["quote"]
        assert alone["worst_price"] == fill["worst_price"] and alone["filled"]["levels"] == fill["levels"]
        if of == "base":
            assert alone["filled"]["base"] == fill["base"]


@settings(max_examples=300, deadline=None)
@given(book(), st.integers(1, 6), st.lists(st.builds(dec, st.integers(1, 10**6), st.integers(0, 3)), max_size=3))
def test_stats_match_the_formulas(b, top, bands):
    bids, asks = b
    got = view(bids, asks).stats(top, bands)
    assert got["best_bid"] == (list(bids[0]) if bids else None) and got["best_ask"] == (list(asks[0]) if asks else None)
    B = sum((Fraction(q) for _, q in bids[:top]), Fraction(0))
    A = sum((Fraction(q) for _, q in asks[:top]), Fraction(0))
    assert got["imbalance"] == {"levels": top, "value": ref_round((B - A) / (B + A), 18) if B + A else None}
    if not (bids and asks):
        assert got["mid"] is got["spread"] is got["micro_price"] is None
        assert all(v is None for v in got["depth"].values())
        return
    (bp, bq), (ap, aq) = (map(Fraction, bids[0]), map(Fraction, asks[0]))
    mid = (bp + ap) / 2
    assert got["mid"] == plain(mid) and got["spread"] == plain(ap - bp)
    assert got["spread_bps"] == ref_round((ap - bp) / mid * 10_000, 4)
    assert got["micro_price"] == ref_round((bp * aq + ap * bq) / (aq + bq), 18)
    for band in bands:
        d = got["depth"][plain(Fraction(band))]
        for name, levels, inside in (("bids", bids, lambda p: p >= mid * (1 - Fraction(band) / 10_000)),
                                     ("asks", asks, lambda p: p <= mid * (1 + Fraction(band) / 10_000))):
            sel = [(Fraction(p), Fraction(q)) for p, q in levels if inside(Fraction(p))]
            assert d[name]["base"] == plain(sum((q for _, q in sel), Fraction(0)))
            assert d[name]["quote"] == plain(sum((p * q for p, q in sel), Fraction(0)))
            assert d[name]["levels"] == len(sel) and d[name]["complete"] == (len(sel) < len(levels))


def test_edge_cases():
    v = view([("100", "1")], [])
    st_ = v.stats()
    assert st_["best_ask"] is None and st_["mid"] is None and st_["spread_bps"] is None
    assert st_["imbalance"]["value"] == "1"
    buy = v.cost("buy", base="0.1")  # an empty side: insufficient, never a guess
    assert buy["sufficient"] is False and buy["available"] == {"base": "0", "quote": "0", "levels": 0}
    sell = v.cost("sell", base="1")  # exactly the book
    assert sell["sufficient"] and sell["avg_price"] == "100" and sell["mid"] is None and sell["slippage_bps"] is None
    assert v.cost("sell", base="1.000000000000000001")["sufficient"] is False
    tiny = view([("0.00000001", "123456789012.123456789012345678")], [("0.00000003", "0.000000000000000001")])
    s = tiny.stats()
    assert s["mid"] == "0.00000002" and s["spread_bps"] == "10000"
    assert tiny.cost("buy", base="0.000000000000000001")["filled"]["quote"] == "0.00000000000000000000000003"
    third = view([], [("3", "10")]).cost("buy", quote="1")
    assert third["filled"]["base"] == "0.333333333333333333" and third["avg_price"] == "3"  # from the exact 1/3
    with pytest.raises(ValueError):
        v.cost("hold", base="1")
    with pytest.raises(ValueError):
        v.cost("buy", base="1", quote="1")
    for bad in ("abc", "-1", "0", "1e3", Decimal("NaN")):
        with pytest.raises(ValueError, match="base must be a plain decimal number above 0"):
            v.cost("sell", base=bad)


def test_rounding_is_half_to_even_once():
    assert analytics.rounded(Fraction(5, 10**19)) == Decimal("0E-18")  # 0.0000…05 → 0 (even)
    assert analytics.rounded(Fraction(15, 10**19)) == Decimal("2E-18")
    assert analytics.rounded(Fraction(1, 3), 4) == Decimal("0.3333")
    assert analytics.show(Decimal("1.500")) == "1.5" and analytics.show(Decimal("1E+3")) == "1000"
    assert analytics.show(Decimal("-0.0")) == "0"
