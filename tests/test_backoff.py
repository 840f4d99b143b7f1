from __future__ import annotations

from trio_books.backoff import AttemptBudget, backoff_delay


def test_full_jitter_grows_and_caps():
    assert backoff_delay(0) == 0
    assert backoff_delay(1, rng=lambda: 1.0) == 1.0
    assert backoff_delay(3, rng=lambda: 1.0) == 4.0
    assert backoff_delay(50, rng=lambda: 1.0) == 30.0
    assert backoff_delay(10_000, rng=lambda: 0.5) == 15.0  # no overflow
    assert backoff_delay(2, rng=lambda: 0.0) == 0.1  # a floor, so a failing venue cannot spin


def test_attempt_budget_is_a_sliding_window():
    b = AttemptBudget(3, 10.0)
    for t in (0.0, 1.0, 2.0):
        assert b.delay(t) == 0
        b.record(t)
    assert b.delay(3.0) == 7.0
    assert b.delay(10.5) == 0.0
