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


def test_backoff_assertion_helpers_reject_storms_and_overlong_pauses():
    import pytest

    from trio_books.testing.harness import assert_exact_backoff, assert_full_jitter

    assert_full_jitter([0.0, 0.9, 2.5, 6.0, 13.0], fewer_than=6, grown=(2, 2.0))
    with pytest.raises(AssertionError):
        assert_full_jitter([0.0, 1.7])  # the first pause is at most 1 s (+ slack)
    with pytest.raises(AssertionError):
        assert_full_jitter([0.1 * i for i in range(30)], fewer_than=20)  # a storm
    with pytest.raises(AssertionError):
        assert_full_jitter([0.0, 0.5, 1.0, 1.5], grown=(1, 1.0))  # never grew
    assert_exact_backoff([0.0, 1.1, 3.2, 7.3, 15.4])
    with pytest.raises(AssertionError):
        assert_exact_backoff([0.0, 0.5, 2.5, 6.5, 14.5])  # shorter than the delay
    with pytest.raises(AssertionError):
        assert_exact_backoff([0.0, 1.0, 3.0])  # too few attempts
