"""Tried as a trader would, on all nine venues' fakes at once: the /stats and
/cost figures of each live book equal, to the last digit, a hand computation
(``decimal`` with ``quantize``, not the module's Fractions) from ``/books`` at
the same ``seq``; a cost larger than the book says so."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from urllib.parse import quote as urlquote

import httpx
import trio

from trio_books import load_config_text
from trio_books.demo import DEMO_SYMBOLS
from trio_books.model import BookState
from trio_books.runner import Books, build_store, run_venues
from trio_books.serve.app import build_app, serve_http
from trio_books.testing import fake_for
from trio_books.venues import available

BANDS = ("5", "25", "100")


def text(d: Decimal) -> str:
    s = format(d, "f")
    s = s.rstrip("0").rstrip(".") if "." in s else s
    return "0" if s in ("", "-0") else s


def q(d: Decimal, places: int) -> str:
    return text(d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN))


def by_hand(book: dict, top: int) -> dict:
    """The figures from the formulas in the README, with 200-digit decimals."""
    with localcontext() as ctx:
        ctx.prec = 200
        bids = [(Decimal(p), Decimal(s)) for p, s in book["bids"]]
        asks = [(Decimal(p), Decimal(s)) for p, s in book["asks"]]
        (bp, bq), (ap, aq) = bids[0], asks[0]
        mid = (bp + ap) / 2
        b, a = sum(s for _, s in bids[:top]), sum(s for _, s in asks[:top])
        out = {"best_bid": book["bids"][0], "best_ask": book["asks"][0], "mid": text(mid), "spread": text(ap - bp),
               "spread_bps": q((ap - bp) / mid * 10000, 4), "micro_price": q((bp * aq + ap * bq) / (aq + bq), 18),
               "imbalance": {"levels": top, "value": q((b - a) / (b + a), 18)}, "depth": {}}
        for band in BANDS:
            lo, hi = mid * (1 - Decimal(band) / 10000), mid * (1 + Decimal(band) / 10000)
            sides = {}
            for name, levels, inside in (("bids", bids, lambda p: p >= lo), ("asks", asks, lambda p: p <= hi)):
                sel = [(p, s) for p, s in levels if inside(p)]
                sides[name] = {"bound": text(lo if name == "bids" else hi), "base": text(sum((s for _, s in sel), Decimal(0))),
                               "quote": text(sum((p * s for p, s in sel), Decimal(0))), "levels": len(sel),
                               "complete": len(sel) < len(levels)}
            out["depth"][band] = sides
        return out


def buy_by_hand(asks: list, base: Decimal, mid: Decimal) -> dict:
    with localcontext() as ctx:
        ctx.prec = 200
        left, paid, worst = base, Decimal(0), None
        for p, s in asks:
            take = min(left, Decimal(s))
            paid += take * Decimal(p)
            left -= take
            worst = p
            if not left:
                break
        avg = paid / base
        return {"quote": text(paid), "avg_price": q(avg, 18), "worst_price": worst, "slippage_bps": q((avg - mid) / mid * 10000, 4)}


async def test_stats_and_cost_equal_a_hand_computation_from_books_on_every_venue(nursery):
    fakes = {}
    tables = []
    for vid in available():
        symbol = DEMO_SYMBOLS[vid][0]
        fakes[vid] = await nursery.start(fake_for(vid)([symbol], rate=5).serve)
        tables.append(fakes[vid].config_toml())
    books = ", ".join(f'"{vid}:{fake.symbols[0]}"' for vid, fake in fakes.items())
    config = load_config_text(f"[service]\nmetrics_books = [{books}]\n" + "\n".join(tables))
    store = build_store(config)
    binds = await nursery.start(serve_http, build_app(store, service=config.service), "127.0.0.1", 0)
    nursery.start_soon(run_venues, config, store)
    with trio.fail_after(60):
        while not all(e.state is BookState.LIVE for e in store.entries()):
            await store.wait_change()
    for fake in fakes.values():
        fake.paused = True  # the books hold still (BingX still re-pushes its unchanged book)
    async with httpx.AsyncClient(base_url=binds[0]) as http:
        for vid, fake in fakes.items():
            path = f"/books/{vid}/{urlquote(fake.symbols[0], safe='')}"
            with trio.fail_after(30):
                while True:  # three requests at one seq (a change in between: again)
                    book = (await http.get(path, params={"depth": "5000"})).json()
                    total = sum(Decimal(s) for _, s in book["asks"])
                    half = text(total / 2)
                    stats = (await http.get(path + "/stats", params={"levels": "3", "bps": ",".join(BANDS)})).json()
                    cost = (await http.get(path + "/cost", params={"side": "buy", "base": half})).json()
                    over = (await http.get(path + "/cost", params={"side": "buy", "base": text(total + Decimal("0.00000001"))})).json()
                    if book["seq"] == stats["seq"] == cost["seq"] == over["seq"]:
                        break
            assert book["state"] == "live" and book.get("update_id") == stats.get("update_id") == cost.get("update_id")
            want = by_hand(book, 3)
            assert {k: stats[k] for k in want} == want, vid
            mid = Decimal(want["mid"])
            assert cost["sufficient"] is True and cost["filled"]["base"] == half, vid
            assert {k: cost[k] if k != "quote" else cost["filled"]["quote"] for k in ("quote", "avg_price", "worst_price", "slippage_bps")} \
                == buy_by_hand(book["asks"], Decimal(half), mid), vid
            assert over["sufficient"] is False and over["available"]["base"] == text(total), vid
        # the library gives the same (the books hold still; BingX re-pushes the same book, so only seqs move)
        books = Books(store)
        served = (await http.get("/consolidated/BTC-USD/cost", params={"side": "buy", "quote": "100000", "markets": "spot,perp"})).json()
        mine = books.consolidated_cost("BTC-USD", "buy", quote="100000", markets=frozenset({"spot", "perp"}))
        assert {k: v for k, v in mine.items() if k != "venues"} == {k: v for k, v in served.items() if k != "venues"}
        assert len(served["fills"]) > 1 and sum(Decimal(f["quote"]) for f in served["fills"]) == 100000
        assert [v["venue"] for v in served["venues"]] == list(fakes)
        metrics = (await http.get("/metrics")).text
    for vid, fake in fakes.items():
        assert f'trio_books_book_mid{{symbol="{fake.symbols[0]}",venue="{vid}"}}' in metrics
