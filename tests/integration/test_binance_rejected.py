"""A symbol the venue does not list, next to two it does, on the Binance family.

Binance answers ``GET /api/v3/depth`` (``/fapi/v1/depth``; Aster ``/fapi/v3/depth``)
for an unknown symbol with HTTP 400 ``{"code":-1121,"msg":"Invalid symbol."}``,
while its stream connects and simply never sends anything. The book is
``rejected`` with the venue's text, retried alone with a slow backoff (the
configured ``rejected_retry``, doubling), and neither the connection nor the
two valid books ever notice. All in virtual time (MockClock).
"""

from __future__ import annotations

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from trio_books import BookState, load_config_text, open_books
from trio_books.testing import fake_for
from trio_books.testing.harness import LiveWatch, converge, pauses, view_top

VENUES = ["binance_spot", "binance_futures", "asterdex_futures"]
LISTED = ["BTCUSDT", "ETHUSDT"]
UNLISTED = "NOPEUSDT"


@pytest.mark.parametrize("venue", VENUES)
async def test_an_unlisted_symbol_is_rejected_alone_and_retried_slowly(nursery, pacer, autojump_clock, venue):
    fake = await nursery.start(fake_for(venue)(LISTED, rate=5, levels=20).serve)
    # audit_interval = 0: the drift audit's own snapshots of the live books are not what this counts
    toml = fake.config_toml(depth=100, audit_interval=0).replace('"ETHUSDT"]', f'"ETHUSDT", "{UNLISTED}"]')
    cfg = load_config_text(toml)
    assert cfg.venues[venue].symbols == (*LISTED, UNLISTED) and cfg.venues[venue].rejected_retry == 60.0
    async with open_books(cfg) as books:
        with trio.fail_after(30):
            for s in LISTED:
                await books.wait_live(venue, s)
            await books.wait_state(venue, UNLISTED, BookState.REJECTED)
        with LiveWatch(books.store, venue, LISTED) as watch:
            await trio.sleep(8 * 60)  # four refusals: at once, then after 60, 120 and 240 s
            for s in LISTED:
                await converge(view_top(books, venue, s), fake, s)
        assert watch.steps > 1000 and watch.not_live == [], watch.not_live[:5]
        stats = books.statistics()[venue]
        assert books.state(venue, UNLISTED) is BookState.REJECTED and stats.state == "rejected"
        error = stats.book_errors[UNLISTED]
        assert error.startswith(f"rejected: {UNLISTED}: snapshot refused") and '{"code":-1121,"msg":"Invalid symbol."}' in error
        assert set(stats.book_errors) == {UNLISTED}
        assert stats.book_resyncs == {"rejected": 4} and stats.resyncs == 0
        assert dict(books.store.entry(venue, UNLISTED).resyncs) == {"rejected": 4}
        assert stats.failures == {} and stats.attempts == 1 and fake.connections_accepted == 1
    asked = [t for t, path in fake.rest_log if f"symbol={UNLISTED}&" in path]
    assert asked[0] <= 1.1  # a stream with no event gets its snapshot after 1 s
    assert [round(p, 1) for p in pauses(asked)] == [60.0, 120.0, 240.0]
    for s in LISTED:  # the valid books were fetched once each: nothing of the refusal touched them
        assert sum(f"symbol={s}&" in path for _, path in fake.rest_log) == 1


async def test_the_fake_refuses_an_unlisted_symbol_as_binance_does(nursery):
    """The fake's behaviour the test above relies on: HTTP 400 -1121 on REST; the
    stream named in the URL (or subscribed later) is accepted and stays silent."""
    fake = await nursery.start(fake_for("binance_spot")(LISTED, rate=0).serve)
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{fake.rest_url}/api/v3/depth?symbol={UNLISTED}&limit=100")
    assert resp.status_code == 400 and resp.json() == {"code": -1121, "msg": "Invalid symbol."}
    url = f"{fake.ws_url}/stream?streams=btcusdt@depth@100ms/{UNLISTED.lower()}@depth@100ms"
    with trio.fail_after(10):
        await check_silent_stream(fake, url)


async def check_silent_stream(fake, url: str) -> None:
    async with open_websocket_url(url) as ws:
        await ws.send_message('{"method":"SUBSCRIBE","params":["zzzusdt@depth@100ms"],"id":7}')
        assert await ws.get_message() == '{"result":null,"id":7}'
        await fake.burst(1)
        frame = await ws.get_message()
        assert '"s":"BTCUSDT"' in frame  # the listed stream is served; the unlisted one sends nothing
        (client,) = fake.clients
        assert client.symbols == {"BTCUSDT"} and not client.closed
