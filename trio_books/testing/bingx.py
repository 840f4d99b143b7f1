"""Fake BingX spot: gzip-compressed binary frames, JSON server pings every 5 s,
one-topic subscribe frames with acks, and ``<SYMBOL>@depth<L>`` pushes of the
full top-L book (asks worst-first, as the real frames have them)."""

from __future__ import annotations

import datetime
import time
import uuid
import zlib
from typing import ClassVar
from urllib.parse import urlsplit

import orjson
import trio
from trio_websocket import ConnectionClosed

from ..venues.bingx import DEPTHS, MAX_TOPICS_PER_CONNECTION
from ._base import HOST, FakeClient, FakeVenue

PATH = "/market"
_CST = datetime.timezone(datetime.timedelta(hours=8))  # the ping "time" field is UTC+8 local time


def gz(payload: bytes) -> bytes:
    """One gzip member, as BingX frames every message."""
    c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return c.compress(payload) + c.flush()


def gzip_bomb(inflated: int = 64 << 20) -> bytes:
    """A small, valid gzip member that inflates to ``inflated`` zero bytes
    (built in 1 MiB steps, so making it never holds the whole output)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    parts = [c.compress(chunk) for _ in range(inflated >> 20)]
    parts.append(c.compress(bytes(inflated & ((1 << 20) - 1))))
    parts.append(c.flush())
    return b"".join(parts)


def _ms() -> int:
    return int(time.time() * 1000)


def _reply(code: int, req_id: object, msg: str) -> bytes:
    """A spot ack or refusal: ``{"code":…,"id":…,"msg":…,"timestamp":…}``, gzipped."""
    body: dict = {"code": code}
    if req_id is not None:
        body["id"] = req_id
    body.update(msg=msg, timestamp=_ms())
    return gz(orjson.dumps(body))


class FakeBingx(FakeVenue):
    """BingX spot at ``ws://127.0.0.1:<port>/market``.

    Args (beyond :class:`FakeVenue`'s):
        rate: pushes per second per topic (the venue pushes every 300 ms). Each
            push first changes the true book (unless paused), then sends the
            whole top-L book to every connection subscribed to the symbol; a
            paused fake keeps pushing the unchanged book, as the venue does.
        ping_interval: seconds between server pings (5 s at the venue).
        pong_timeout: a connection whose oldest unanswered ping is this old is
            closed (the venue drops it after about 30 s).

    Fault controls (besides :meth:`drop`, :meth:`silence`, :meth:`send_malformed`,
    ``reject_subscribe`` from :class:`FakeVenue`, which here answers every topic
    with one leaked data frame, then ``code`` 80015 after ``reject_delay``
    seconds): :meth:`stop_pings`,
    :meth:`send_gzip_bomb`, and one bad push of one symbol:
    :meth:`regress_update_id` (its ``lastUpdateId`` goes back) or
    :meth:`cross_next` (its book is crossed). A symbol the venue does not list
    is refused with ``code`` 80015 "dataType not support", as the venue does.
    """

    venue_id: ClassVar[str] = "bingx_spot"
    has_rest: ClassVar[bool] = False
    price_decimals: ClassVar[int] = 2
    qty_decimals: ClassVar[int] = 5
    bomb_size: ClassVar[int] = 16 << 20
    _bomb: ClassVar[bytes | None] = None

    def unexpected_frame(self) -> bytes:
        """A well-formed gzip frame that is neither data, an ack nor a ping."""
        return gz(b'{"code":0,"msg":"fake-unexpected","timestamp":1786310819126}')

    def __init__(self, symbols, *, rate: float = 1 / 0.3, ping_interval: float = 5.0, pong_timeout: float = 30.0, **kwargs) -> None:
        super().__init__(symbols, rate=rate, **kwargs)
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.update_id = {s: 14_669_994_934 + 1_000_000 * i for i, s in enumerate(self.symbols)}
        self.reject_delay = 0.0
        """With ``reject_subscribe``: seconds between the leaked data frame and the error."""
        self._bomb_pending = False
        self._regress: set[str] = set()
        self._cross: set[str] = set()
        # counters, for tests
        self.pings_sent = 0
        self.pongs: list[dict] = []
        self.subscribe_requests: list[dict] = []
        self.request_times: list[float] = []  # trio time of each of subscribe_requests

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.ws_port}{PATH}"

    # --- fault controls ------------------------------------------------------------
    def stop_pings(self) -> None:
        """Open connections get no more server pings; book pushes continue."""
        for client in self.clients:
            client.state["no_pings"] = True

    def send_gzip_bomb(self) -> None:
        """The next frame sent is a valid gzip member that inflates to
        :attr:`bomb_size` bytes (16 MiB by default; about 16 KB on the wire)."""
        self._bomb_pending = True

    def regress_update_id(self, symbol: str | None = None) -> None:
        """The next push of ``symbol`` carries a ``lastUpdateId`` below the previous one."""
        self._regress.update([symbol] if symbol else self.symbols)

    def cross_next(self, symbol: str) -> None:
        """The next push of ``symbol`` carries a bid one tick above its best ask
        (a crossed book); the truth stays right, so the push after it is good."""
        self._cross.add(symbol)

    # --- frames --------------------------------------------------------------------
    def depth_frame(self, symbol: str, level: int, update_id: int | None = None, crossed: bool = False) -> bytes:
        """The gzip-compressed ``@depth<level>`` push of the true top ``level``:
        bids best-first, asks worst-first, fields in the docs' order
        (``crossed``: with a bid one tick above the best ask in front)."""
        bids, asks = self.top(symbol, level)
        if crossed and asks:
            bids = [(self.fmt_price(self._ticks(asks[0][0]) + 1), self.fmt_qty(1)), *bids[: level - 1]]
        payload = {
            "code": 0,
            "data": {
                "asks": [list(x) for x in reversed(asks)],
                "bids": [list(x) for x in bids],
                "lastUpdateId": self.update_id[symbol] if update_id is None else update_id,
            },
            "dataType": f"{symbol}@depth{level}",
            "success": True,
            "timestamp": _ms(),
        }
        return gz(orjson.dumps(payload))

    def _ticks(self, price: str) -> int:
        whole, _, frac = price.partition(".")
        return int(whole) * 10**self.price_decimals + int(frac or 0)

    @classmethod
    def bomb(cls) -> bytes:
        if cls._bomb is None:
            cls._bomb = gzip_bomb(cls.bomb_size)
        return cls._bomb

    async def _send(self, client: FakeClient, frame: bytes) -> None:
        if self._bomb_pending and not client.silent and not client.closed:
            self._bomb_pending = False
            frame = self.bomb()
        await client.send(frame)

    # --- the stream ------------------------------------------------------------------
    def _change(self, symbol: str) -> None:
        self.next_change(symbol)
        self.update_id[symbol] += self.rng.randint(1, 5)

    async def _push(self, symbol: str) -> None:
        if symbol in self._skip:  # a lost push: the next one replaces the book anyway
            self._skip.discard(symbol)
            return
        update_id = self.update_id[symbol]
        if symbol in self._regress:
            self._regress.discard(symbol)
            update_id -= 1_000
        crossed = symbol in self._cross
        self._cross.discard(symbol)
        self.events_sent += 1
        for client in list(self.clients):
            for topic_symbol, level in list(client.state.get("topics", {}).values()):
                if topic_symbol == symbol:
                    await self._send(client, self.depth_frame(symbol, level, update_id, crossed))

    async def emit(self, symbol: str) -> None:
        self._change(symbol)
        await self._push(symbol)

    async def _stream(self) -> None:
        while True:
            if self.rate <= 0:
                await trio.sleep(0.05)
                continue
            await trio.sleep(1.0 / self.rate)
            for symbol in self.symbols:
                if not self.paused:
                    self._change(symbol)
                await self._push(symbol)

    # --- one connection --------------------------------------------------------------
    async def handle(self, client: FakeClient) -> None:
        if urlsplit(client.path).path != PATH:
            await client.ws.aclose(code=1008, reason="unknown path")
            return
        client.state.update(topics={}, outstanding={}, no_pings=False)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pinger, client)
            try:
                while True:
                    await self._on_message(client, await client.receive())
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                nursery.cancel_scope.cancel()

    async def _pinger(self, client: FakeClient) -> None:
        outstanding: dict[str, tuple[float, str]] = client.state["outstanding"]
        while not client.closed:
            await trio.sleep(self.ping_interval)
            if client.silent or client.state["no_pings"]:
                continue
            now = trio.current_time()
            if outstanding and now - min(at for at, _ in outstanding.values()) >= self.pong_timeout:
                client.closed = True
                with trio.move_on_after(1):
                    try:
                        await client.ws.aclose(code=1011, reason="fake: pings not answered")
                    except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                return
            ping_id = uuid.uuid4().hex
            stamp = datetime.datetime.now(_CST).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0800"
            outstanding[ping_id] = (now, stamp)
            client.state["last_ping_at"] = now
            self.pings_sent += 1
            await self._send(client, gz(orjson.dumps({"ping": ping_id, "time": stamp})))

    async def _on_message(self, client: FakeClient, raw: str | bytes) -> None:
        if raw in ("Pong", b"Pong"):
            return  # the swap-style answer: tolerated, but it answers no JSON ping
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            msg = None
        if type(msg) is not dict:
            await self._send(client, _reply(100400, None, "ILLEGAL_ARGUMENT"))
            return
        if "pong" in msg:
            # only the JSON echo of an outstanding ping (its id and its time) counts
            sent = client.state["outstanding"].get(msg["pong"]) if type(msg["pong"]) is str else None
            if sent is not None and msg.get("time") == sent[1]:
                del client.state["outstanding"][msg["pong"]]
                self.pongs.append(msg)
            return
        req_id = msg.get("id")
        req_type = msg.get("reqType", "sub")
        topic = msg.get("dataType")
        if req_type not in ("sub", "unsub") or type(topic) is not str:
            await self._send(client, _reply(100400, req_id, "ILLEGAL_ARGUMENT"))
            return
        self.subscribe_requests.append(msg)
        self.request_times.append(trio.current_time())
        topics: dict = client.state["topics"]
        if req_type == "unsub":
            topics.pop(topic, None)
            await self._send(client, _reply(0, req_id, "SUCCESS"))
            return
        parsed = self._topic(topic)
        if parsed is None or self.reject_subscribe:
            if parsed is not None:
                # a refused topic can still leak one data frame before the error
                await self._send(client, self.depth_frame(*parsed))
                if self.reject_delay:
                    await trio.sleep(self.reject_delay)
            await self._send(client, _reply(80015, req_id, "dataType not support"))
            return
        if topic not in topics and len(topics) >= MAX_TOPICS_PER_CONNECTION:
            await self._send(client, _reply(80403, req_id, f"your topic num over max {MAX_TOPICS_PER_CONNECTION}"))
            return
        await self._send(client, _reply(0, req_id, "SUCCESS"))
        topics[topic] = parsed
        client.symbols.add(parsed[0])

    def _topic(self, topic: str) -> tuple[str, int] | None:
        """``"BTC-USDT@depth50"`` → ``("BTC-USDT", 50)``; ``None`` when the venue
        would refuse it (unknown or lowercase symbol, unsupported level)."""
        symbol, sep, channel = topic.partition("@depth")
        if not sep or symbol not in self.symbols or not channel.isdigit() or int(channel) not in DEPTHS:
            return None
        return symbol, int(channel)


__all__ = ["FakeBingx", "gz", "gzip_bomb"]
