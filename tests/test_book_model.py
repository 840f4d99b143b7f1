"""OrderBook against a trivially correct model: a dict keyed by the exact Decimal
value of the price, sorted on every read. Prices come in many plain spellings (trailing
zeros, more digits than a double holds, tiny and huge values) so that
the book's sort keys (float where exact, else Decimal) are exercised at their edges."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_books.book import OrderBook, _float_key


def spellings(d: Decimal) -> list[str]:
    """The plain spellings a venue may send (the book takes no exponent form)."""
    plain = format(d, "f")
    out = [plain] + [x for x in (str(d),) if "E" not in x and x != plain]
    if "." in plain:
        out.append(plain + "00")
    else:
        out.append(plain + ".0")
    return out


# values that differ only beyond a double's 15-16 digits, plus ordinary, tiny and huge ones
BASES = [Decimal(x) for x in (
    "1", "1.0000000000000001", "1.0000000000000002", "0.99999999999999999", "0.1", "0.3", "0.30000000000000004",
    "100000.01", "100000.009999999999", "65083.66", "65083.67", "7", "12345678901234567", "12345678901234568",
    "123456789012345678901234567890.123456789", "1E-300", "1E-320", "1.5E-320", "9E+300", "9.000000000000001E+300",
    "0.00000001", "0.000000010", "2.5", "2.49999999999999999999", "0.299999999999999", "0.300000000000001",
    "999999999999999", "999999999999998", "1E+289", "1.00000000000001E-280", "1E-291",
)]
price = st.sampled_from(BASES).flatmap(lambda d: st.sampled_from(spellings(d)))
qty = st.sampled_from(["0", "0.000", "0.00000000", "0.0", "1", "2.50", "0.00000001", "0." + "0" * 399 + "1", "3", "12345.678"])
levels = st.lists(st.tuples(price, qty), max_size=6)


class Model:
    def __init__(self, depth):
        self.depth = depth
        self.sides = {True: {}, False: {}}

    def apply(self, bids, asks):
        for is_bid, lv in ((True, bids), (False, asks)):
            side = self.sides[is_bid]
            for p, q in lv:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = (p, q)
        if self.depth is not None:
            for is_bid in (True, False):
                keep = self.top(is_bid)[: self.depth]
                self.sides[is_bid] = {Decimal(p): (p, q) for p, q in keep}

    def top(self, is_bid):
        side = self.sides[is_bid]
        return [side[k] for k in sorted(side, reverse=is_bid)]


def check(book: OrderBook, model: Model) -> None:
    bids, asks = model.top(True), model.top(False)
    assert book.top_bids() == bids
    assert book.top_asks() == asks
    assert book.top_bids(3) == bids[:3] and book.top_asks(2) == asks[:2]
    assert book.best_bid() == (bids[0] if bids else None)
    assert book.best_ask() == (asks[0] if asks else None)
    assert len(book) == len(bids) + len(asks)
    assert len(book.bids) == len(bids) and len(book.asks) == len(asks)
    assert book.bids.values() == bids and list(book.asks.values()) == asks
    if bids:
        assert book.bids.peekitem(0)[1] == bids[0] and book.bids.peekitem(-1)[1] == bids[-1]
    crossed = bool(bids) and bool(asks) and Decimal(bids[0][0]) >= Decimal(asks[0][0])
    assert book.is_crossed() == crossed


@settings(max_examples=400, deadline=None)
@given(
    depth=st.one_of(st.none(), st.integers(min_value=1, max_value=6)),
    ops=st.lists(st.tuples(st.sampled_from(["apply", "apply", "apply", "snapshot", "clear"]), levels, levels), max_size=40),
)
def test_book_matches_the_decimal_model(depth, ops):
    book, model = OrderBook(depth), Model(depth)
    for op, bids, asks in ops:
        if op == "snapshot":
            book.apply_snapshot(bids, asks)
            model = Model(depth)
            model.apply(bids, asks)
        elif op == "clear":
            book.clear()
            model = Model(depth)
        else:
            book.apply(bids, asks)
            model.apply(bids, asks)
        check(book, model)


def test_float_keys_are_exact_among_prices_that_get_them():
    floats = {d: _float_key(d) for d in BASES}
    assert floats[Decimal("1.0000000000000001")] is None and floats[Decimal("1E-320")] is None  # these switch to Decimal
    usable = [d for d, f in floats.items() if f is not None]
    assert len(usable) > 12
    for a in usable:
        for b in usable:
            fa, fb = floats[a], floats[b]
            assert (fa == fb) == (a == b) and (fa < fb) == (a < b) and (-fa < -fb) == (a > b)


def test_one_long_price_switches_the_whole_book_to_decimal_keys():
    # 100000.01 as a float is 100000.0099999999947…, below the 18-digit price: mixing kinds would misorder them
    book = OrderBook()
    book.apply([("100000.009999999999", "1")], [("100000.01", "2")])
    assert book.top_asks() == [("100000.01", "2")] and book.top_bids() == [("100000.009999999999", "1")]
    assert not book.is_crossed()
    book = OrderBook()
    book.apply([("100000.01", "1"), ("99999", "1")], [("100000.02", "1")])
    book.apply([], [("100000.009999999999", "1")])  # switches after float keys were in use
    assert book.is_crossed()
    assert book.top_asks() == [("100000.009999999999", "1"), ("100000.02", "1")]
    assert book.top_bids() == [("100000.01", "1"), ("99999", "1")]
    book.apply([("100000.010", "0")], [("100000.009999999999", "0")])
    assert book.top_bids() == [("99999", "1")] and not book.is_crossed()
    book.apply_snapshot([("5", "1")], [("6", "1")])  # cleared: float keys again, still exact
    book.apply([("5.0000000000000001", "1")], [])
    assert book.top_bids() == [("5.0000000000000001", "1"), ("5", "1")]


def test_prices_beyond_a_double_stay_distinct_levels():
    book = OrderBook()
    book.apply([("1", "1"), ("1.0000000000000001", "2"), ("0.99999999999999999", "3")], [])
    assert book.top_bids() == [("1.0000000000000001", "2"), ("1", "1"), ("0.99999999999999999", "3")]
    book.apply([("1.00", "0")], [])
    assert book.top_bids() == [("1.0000000000000001", "2"), ("0.99999999999999999", "3")]


def test_prices_longer_than_decimal_precision_stay_exact_on_both_sides():
    # Decimal's unary minus rounds to the context's 28 digits: a negated key must not
    # (two bids that differ in the 40th digit were once one level; a crossed book looked fine)
    p1, p2 = "123456789012345678901234567890.1234567891", "123456789012345678901234567890.1234567892"
    book = OrderBook()
    book.apply([(p1, "1"), (p2, "2")], [(p1 + "5", "3"), (p2 + "5", "4")])
    assert book.top_bids() == [(p2, "2"), (p1, "1")]
    assert book.top_asks() == [(p1 + "5", "3"), (p2 + "5", "4")]
    assert book.is_crossed()  # the best bid p2 is above the best ask p1…5
    book.apply([(p2, "0")], [])
    assert book.top_bids() == [(p1, "1")] and not book.is_crossed()
    book.apply([], [(p1 + "5", "0"), (p1, "9")])  # an ask equal to the best bid crosses
    assert book.top_asks() == [(p1, "9"), (p2 + "5", "4")] and book.is_crossed()
