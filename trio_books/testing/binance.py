"""Fake Binance Spot and USD-M futures: combined diff-depth streams plus REST depth."""

from __future__ import annotations

import time
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson
import trio

from ..model import Level
from ._base import FakeClient, FakeVenue, JSONResponse, Request, Route


class FakeBinanceSpot(FakeVenue):
    """Binance Spot: ``/stream?streams=<sym>@depth@100ms/...``, SUBSCRIBE frames,
    ``GET /api/v3/depth``; events carry ``U``/``u`` (futures add ``pu``)."""

    venue_id: ClassVar[str] = "binance_spot"
    has_rest: ClassVar[bool] = True
    route: ClassVar[str] = ""
    depth_path: ClassVar[str] = "/api/v3/depth"
    futures: ClassVar[bool] = False

    def __init__(self, symbols, **kwargs) -> None:
        super().__init__(symbols, **kwargs)
        self.last_id = {s: 1_000_000 + 10_000 * i for i, s in enumerate(self.symbols)}
        self._by_stream = {f"{s.lower()}@depth@100ms": s for s in self.symbols}
        self._by_stream.update({f"{s.lower()}@depth": s for s in self.symbols})

    async def handle(self, client: FakeClient) -> None:
        parts = urlsplit(client.path)
        if parts.path != f"{self.route}/stream":
            await client.ws.aclose(code=1008, reason="unknown path")
            return
        for name in "/".join(parse_qs(parts.query).get("streams", [])).split("/"):
            if name in self._by_stream:
                client.symbols.add(self._by_stream[name])
            elif name:
                # Binance refuses an unknown stream name with an error and a close.
                await client.send(orjson.dumps({"code": 2, "msg": f"Invalid request: unknown stream {name}"}).decode())
                await client.ws.aclose(code=1008, reason="invalid stream")
                return
        if self.reject_subscribe:
            await client.send(orjson.dumps({"code": 2, "msg": "Invalid request: fake: subscription rejected"}).decode())
            await client.ws.aclose(code=1008, reason="rejected")
            return
        while True:
            if client.silent:
                await trio.sleep_forever()
            msg = orjson.loads(await client.receive())
            if msg.get("method") == "SUBSCRIBE":
                for name in msg.get("params", []):
                    if name in self._by_stream:
                        client.symbols.add(self._by_stream[name])
                await client.send(orjson.dumps({"result": None, "id": msg.get("id")}).decode())
            else:
                await client.send(orjson.dumps({"code": 2, "msg": "Invalid request: unknown variant"}).decode())

    def encode_delta(self, symbol: str, bids: list[Level], asks: list[Level]) -> list[str | bytes]:
        first = self.last_id[symbol] + 1
        final = first + self.rng.randint(0, 2)
        prev = self.last_id[symbol]
        self.last_id[symbol] = final
        now = int(time.time() * 1000)
        data: dict = {"e": "depthUpdate", "E": now}
        if self.futures:
            data["T"] = now - 1
        data.update({"s": symbol.upper(), "U": first, "u": final})
        if self.futures:
            data["pu"] = prev
        data.update({"b": [list(x) for x in bids], "a": [list(x) for x in asks]})
        return [orjson.dumps({"stream": f"{symbol.lower()}@depth@100ms", "data": data}).decode()]

    def snapshot_body(self, symbol: str, limit: int) -> dict:
        bids, asks = self.top(symbol, limit)
        body: dict = {"lastUpdateId": self.last_id[symbol]}
        if self.futures:
            now = int(time.time() * 1000)
            body.update({"E": now, "T": now - 1})
        body.update({"bids": [list(x) for x in bids], "asks": [list(x) for x in asks]})
        return body

    def rest_routes(self) -> list[Route]:
        async def depth(request: Request) -> JSONResponse:
            symbol = request.query_params.get("symbol", "")
            match = next((s for s in self.symbols if s.upper() == symbol), None)
            if match is None:
                return JSONResponse({"code": -1121, "msg": "Invalid symbol."}, status_code=400)
            try:
                limit = int(request.query_params.get("limit", "100"))
            except ValueError:
                return JSONResponse({"code": -1100, "msg": "Illegal characters found in parameter 'limit'."}, status_code=400)
            return JSONResponse(self.snapshot_body(match, min(limit, 5000)))

        return [Route(self.depth_path, depth)]

    def server_shutdown_frame(self) -> str:
        return orjson.dumps({"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": int(time.time() * 1000)}}).decode()


class FakeBinanceFutures(FakeBinanceSpot):
    """Binance USD-M futures: the ``/public`` route, ``pu`` chains, ``/fapi/v1/depth``."""

    venue_id: ClassVar[str] = "binance_futures"
    route: ClassVar[str] = "/public"
    depth_path: ClassVar[str] = "/fapi/v1/depth"
    futures: ClassVar[bool] = True
