"""The fleet benchmark's readers (HTTP and ``/ws`` clients) and its ``/metrics`` arithmetic."""

from __future__ import annotations

import math
import random
import re

import httpx
import orjson
import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

_SAMPLE = re.compile(r'^([a-z_]+)(?:\{(.*)\})? ([0-9.eE+-]+|\+Inf|NaN)$')
_LE = re.compile(r'le="([^"]+)"')
LATENCY = "trio_books_apply_latency_seconds_bucket"


def scrape(resp: httpx.Response) -> dict:
    """Prometheus text → ``{name: sum over labels}``, latency buckets as ``(name, le)``."""
    out: dict = {}
    for line in resp.text.splitlines():
        m = _SAMPLE.match(line)
        if m is None:
            continue
        name, labels, value = m.groups()
        key: object = name
        if name == LATENCY:
            key = (name, float(_LE.search(labels or "").group(1)))
        out[key] = out.get(key, 0.0) + float(value)
    return out


def latency_counts(m0: dict, m1: dict) -> tuple[list[float], list[float]]:
    """Upper bounds and per-bucket counts of the latency histogram between two scrapes."""
    bounds = sorted(k[1] for k in m1 if isinstance(k, tuple))
    cumulative = [m1.get((LATENCY, b), 0.0) - m0.get((LATENCY, b), 0.0) for b in bounds]
    counts = [c - (cumulative[i - 1] if i else 0.0) for i, c in enumerate(cumulative)]
    return bounds, counts


def percentile(bounds: list[float], counts: list[float], q: float) -> float | None:
    """Interpolated linearly within the bucket that holds the quantile (the first bucket from 0)."""
    total = sum(counts)
    if total <= 0:
        return None
    want, seen = q * total, 0.0
    for i, (b, c) in enumerate(zip(bounds, counts)):
        if c > 0 and seen + c >= want:
            lo = bounds[i - 1] if i else 0.0
            if math.isinf(b):
                return lo
            return lo + (b - lo) * (want - seen) / c
        seen += c
    return bounds[-2] if len(bounds) > 1 else None


class Readers:
    """``http_rate`` GETs of ``/books/{venue}/{symbol}?depth=20`` a second (random
    books), and ``ws_clients`` ``/ws`` clients, each subscribed to ``ws_books`` books."""

    def __init__(self, url: str, books: list[tuple[str, str]], http_rate: float, ws_clients: int, ws_books: int,
                 rng: random.Random) -> None:
        self.url, self.books, self.http_rate = url, books, http_rate
        self.ws_clients, self.ws_books, self.rng = ws_clients, ws_books, rng
        self.http_done = self.http_failed = self.ws_messages = 0
        self.latencies: list[float] = []

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(self.ws_clients):
                await nursery.start(self._ws)
            if self.http_rate > 0:
                nursery.start_soon(self._http)
            task_status.started()

    async def _http(self) -> None:
        interval = 1 / self.http_rate
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=4)) as client:
            async def one(path: str) -> None:
                t = trio.current_time()
                try:
                    r = await client.get(self.url + path)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append(trio.current_time() - t)
                if ok:
                    self.http_done += 1
                else:
                    self.http_failed += 1

            async with trio.open_nursery() as nursery:
                next_at = trio.current_time()
                while True:
                    vid, sym = self.rng.choice(self.books)
                    nursery.start_soon(one, f"/books/{vid}/{sym.replace('/', '%2F')}?depth=20")
                    next_at += interval
                    await trio.sleep_until(next_at)

    async def _ws(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        started = False
        try:
            async with open_websocket_url(self.url.replace("http", "ws") + "/ws") as ws:
                for vid, sym in self.rng.sample(self.books, min(self.ws_books, len(self.books))):
                    await ws.send_message(orjson.dumps({"op": "subscribe", "venue": vid, "symbol": sym, "depth": 20,
                                                        "kind": "book"}).decode())
                task_status.started()
                started = True
                while True:
                    await ws.get_message()
                    self.ws_messages += 1
        except (ConnectionClosed, HandshakeError, OSError):
            if not started:
                task_status.started()

    def summary(self, seconds: float) -> dict:
        lat = sorted(self.latencies)
        return {"http_done": self.http_done, "http_failed": self.http_failed, "ws_messages": self.ws_messages,
                "http_p50": lat[len(lat) // 2] if lat else None, "http_p99": lat[int(len(lat) * 0.99)] if lat else None}
