"""cryptofeed on the benchmark stream: ``python -m benchmarks.client_cryptofeed SPEC.json``.

cryptofeed's Binance feed, unchanged, with an L2 book callback. Only its
endpoints are pointed at the fake (a subclass that overrides the two class
attributes holding the addresses; the same routes as upstream). cryptofeed
accepts only ``wss://`` WebSocket addresses, so the fake serves TLS with a
certificate made for this run, and the CA is trusted through
``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE`` in this process's environment
(see ``tls.py``): verification stays on. cryptofeed's defaults are kept,
uvloop included (it installs uvloop when it is importable).

The callback logs ``(symbol, sequence number, time)`` per book update — the
same information trio-books' ``TimedStore`` logs — and stops the loop when the
last frame of the stream is in the book (or at the spec's timeout).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from array import array

import orjson

monotonic = time.monotonic
cpu = time.process_time


def main() -> None:
    with open(sys.argv[1], "rb") as fh:
        spec = orjson.loads(fh.read())
    try:
        import cryptofeed
        from cryptofeed import FeedHandler
        from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
        from cryptofeed.defines import L2_BOOK
        from cryptofeed.exchanges import Binance
    except ImportError as exc:
        _write(spec, {"ok": False, "last_error": f"cryptofeed is not installed ({exc})"})
        os._exit(0)

    from .clients import GC, rss_kb

    class LocalBinance(Binance):
        websocket_endpoints = [WebsocketEndpoint(spec["ws_base"])]
        rest_endpoints = [RestEndpoint(spec["rest_base"], routes=Routes(
            "/api/v3/exchangeInfo", l2book="/api/v3/depth?symbol={}&limit={}", authentication="/api/v3/userDataStream"))]

    wire = spec["symbols"]
    std = [f"{s[:-4]}-{s[-4:]}" for s in wire]  # BTCUSDT -> BTC-USDT (all are USDT pairs)
    idx = {s: i for i, s in enumerate(std)}
    final = list(spec["final_u"])
    start_sym, start_u = spec["start_mark"]
    remaining = set(range(len(final)))
    log_s, log_u, log_t = array("B"), array("q"), array("d")
    marks: dict = {"t0": None, "cpu0": None, "t1": None, "cpu1": None}

    def finish(ok: bool, error: str | None = None) -> None:
        result = {"ok": ok, "last_error": error, "gc": GC.summary(), "version": cryptofeed.__version__ if hasattr(cryptofeed, "__version__") else _version(),
                  "rss": rss_kb(), **marks}
        _write(spec, result, {"s": log_s, "u": log_u, "t": log_t})
        os._exit(0)  # cryptofeed's shutdown path is not what is measured

    async def on_book(book, receipt_timestamp) -> None:
        t = monotonic()
        i = idx[book.symbol]
        u = book.sequence_number
        log_s.append(i)
        log_u.append(u)
        log_t.append(t)
        if marks["t0"] is None and i == start_sym and u >= start_u:
            marks["t0"], marks["cpu0"] = t, cpu()
        if u >= final[i] and i in remaining:
            remaining.discard(i)
            if not remaining:
                marks["t1"], marks["cpu1"] = t, cpu()
                finish(True)

    log_file = spec["out"] + ".log"
    fh = FeedHandler(config={"uvloop": True, "log": {"filename": log_file, "level": "WARNING"}})
    fh.add_feed(LocalBinance(symbols=std, channels=[L2_BOOK], callbacks={L2_BOOK: on_book}, max_depth=spec.get("depth", 1000)))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def timeout() -> None:
        try:
            with open(log_file) as lf:
                tail = lf.read()[-400:]
        except OSError:
            tail = ""
        finish(False, "timed out before the last frame was applied" + (f"; cryptofeed log: {tail}" if tail else ""))

    loop.call_later(spec["timeout"], timeout)
    fh.run(install_signal_handlers=False)
    finish(False, "cryptofeed's loop ended before the last frame was applied")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("cryptofeed")
    except Exception:
        return "?"


def _write(spec: dict, result: dict, logs: dict[str, array] | None = None) -> None:
    if logs:
        for name, arr in logs.items():
            with open(f"{spec['out']}.{name}", "wb") as fh:
                arr.tofile(fh)
        result["logs"] = {name: arr.typecode for name, arr in logs.items()}
    with open(spec["out"], "wb") as fh:
        fh.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
