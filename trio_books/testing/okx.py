"""Fake OKX V5 spot: the public ``books`` channel on ``/ws/v5/public`` plus
``GET /api/v5/market/books``, with OKX's frame shapes, field order, seqId chain,
CRC32 checksum and text ``ping``/``pong``."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import ClassVar, NamedTuple
from urllib.parse import urlsplit

import orjson
import trio

from ..model import Level
from ..venues.okx import CHANNEL, DEPTH, checksum
from ._base import FakeClient, FakeVenue, JSONResponse, Request, Route

PATH = "/ws/v5/public"


class ClientOp(NamedTuple):
    """A subscribe/unsubscribe request as the fake received it."""

    at: float  # trio time
    conn_id: str
    op: str
    args: list  # the instIds


def _ms() -> str:
    return str(int(time.time() * 1000))


def _orders(price: str, size: str) -> str:
    """The order count of a level (the 4th element): any stable small number; 0 for a deletion."""
    if not Decimal(size):
        return "0"
    return str(1 + sum(map(ord, price)) % 9)


def _wire(levels: list[Level]) -> list[list[str]]:
    return [[p, s, "0", _orders(p, s)] for p, s in levels]


def parse_request(raw: str | bytes) -> tuple[str, list, dict] | None:
    """``(op, args, request)`` of an OKX client request, or None when it is not one
    (the venue answers that with error 60012)."""
    try:
        req = orjson.loads(raw)
        op, args = req["op"], req["args"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return (op, args, req) if type(args) is list else None


class FakeOkxSpot(FakeVenue):
    """OKX spot at ``ws://127.0.0.1:<port>/ws/v5/public`` and ``http://127.0.0.1:<port>``.

    Args (beyond :class:`FakeVenue`'s):
        checksums: send the real CRC32 in ``checksum`` (OKX before June 2026);
            ``False`` sends ``0``, as OKX does now.
        send_ws_snapshot: push the initial ``action: snapshot`` after a
            subscribe; ``False`` sends only updates (OKX's announced change),
            so only a REST-seeded client can build the book.

    An instrument it does not list is refused per arg with OKX's ``60018``
    error (the request's other args go on); an unsubscribe is acked per arg and
    a subscribe after it sends a fresh snapshot; REST ``books`` of an unknown
    instrument answers code ``51001``. ``requests`` records every
    subscribe/unsubscribe request per connection (OKX allows 480 an hour).

    Fault controls (besides :meth:`drop`, :meth:`silence` — the connection stays
    open, nothing is sent and ``ping`` goes unanswered —, :meth:`skip_next_update`,
    :meth:`send_malformed`, :meth:`corrupt_checksum_next`, ``reject_subscribe``
    (answered with ``{"event":"error"}``) and :meth:`rest_fail` from
    :class:`FakeVenue`): :meth:`maintenance` (the next update has
    ``seqId < prevSeqId``) and :meth:`keepalive` (an empty update with
    ``seqId == prevSeqId``, what OKX sends for an unchanged book).
    """

    venue_id: ClassVar[str] = "okx_spot"
    has_rest: ClassVar[bool] = True
    price_decimals: ClassVar[int] = 1
    qty_decimals: ClassVar[int] = 4

    def __init__(self, symbols, *, checksums: bool = True, send_ws_snapshot: bool = True, **kwargs) -> None:
        super().__init__(symbols, **kwargs)
        self.checksums = checksums
        self.send_ws_snapshot = send_ws_snapshot
        # seqIds above 2**31, as live OKX frames have them
        self.seq = {s: 335_226_848_531 + 7_919_000 * i for i, s in enumerate(self.symbols)}
        self._maintenance: set[str] = set()
        self.pings: list[float] = []  # trio times at which a text "ping" arrived
        self.subscribe_requests = 0
        self.requests: list[ClientOp] = []  # every subscribe/unsubscribe request, in order
        self._lock = trio.Lock()  # an update is made and sent to every subscriber in one piece

    # --- OKX writes decimals without trailing zeros ("30244", "0.08") ---------------------
    def fmt_price(self, ticks: int) -> str:
        return _trim(super().fmt_price(ticks))

    def fmt_qty(self, units: int) -> str:
        return _trim(super().fmt_qty(units))

    # --- fault controls -------------------------------------------------------------------
    def maintenance(self, symbol: str | None = None) -> None:
        """The next update of ``symbol`` (every symbol if None) resets the sequence:
        its ``seqId`` is below its ``prevSeqId``; later updates chain from it."""
        self._maintenance.update([symbol] if symbol else self.symbols)

    async def keepalive(self, symbol: str | None = None) -> None:
        """Send the unchanged-book update: no levels, ``seqId == prevSeqId``."""
        for s in [symbol] if symbol else self.symbols:
            seq = self.seq[s]
            frame = self._frame(s, "update", [], [], seq, seq)
            for client in list(self.clients):
                if s in client.symbols:
                    await client.send(frame)

    async def emit(self, symbol: str) -> None:
        async with self._lock:
            await super().emit(symbol)

    # --- frames -----------------------------------------------------------------------------
    def _checksum(self, symbol: str) -> int:
        if not self.checksums:
            value = 0
        else:
            bids, asks = self.top(symbol, 25)
            value = checksum(bids, asks)
        if symbol in self._corrupt:
            self._corrupt.discard(symbol)
            value = value ^ 0x5A5A5A5A or 1  # wrong, and never the "absent" 0
        return value

    def _frame(self, symbol: str, action: str, bids: list[Level], asks: list[Level], prev: int, seq: int) -> str:
        data = {
            "asks": _wire(asks),
            "bids": _wire(bids),
            "ts": _ms(),
            "checksum": self._checksum(symbol),
            "prevSeqId": prev,
            "seqId": seq,
        }
        return orjson.dumps({"arg": {"channel": CHANNEL, "instId": symbol}, "action": action, "data": [data]}).decode()

    def snapshot_frame(self, symbol: str) -> str:
        bids, asks = self.top(symbol, DEPTH)
        return self._frame(symbol, "snapshot", bids, asks, -1, self.seq[symbol])

    def encode_delta(self, symbol: str, bids: list[Level], asks: list[Level]) -> list[str | bytes]:
        prev = self.seq[symbol]
        if symbol in self._maintenance:
            self._maintenance.discard(symbol)
            seq = self.rng.randint(0, min(prev - 1, 1000))
        else:
            seq = prev + self.rng.randint(1, 60)  # increments are not +1
        self.seq[symbol] = seq
        bids = sorted(bids, key=lambda lv: Decimal(lv[0]), reverse=True)
        asks = sorted(asks, key=lambda lv: Decimal(lv[0]))
        return [self._frame(symbol, "update", bids, asks, prev, seq)]

    # --- the WebSocket protocol ----------------------------------------------------------------
    async def handle(self, client: FakeClient) -> None:
        if urlsplit(client.path).path != PATH:
            await client.ws.aclose(code=1008, reason="unknown path")
            return
        conn_id = client.state["connId"] = uuid.uuid4().hex[:8]
        while True:
            msg = await client.receive()
            if msg == "ping":
                self.pings.append(trio.current_time())
                await client.send("pong")  # dropped when silenced
                continue
            request = parse_request(msg)
            if request is None:
                await client.send(_event(None, "error", conn_id, code="60012", msg=f"Invalid request: {str(msg)[:100]}"))
                continue
            op, args, req = request
            rid = req.get("id")
            if op in ("subscribe", "unsubscribe"):
                insts = [a.get("instId") if type(a) is dict else None for a in args]
                self.requests.append(ClientOp(trio.current_time(), conn_id, op, insts))
            if op == "subscribe":
                self.subscribe_requests += 1
                await self._subscribe(client, rid, args, conn_id)
            elif op == "unsubscribe":
                for arg in args:
                    client.symbols.discard(arg.get("instId"))
                    await client.send(_event(rid, "unsubscribe", conn_id, arg=arg))
            else:
                await client.send(_event(rid, "error", conn_id, code="60012", msg=f"Invalid request: {str(msg)[:100]}"))

    async def _subscribe(self, client: FakeClient, rid: str | None, args: list, conn_id: str) -> None:
        for arg in args:
            channel, inst = (arg.get("channel"), arg.get("instId")) if type(arg) is dict else (None, None)
            if self.reject_subscribe or channel != CHANNEL or inst not in self.truth:
                await client.send(_event(rid, "error", conn_id,
                                         msg=f"Subscribe failed, wrong URL or channel:{channel},instId:{inst} doesn't exist. "
                                             "Please use the correct URL, channel and parameters referring to API document.",
                                         code="60018"))
                continue
            await client.send(_event(rid, "subscribe", conn_id, arg={"channel": CHANNEL, "instId": inst}))
            # frame and membership in one step, under the stream's lock: no update
            # made before the snapshot can be sent after it
            async with self._lock:
                frame = self.snapshot_frame(inst) if self.send_ws_snapshot else None
                client.symbols.add(inst)
                if frame is not None:
                    await client.send(frame)

    # --- REST -----------------------------------------------------------------------------
    def rest_routes(self) -> list[Route]:
        async def books(request: Request) -> JSONResponse:
            inst = request.query_params.get("instId", "")
            if inst not in self.truth:
                return JSONResponse({"code": "51001", "msg": "Instrument ID does not exist", "data": []})
            try:
                sz = int(request.query_params.get("sz", "1"))
            except ValueError:
                return JSONResponse({"code": "51000", "msg": "Parameter sz error", "data": []})
            bids, asks = self.top(inst, max(1, min(sz, DEPTH)))
            data = {"asks": _wire(asks), "bids": _wire(bids), "ts": _ms(), "seqId": self.seq[inst]}
            return JSONResponse({"code": "0", "msg": "", "data": [data]})

        return [Route("/api/v5/market/books", books)]


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def _event(rid: str | None, event: str, conn_id: str, **fields) -> str:
    out: dict = {"id": rid} if rid is not None else {}
    out["event"] = event
    out.update(fields)
    out["connId"] = conn_id
    return orjson.dumps(out).decode()
