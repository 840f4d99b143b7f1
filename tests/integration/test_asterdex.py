"""AsterDEX futures against its fake over real loopback sockets, in process.

Every shared test of the Binance USD-M family runs here again with the Aster
fake (``fake_cls`` is overridden below): same protocol, Aster's paths, limits
and heartbeat.
"""

from __future__ import annotations

import attrs
import pytest
import trio

from tests.integration.test_binance_futures import (  # noqa: F401 - collected here with Aster's fake
    config,
    start,
    test_a_late_snapshot_bridges_on_pu_without_a_refetch,
    test_drop_malformed_and_duplicate,
    test_gap_resyncs_that_book_alone,
    test_live_equals_truth,
    test_quiet_start_bridges_on_pu,
    test_rest_429_blocks_the_venue_and_retries_that_fetch,
    test_rest_5xx_is_retried_within_the_attempt,
    test_silence_ends_the_attempt_at_the_watchdog,
    test_subscribe_rejection_backs_off,
    test_subscription_that_never_delivers_is_no_data,
    wait_failure,
)
from trio_books.runner import Books, build_store
from trio_books.supervise import supervise_venue
from trio_books.testing import FakeAsterdexFutures
from trio_books.venues.asterdex import ASTER, ASTERDEX_FUTURES
from trio_books.venues.binance import feed_factory


@pytest.fixture
def fake_cls():
    return FakeAsterdexFutures


async def test_a_binance_style_public_route_is_refused(nursery):
    """Aster has no ``/public`` route: the fake refuses it like any unknown path
    (so the live tests above prove the venue connects unrouted)."""
    fake = await start(nursery, FakeAsterdexFutures)
    cfg = config(fake)
    routed = attrs.evolve(ASTERDEX_FUTURES, connect=feed_factory(attrs.evolve(ASTER, route="/public")))
    store = build_store(cfg)
    books = Books(store)
    async with trio.open_nursery() as inner:
        inner.start_soon(supervise_venue, routed, cfg.venues["asterdex_futures"], cfg.service, store)
        with trio.fail_after(10):
            await wait_failure(books, "asterdex_futures", "close", at_least=2)
        assert fake.paths[0].startswith("/public/stream?streams=btcusdt@depth@100ms")
        assert fake.muted_connections == 0 and fake.snapshot_requests == 0
        inner.cancel_scope.cancel()
