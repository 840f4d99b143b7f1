from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_books.book import OrderBook, levels_equal
from trio_books.errors import BadFrame


def test_sides_are_sorted_best_first_and_keep_the_venue_text():
    b = OrderBook()
    b.apply_snapshot([("99.50", "1"), ("100.0", "2"), ("98", "3")], [("101.25", "1"), ("100.5", "4")])
    assert b.top_bids() == [("100.0", "2"), ("99.50", "1"), ("98", "3")]
    assert b.top_asks() == [("100.5", "4"), ("101.25", "1")]
    assert b.best_bid() == ("100.0", "2") and b.best_ask() == ("100.5", "4")


def test_zero_removes_and_two_spellings_are_one_level():
    b = OrderBook()
    b.apply([("0.10", "5")], [])
    b.apply([("0.1", "7")], [])
    assert b.top_bids() == [("0.1", "7")]
    b.apply([("0.100", "0.00000000")], [])
    assert b.top_bids() == []
    b.apply([("5", "0")], [])  # deleting an absent level is normal


def test_truncates_to_depth_after_every_change():
    b = OrderBook(depth=2)
    b.apply([("1", "1"), ("2", "1"), ("3", "1")], [("4", "1"), ("6", "1"), ("5", "1")])
    assert b.top_bids() == [("3", "1"), ("2", "1")]
    assert b.top_asks() == [("4", "1"), ("5", "1")]


def test_crossed_detection():
    b = OrderBook()
    b.apply([("10", "1")], [("11", "1")])
    assert not b.is_crossed()
    b.apply([], [("10", "1")])
    assert b.is_crossed()


@pytest.mark.parametrize("level", [("abc", "1"), ("1", "x"), ("1", "-1"), ("NaN", "1"), ("-5", "1"), ("1", "Infinity"), (1.5, "1"), ("1", 2), ("1",), "12"])
def test_bad_levels_are_bad_frames(level):
    with pytest.raises(BadFrame):
        OrderBook().apply([level], [])


def test_huge_numbers_are_exact():
    b = OrderBook()
    b.apply([("123456789012345678901234567890.123456789", "0.00000001")], [])
    assert b.top_bids() == [("123456789012345678901234567890.123456789", "0.00000001")]


@pytest.mark.parametrize("bad", [" 1.0", "1.0 ", "1_000", "+5", "-5", "1E-8", "1e3", "١٢", "²", "1.2.3", ".", "", "NaN", "Infinity"])
def test_only_the_venues_number_grammar_is_a_number(bad):
    """ASCII digits and at most one dot; ``Decimal()`` alone takes all of these
    (Kraken's exponent forms are made plain by its parser before the book)."""
    for level in ((bad, "1"), ("100.5", bad)):
        with pytest.raises(BadFrame):
            OrderBook().apply([level], [])


prices = st.integers(min_value=1, max_value=10_000).map(lambda t: f"{t // 100}.{t % 100:02d}")
qtys = st.integers(min_value=0, max_value=1000).map(str)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), prices, qtys), max_size=200))
def test_book_matches_a_dict_model(ops):
    b = OrderBook()
    model = {True: {}, False: {}}
    for is_bid, price, qty in ops:
        b.apply([(price, qty)] if is_bid else [], [] if is_bid else [(price, qty)])
        if qty == "0":
            model[is_bid].pop(float(price), None)  # floats only as the model's sort key
        else:
            model[is_bid][float(price)] = (price, qty)
    assert b.top_bids() == [model[True][k] for k in sorted(model[True], reverse=True)]
    assert b.top_asks() == [model[False][k] for k in sorted(model[False])]


def test_levels_equal_is_numeric():
    assert levels_equal([("1.50", "2")], [("1.5", "2.000")])
    assert not levels_equal([("1.50", "2")], [("1.5", "2.001")])


def test_a_full_price_cache_keeps_only_the_held_prices():
    """A market that trends through thousands of prices: the price-key cache
    stays bounded (2 × depth, at least 1024) and the book stays exact."""
    b = OrderBook(depth=50)
    model: dict[float, tuple[str, str]] = {}
    for t in range(1, 5000):
        price = f"{t // 100}.{t % 100:02d}"
        b.apply([(price, "1.5")], [])
        model[float(price)] = (price, "1.5")
        if t > 60:  # the market moves up: the oldest bids go
            old = t - 60
            b.apply([(f"{old // 100}.{old % 100:02d}", "0")], [])
            model.pop(old / 100, None)
        assert len(b._bid_keys) <= 1024
    assert b.top_bids() == [model[k] for k in sorted(model, reverse=True)][:50]
    assert {p for p, _ in b.top_bids()} <= set(b._bid_keys)  # the held prices survive a prune: they still hit
