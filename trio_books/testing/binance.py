"""Fake Binance Spot and USD-M futures: combined diff-depth streams plus REST depth.

A symbol the fake does not list behaves as on Binance: ``GET <depth path>``
answers HTTP 400 ``{"code":-1121,"msg":"Invalid symbol."}``, and its stream
(named in the URL or in a SUBSCRIBE) is accepted and never sends anything.
"""

from __future__ import annotations

import re
import time
from collections import deque
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson
import trio

from ..model import Level
from ._base import FakeClient, FakeVenue, JSONResponse, Request, Route

STREAM_NAME = re.compile(r"[a-z0-9]+@depth(@100ms)?")
"""A well-formed diff-depth stream name (whether or not the symbol is listed)."""


class FakeBinanceSpot(FakeVenue):
    """Binance Spot: ``/stream?streams=<sym>@depth@100ms/...``, SUBSCRIBE frames,
    ``GET /api/v3/depth``; events carry ``U``/``u`` (futures add ``pu``).

    The documented connection limits are enforced: more than
    :attr:`max_streams` streams, or more than :attr:`max_incoming_per_second`
    incoming messages in a second (pings aside), closes the connection."""

    venue_id: ClassVar[str] = "binance_spot"
    has_rest: ClassVar[bool] = True
    route: ClassVar[str] = ""
    depth_path: ClassVar[str] = "/api/v3/depth"
    futures: ClassVar[bool] = False
    max_streams: ClassVar[int] = 1024
    max_incoming_per_second: ClassVar[int] = 5

    def __init__(self, symbols, **kwargs) -> None:
        super().__init__(symbols, **kwargs)
        self.last_id = {s: 1_000_000 + 10_000 * i for i, s in enumerate(self.symbols)}
        self._by_stream = {f"{s.lower()}@depth@100ms": s for s in self.symbols}
        self._by_stream.update({f"{s.lower()}@depth": s for s in self.symbols})
        self._late: dict[str, float] = {}  # symbol → delay of its next snapshot reply (late_snapshot)
        self.limit_closes = 0  # connections closed for going past a documented limit

    async def handle(self, client: FakeClient) -> None:
        parts = urlsplit(client.path)
        if parts.path != f"{self.route}/stream":
            await client.ws.aclose(code=1008, reason="unknown path")
            return
        names = [n for n in "/".join(parse_qs(parts.query).get("streams", [])).split("/") if n]
        bad = next((n for n in names if n not in self._by_stream and not STREAM_NAME.fullmatch(n)), None)
        if bad is not None:
            # a malformed stream name is refused with an error and a close; a
            # well-formed one of a symbol not listed is accepted and stays silent
            await client.send(orjson.dumps({"code": 2, "msg": f"Invalid request: bad stream name {bad}"}).decode())
            await client.ws.aclose(code=1008, reason="invalid stream")
            return
        if not await self._add_streams(client, names):
            return
        if self.reject_subscribe:
            await client.send(orjson.dumps({"code": 2, "msg": "Invalid request: fake: subscription rejected"}).decode())
            await client.ws.aclose(code=1008, reason="rejected")
            return
        received: deque[float] = deque()  # when each of the last second's incoming messages came
        while True:
            if client.silent:
                await trio.sleep_forever()
            raw = await client.receive()
            now = trio.current_time()
            received.append(now)
            while received[0] <= now - 1.0:
                received.popleft()
            if len(received) > self.max_incoming_per_second:
                self.limit_closes += 1
                await client.ws.aclose(code=1008, reason="too many messages")
                return
            msg = orjson.loads(raw)
            if msg.get("method") == "SUBSCRIBE":
                if not await self._add_streams(client, msg.get("params", [])):
                    return
                await client.send(orjson.dumps({"result": None, "id": msg.get("id")}).decode())
            else:
                await client.send(orjson.dumps({"code": 2, "msg": "Invalid request: unknown variant"}).decode())

    async def _add_streams(self, client: FakeClient, names: list[str]) -> bool:
        """Subscribe ``names``; past :attr:`max_streams` the connection is closed."""
        streams = client.state.setdefault("streams", set())
        streams.update(names)
        if len(streams) > self.max_streams:
            self.limit_closes += 1
            await client.ws.aclose(code=1008, reason="too many streams")
            return False
        client.symbols.update(self._by_stream[n] for n in names if n in self._by_stream)
        return True

    def unexpected_frame(self) -> str:
        """A real-shaped event of a stream nobody here subscribed to (``bookTicker``)."""
        s = self.symbols[0]
        return (f'{{"stream":"{s.lower()}@bookTicker","data":{{"e":"bookTicker","u":1,"s":"{s.upper()}",'
                '"b":"1.0","B":"1","a":"2.0","A":"1"}}')

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

    def late_snapshot(self, symbol: str, delay: float) -> None:
        """The next snapshot of ``symbol`` is taken at once but answered only
        ``delay`` seconds later (the stream moves on meanwhile: the reply is older
        than the events the client buffered while waiting)."""
        self._late[symbol] = delay

    def parse_limit(self, raw: str | None) -> int | JSONResponse:
        """The snapshot size ``limit`` asks for, or the venue's error reply."""
        try:
            return min(int(raw or "100"), 5000)  # the documented default and cap
        except ValueError:
            return JSONResponse({"code": -1100, "msg": "Illegal characters found in parameter 'limit'."}, status_code=400)

    def rest_routes(self) -> list[Route]:
        async def depth(request: Request) -> JSONResponse:
            symbol = request.query_params.get("symbol", "")
            match = next((s for s in self.symbols if s.upper() == symbol), None)
            if match is None:
                return JSONResponse({"code": -1121, "msg": "Invalid symbol."}, status_code=400)
            limit = self.parse_limit(request.query_params.get("limit"))
            if isinstance(limit, JSONResponse):
                return limit
            body = self.snapshot_body(match, limit)
            delay = self._late.pop(match, None)
            if delay is not None:
                await trio.sleep(delay)
            return JSONResponse(body)

        return [Route(self.depth_path, depth)]

    def server_shutdown_frame(self) -> str:
        return orjson.dumps({"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": int(time.time() * 1000)}}).decode()


class FakeBinanceFutures(FakeBinanceSpot):
    """Binance USD-M futures: ``/public/stream?streams=<sym>@depth@100ms/...``,
    ``GET /fapi/v1/depth`` (``limit`` one of 5, 10, 20, 50, 100, 500, 1000).

    Events carry ``E``, ``T``, ``s``, ``U``, ``u`` and ``pu`` (the symbol's
    previous ``u``). As in the real capture, update ids are one sequence
    shared by every symbol, so ``U`` is never the previous ``u + 1``; the
    snapshot's ``lastUpdateId`` is the ``u`` of the symbol's last event.

    The retired unrouted paths (``/stream``, ``/ws/...``) complete the handshake
    and then send nothing at all, as reported after the 2026 routing change.
    :attr:`mute_new_connections` does the same to every new connection.
    """

    venue_id: ClassVar[str] = "binance_futures"
    route: ClassVar[str] = "/public"
    depth_path: ClassVar[str] = "/fapi/v1/depth"
    futures: ClassVar[bool] = True
    limits: ClassVar[tuple[int, ...]] = (5, 10, 20, 50, 100, 500, 1000)
    max_incoming_per_second: ClassVar[int] = 10
    retired_paths: ClassVar[tuple[str, ...]] = ("/stream", "/ws")

    def __init__(self, symbols, **kwargs) -> None:
        super().__init__(symbols, **kwargs)
        self.update_id = 600_859_599_090  # the shared id sequence (the capture's scale)
        self.last_id = {s: 0 for s in self.symbols}  # each symbol's last u (its pu chain)
        for symbol in self.symbols:
            self.update_id += self.rng.randint(1, 500)
            self.last_id[symbol] = self.update_id
        self.mute_new_connections = False
        self.muted_connections = 0
        self.connected_at: list[float] = []  # trio time of every accepted connection
        self.paths: list[str] = []  # and the path it asked for

    async def handle(self, client: FakeClient) -> None:
        self.connected_at.append(trio.current_time())
        self.paths.append(client.path)
        path = urlsplit(client.path).path
        if self.mute_new_connections or path in self.retired_paths or any(path.startswith(p + "/") for p in self.retired_paths):
            client.silent = True  # accepted; nothing is ever sent (pings still get pongs)
            self.muted_connections += 1
            while True:
                await client.receive()  # ignored; returns by ConnectionClosed when the client leaves
        await super().handle(client)

    def encode_delta(self, symbol: str, bids: list[Level], asks: list[Level]) -> list[str | bytes]:
        first = self.update_id + self.rng.randint(1, 50)  # other symbols' updates came in between
        final = first + self.rng.randint(0, 20)
        prev = self.last_id[symbol]
        self.update_id = self.last_id[symbol] = final
        now = int(time.time() * 1000)
        data = {"e": "depthUpdate", "E": now, "T": now - 1, "s": symbol.upper(), "U": first, "u": final, "pu": prev,
                "b": [list(x) for x in bids], "a": [list(x) for x in asks]}
        return [orjson.dumps({"stream": f"{symbol.lower()}@depth@100ms", "data": data}).decode()]

    def snapshot_body(self, symbol: str, limit: int) -> dict:
        bids, asks = self.top(symbol, limit)
        now = int(time.time() * 1000)
        return {"lastUpdateId": self.last_id[symbol], "E": now, "T": now - 1,
                "bids": [list(x) for x in bids], "asks": [list(x) for x in asks]}

    def parse_limit(self, raw: str | None) -> int | JSONResponse:
        raw = raw or "500"  # the documented default
        if not raw.isdigit() or int(raw) not in self.limits:
            return JSONResponse({"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}, status_code=400)
        return int(raw)
