"""Bybit spot and linear, book failure domains: how the parser attributes a
refusal (no sockets), then against the fakes (MockClock, real loopback
sockets) a symbol the venue refuses next to two it serves, and a connection at
the most topics it takes, with a gap in one of its books. A Trio instrument
(LiveWatch) checks the healthy books at every scheduling step."""

from __future__ import annotations

import orjson
import pytest
import trio

from tests.venues.test_bybit import book_frame, feed
from trio_books import load_config_text, open_books
from trio_books.errors import SymbolRejected, VenueRejected
from trio_books.model import Reply
from trio_books.testing import FakeBybitFutures, FakeBybitSpot
from trio_books.testing.harness import LiveWatch, converge, refused_alone, view_top
from trio_books.venues.bybit import BYBIT_FUTURES, BYBIT_SPOT

PRODUCTS = [pytest.param(FakeBybitSpot, id="spot"), pytest.param(FakeBybitFutures, id="linear")]
GOOD = ["BTCUSDT", "ETHUSDT"]
BAD = "XYZUSDT"  # not listed by the fake: "error:handler not found,topic:orderbook.50.XYZUSDT"


def config(fake, symbols, **extra):
    lines = [f"[venues.{fake.venue_id}]", "symbols = [" + ", ".join(f'"{s}"' for s in symbols) + "]",
             f'ws_url = "{fake.ws_url}"', "depth = 50", "backoff_base = 0.1", "backoff_cap = 0.2"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return load_config_text("\n".join(lines) + "\n")


def refusal(ret_msg: str, req_id: str = "", op: str = "subscribe") -> str:
    """A failure ack in the captured linear shape."""
    return orjson.dumps({"success": False, "ret_msg": ret_msg, "conn_id": "da7tne17jutmkv5im010-bcdap",
                         "req_id": req_id, "op": op}).decode()


def test_a_refusal_names_the_symbol_and_its_request_is_split():
    proto = feed(BYBIT_FUTURES, ("BTCUSDT", "XYZUSDT", "ETHUSDT"), depth=50)
    # the captured refusal names a topic that is not ours and no request of ours: the connection's
    with pytest.raises(VenueRejected, match=r"error:handler not found,topic:publicTrade\.NOTASYMBOL"):
        proto.parse(refusal("error:handler not found,topic:publicTrade.NOTASYMBOL"))
    assert [(orjson.loads(s.frame)["req_id"], s.symbols) for s in proto.subscribe()] == [("1", ("BTCUSDT", "XYZUSDT", "ETHUSDT"))]
    proto.parse(book_frame("snapshot", 5, symbol="BTCUSDT"))  # BTCUSDT is live already
    rejected, retry = proto.parse(refusal("error:handler not found,topic:orderbook.50.XYZUSDT", "1"))
    assert type(rejected) is SymbolRejected and str(rejected) == "XYZUSDT: venue refused subscribe: error:handler not found,topic:orderbook.50.XYZUSDT"
    # what Bybit did with ETHUSDT is unknown: it is asked for alone (BTCUSDT has its snapshot)
    assert type(retry) is Reply and orjson.loads(retry.text) == {"req_id": "2", "op": "subscribe", "args": ["orderbook.50.ETHUSDT"]}
    # ... and "already subscribed" (it was, after all) is harmless
    assert proto.parse(refusal("error:already subscribed,topic:orderbook.50.ETHUSDT", "2")) == []


def test_refusals_of_one_topic_requests_and_resyncs():
    proto = feed(BYBIT_SPOT, ("BTCUSDT", "ETHUSDT"), depth=50)
    proto.subscribe()
    unsub, sub = proto.resubscribe("ETHUSDT")
    assert [(orjson.loads(f.frame), f.symbols) for f in (unsub, sub)] == [
        ({"req_id": "2", "op": "unsubscribe", "args": ["orderbook.50.ETHUSDT"]}, ("ETHUSDT",)),
        ({"req_id": "3", "op": "subscribe", "args": ["orderbook.50.ETHUSDT"]}, ("ETHUSDT",))]
    assert proto.parse(refusal("error:handler not found,topic:orderbook.50.ETHUSDT", "2", "unsubscribe")) == []  # nothing to drop
    # a refusal naming no topic of ours, of a one-topic request: that topic's
    (fault,) = proto.parse(refusal("error:invalid topic", "3"))
    assert type(fault) is SymbolRejected and fault.symbol == "ETHUSDT"
    (only,) = proto.resubscribe("ETHUSDT", unsubscribe=False)  # a refused symbol's retry: no unsubscribe
    assert orjson.loads(only.frame) == {"req_id": "4", "op": "subscribe", "args": ["orderbook.50.ETHUSDT"]}
    proto.resubscribe("BTCUSDT")  # requests 5 and 6
    with pytest.raises(VenueRejected, match=r"venue refused unsubscribe: error:invalid op \(request 5"):
        proto.parse(refusal("error:invalid op", "5", "unsubscribe"))  # not a refusal of the symbol


def test_a_refused_batch_is_split_once_and_each_symbol_reported_once():
    # were Bybit to answer each bad topic of a request (undocumented), and the split's too
    proto = feed(BYBIT_SPOT, ("AUSDT", "BUSDT", "CUSDT", "DUSDT"), depth=50)
    proto.subscribe()
    fault, *split = proto.parse(refusal("error:handler not found,topic:orderbook.50.BUSDT", "1"))
    assert fault.symbol == "BUSDT" and [orjson.loads(r.text)["args"] for r in split] == [[f"orderbook.50.{c}USDT"] for c in "ACD"]
    (second,) = proto.parse(refusal("error:handler not found,topic:orderbook.50.CUSDT", "1"))  # no second split
    assert second.symbol == "CUSDT"
    assert proto.parse(refusal("error:handler not found,topic:orderbook.50.CUSDT", "3")) == []  # the split's: reported
    # a request of several topics refused with no topic named: the connection's
    proto = feed(BYBIT_SPOT, ("AUSDT", "BUSDT"), depth=50)
    proto.subscribe()
    with pytest.raises(VenueRejected, match=r"fake: at most 10 args \(request 1: orderbook.50.AUSDT, orderbook.50.BUSDT\)"):
        proto.parse(refusal("fake: at most 10 args", "1"))


@pytest.mark.parametrize("partial", [False, True], ids=["request-refused", "good-topics-subscribed"])
@pytest.mark.parametrize("fake_cls", PRODUCTS)
async def test_a_rejected_symbol_next_to_two_valid_ones(nursery, pacer, autojump_clock, fake_cls, partial):
    # Whether Bybit subscribes the good topics of a request with a bad one is not
    # documented: the fake does either, and both must end the same way.
    fake = await nursery.start(fake_cls(GOOD, rate=5, levels=30, partial_subscribe=partial).serve)
    venue = fake.venue_id
    async with open_books(config(fake, [GOOD[0], BAD, GOOD[1]], rejected_retry=60.0)) as books:
        stats = await refused_alone(books, fake, venue, GOOD, BAD)  # refused, retried alone after 60 s, then 120 s later
        started = fake.requests[0].at  # the one request of all three topics
        assert stats.book_errors == {BAD: f"rejected: {BAD}: venue refused subscribe: error:handler not found,topic:orderbook.50.{BAD}"}
        assert fake.connections_accepted == 1
        retries = [r for r in fake.requests if r.args == [f"orderbook.50.{BAD}"]]
        assert [r.op for r in retries] == ["subscribe", "subscribe"]  # never unsubscribed: never subscribed
        assert [round(retries[0].at - started), round(retries[1].at - retries[0].at)] == [60, 120]
        # the good topics were asked for again alone; the fake that had subscribed them says so
        unknown = f"error:handler not found,topic:orderbook.50.{BAD}"
        already = [f"error:already subscribed,topic:orderbook.50.{s}" for s in GOOD] if partial else []
        assert fake.refusals == [unknown, *already, unknown, unknown]
        assert not books.store.entry(venue, GOOD[0]).resyncs and not books.store.entry(venue, GOOD[1]).resyncs


@pytest.mark.parametrize("fake_cls,venue", [(FakeBybitSpot, BYBIT_SPOT), (FakeBybitFutures, BYBIT_FUTURES)], ids=["spot", "linear"])
async def test_the_most_topics_a_connection_takes_go_live_then_a_gap_resyncs_one_book(nursery, pacer, autojump_clock, fake_cls, venue):
    n = venue.max_symbols_per_connection
    symbols = [f"S{i:03d}USDT" for i in range(n)]
    fake = await nursery.start(fake_cls(symbols, rate=1, levels=10).serve)
    async with open_books(config(fake, symbols)) as books:
        with trio.fail_after(60):
            await books.wait_live(venue.id)
        assert fake.connections_accepted == 1
        assert [len(r.args) for r in fake.requests] == [10] * (n // 10)  # spot's most per request, on both
        sick = symbols[n // 2]
        healthy = [s for s in symbols if s != sick]
        with LiveWatch(books.store, venue.id, healthy) as watch:
            await trio.sleep(10)  # 4,000 updates on the connection
            fake.skip_next_update(sick)
            entry = books.store.entry(venue.id, sick)
            with trio.fail_after(60):
                while not entry.resyncs:
                    await trio.sleep(0.05)
                await books.wait_live(venue.id, sick)
            for s in (symbols[0], sick, symbols[-1]):
                await converge(view_top(books, venue.id, s), fake, s, timeout=30)
        assert watch.steps > 1000 and watch.not_live == []
        stats = books.statistics()[venue.id]
        assert stats.book_resyncs == {"gap": 1} and dict(entry.resyncs) == {"gap": 1}
        assert stats.failures == {} and stats.reconnects == 0 and fake.connections_accepted == 1
        capacity = books.store.venues[venue.id].channel_capacity
        assert books.store.venues[venue.id].channel_high_water < capacity // 20
        topic = f"orderbook.50.{sick}"
        assert [(r.op, r.args) for r in fake.requests[n // 10:]] == [("unsubscribe", [topic]), ("subscribe", [topic])]
