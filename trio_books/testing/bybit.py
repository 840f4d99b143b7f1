"""Fake Bybit V5 public spot and linear: ``orderbook.{depth}.{symbol}`` on
``/v5/public/spot`` and ``/v5/public/linear``, with Bybit's frame shapes and
field order, per-topic ``u`` chains, depth windows, acks, refusals and the
``{"op":"ping"}`` → ``{…"ret_msg":"pong",…"op":"ping"}`` heartbeat."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import ClassVar, NamedTuple
from urllib.parse import urlsplit

import orjson
import trio

from ..model import Level
from ..venues.bybit import (
    ARGS_CHARS_PER_CONNECTION,
    ARGS_PER_REQUEST,
    DEPTHS,
    RESTART_UPDATE_ID,
)
from ._base import FakeClient, FakeVenue

Topic = tuple[str, int]  # (symbol, depth)


class ClientOp(NamedTuple):
    """A subscribe/unsubscribe request as the fake received it."""

    at: float  # trio time
    conn_id: str
    op: str
    args: list[str]


DEPTH1_RESEND: float = 3.0
"""Depth 1: an unchanged book is sent again (same ``u``) after this many seconds."""


def _ms() -> int:
    return int(time.time() * 1000)


def _conn_id() -> str:
    """A ``conn_id`` shaped like the real ones (``d9avt8shteepr00gfc1g-4zd1x``)."""
    h = uuid.uuid4().hex
    return f"{h[:20]}-{h[20:25]}"


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


class FakeBybitSpot(FakeVenue):
    """Bybit spot at ``ws://127.0.0.1:<port>/v5/public/spot``.

    Each topic ``orderbook.{depth}.{symbol}`` (depth in 1, 50, 200, 1000) gets a
    ``snapshot`` of the true top ``depth`` right after the subscribe ack, then a
    ``delta`` whenever that window changes: changed levels, ``"0"`` for levels
    that left the window, the levels that entered it, and ``u`` + 1 per topic.
    Depth 1 sends snapshots only, re-sent with the same ``u`` after 3 s unchanged.

    A topic of a symbol it does not list (or of a depth Bybit lacks) is refused
    ``error:handler not found,topic:T``, one already subscribed on the
    connection ``error:already subscribed,topic:T``. What Bybit does with the
    other topics of such a request is not documented, so ``partial_subscribe``
    picks: ``False`` (default) refuses the whole request with one ack naming its
    first bad topic; ``True`` sends one refusal per bad topic and subscribes the
    good ones (no success ack). An unsubscribe is acked like a subscribe and
    drops the topic; a topic not subscribed on the connection is refused
    ``error:handler not found,topic:T`` (the fake's guess: undocumented). A
    subscribe after an unsubscribe sends a fresh snapshot.

    Fault controls (besides :meth:`drop`, :meth:`silence` — the connection stays
    open, nothing is sent and pings go unanswered —, :meth:`skip_next_update`
    (``u`` advances, the delta is never sent; a paused stream still sends the
    topic's next delta, so the gap always shows), :meth:`send_malformed`,
    :meth:`duplicate_next` and ``reject_subscribe`` — every topic of a subscribe
    request is refused ``handler not found`` — from :class:`FakeVenue`):
    :meth:`restart`, Bybit's service restart (the book moves on unsent, then a
    snapshot with ``u == 1``).
    """

    venue_id: ClassVar[str] = "bybit_spot"
    path: ClassVar[str] = "/v5/public/spot"
    price_decimals: ClassVar[int] = 1
    qty_decimals: ClassVar[int] = 6
    trim_zeros: ClassVar[bool] = True  # spot writes "65140", "65139.6", "0.014"
    ts_before_type: ClassVar[tuple[int, ...]] = DEPTHS  # spot: every depth
    max_args_per_request: ClassVar[int | None] = ARGS_PER_REQUEST
    linear_acks: ClassVar[bool] = False
    default_depth: ClassVar[int] = 200

    def __init__(self, symbols, *, partial_subscribe: bool = False, **kwargs) -> None:
        super().__init__(symbols, **kwargs)
        self.partial_subscribe = partial_subscribe
        self._u: dict[Topic, int] = {}
        self._window: dict[Topic, tuple[dict[str, str], dict[str, str]]] = {}
        self._sent_at: dict[Topic, float] = {}  # depth 1: when the book was last sent
        self._hidden_topics: set[Topic] = set()  # u advanced by a skipped update, no frame sent since
        self._seq = {s: 112_488_545_843 + 66_000_000_000 * i for i, s in enumerate(self.symbols)}
        self._lock = trio.Lock()
        # counters, for tests
        self.pings: list[float] = []  # trio times at which a {"op":"ping"} arrived
        self.subscribe_requests: list[list[str]] = []  # the args of every subscribe request
        self.requests: list[ClientOp] = []  # every subscribe/unsubscribe request, in order
        self.refusals: list[str] = []  # ret_msg of every "success": false sent
        self.connected_at: list[float] = []  # trio time of every accepted connection

    # --- Bybit's number text ----------------------------------------------------------
    def fmt_price(self, ticks: int) -> str:
        text = super().fmt_price(ticks)
        return _trim(text) if self.trim_zeros else text

    def fmt_qty(self, units: int) -> str:
        text = super().fmt_qty(units)
        return _trim(text) if self.trim_zeros else text

    def zero_qty(self) -> str:
        return "0"

    # --- topics -------------------------------------------------------------------------
    @staticmethod
    def topic_name(symbol: str, depth: int) -> str:
        return f"orderbook.{depth}.{symbol}"

    def _parse_topic(self, name: str) -> Topic | None:
        """``"orderbook.200.BTCUSDT"`` → ``("BTCUSDT", 200)``; ``None`` when Bybit
        answers ``handler not found`` (unknown or lower-case symbol, bad depth)."""
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "orderbook" or not parts[1].isdigit():
            return None
        depth, symbol = int(parts[1]), parts[2]
        if depth not in DEPTHS or symbol not in self.truth:
            return None
        return symbol, depth

    def _state(self, topic: Topic) -> tuple[dict[str, str], dict[str, str]]:
        """The topic's window as last published (created on first use)."""
        window = self._window.get(topic)
        if window is None:
            symbol, depth = topic
            bids, asks = self.top(symbol, depth)
            window = self._window[topic] = (dict(bids), dict(asks))
            self._u[topic] = 15_076_952 + 1_000_003 * self.symbols.index(symbol) + 7 * depth
        return window

    def _topics_of(self, symbol: str) -> list[Topic]:
        return [t for t in self._window if t[0] == symbol]

    def _move_window(self, topic: Topic) -> tuple[list[Level], list[Level]]:
        """Bring the topic's window to the true top ``depth``; return what changed
        (levels that left the window as ``"0"``), bids high→low, asks low→high."""
        symbol, depth = topic
        old_bids, old_asks = self._state(topic)
        new_bids, new_asks = (dict(side) for side in self.top(symbol, depth))
        self._window[topic] = (new_bids, new_asks)
        return _diff(old_bids, new_bids, reverse=True), _diff(old_asks, new_asks, reverse=False)

    # --- frames ---------------------------------------------------------------------------
    def _frame(self, topic: Topic, kind: str, bids: list[Level], asks: list[Level]) -> str:
        symbol, depth = topic
        ts = _ms()
        head: dict = {"topic": self.topic_name(symbol, depth)}
        if depth in self.ts_before_type:
            head.update(ts=ts, type=kind)
        else:
            head.update(type=kind, ts=ts)
        head["data"] = {"s": symbol, "b": [list(x) for x in bids], "a": [list(x) for x in asks],
                        "u": self._u[topic], "seq": self._seq[symbol]}
        head["cts"] = ts - 2
        return orjson.dumps(head).decode()

    def snapshot_frame(self, symbol: str, depth: int) -> str:
        """The topic's snapshot now: its whole window and its current ``u``."""
        topic = (symbol, depth)
        bids, asks = self._state(topic)
        return self._frame(topic, "snapshot", list(bids.items()), list(asks.items()))

    def encode_delta(self, symbol: str, bids: list[Level], asks: list[Level]) -> list[str | bytes]:
        """One ``delta`` of the default-depth topic carrying these changes (for
        offline use, e.g. fuzzing: the topic's window is not consulted)."""
        topic = (symbol, self.default_depth)
        self._state(topic)
        self._u[topic] += 1
        return [self._frame(topic, "delta", _sorted(bids, True), _sorted(asks, False))]

    def unexpected_frame(self) -> str:
        """A real-shaped push of a topic nobody here subscribed to."""
        return ('{"topic":"tickers.BTCUSDT","ts":1786310819126,"type":"snapshot","cs":112488546160,'
                '"data":{"symbol":"BTCUSDT","lastPrice":"65140.5","volume24h":"2953.835931"}}')

    def _ack(self, client: FakeClient, op: str, req_id: str | None, success: bool = True, ret_msg: str | None = None) -> str:
        """Acks and pongs in the product's shape: spot ``ret_msg`` is the op
        (``"subscribe"``, ``"pong"``) and ``req_id`` only when one was sent;
        linear ``ret_msg`` is ``""`` and ``req_id`` is always present."""
        if ret_msg is None:
            ret_msg = "pong" if op == "ping" else ("" if self.linear_acks else op)
        body: dict = {"success": success, "ret_msg": ret_msg, "conn_id": client.state["conn_id"]}
        if self.linear_acks or req_id is not None:
            body["req_id"] = req_id or ""
        body["op"] = op
        return orjson.dumps(body).decode()

    # --- fault controls ---------------------------------------------------------------------
    async def restart(self, symbol: str | None = None, *, changes: int = 5) -> None:
        """Bybit restarts its service: the book of ``symbol`` (every symbol if
        None) changes ``changes`` times without any delta, then every topic of
        it sends a snapshot with ``u == 1``; later deltas continue with 2, 3, …"""
        async with self._lock:
            sends = []
            for s in [symbol] if symbol else self.symbols:
                for _ in range(changes):
                    self.next_change(s)
                self._seq[s] += self.rng.randint(1, 5000)
                for topic in self._topics_of(s):
                    self._move_window(topic)
                    self._u[topic] = RESTART_UPDATE_ID
                    sends += self._recipients(topic, self.snapshot_frame(*topic))
            for client, frame in sends:
                await client.send(frame)

    # --- the stream -------------------------------------------------------------------------
    def _recipients(self, topic: Topic, frame: str) -> list[tuple[FakeClient, str]]:
        """Every subscriber of ``topic`` gets ``frame``: a gap hidden in the
        topic's ``u`` chain shows (a delta) or is healed (a snapshot)."""
        name = self.topic_name(*topic)
        self._sent_at[topic] = trio.current_time()
        self._hidden_topics.discard(topic)
        return [(c, frame) for c in self.clients if name in c.state.get("topics", ())]

    async def emit(self, symbol: str) -> None:
        """Change the true book once; send each of the symbol's topics what changed
        in its window (depth 1: the new snapshot). Who gets a frame is decided
        before any send, so a subscriber's snapshot and its deltas never overlap."""
        async with self._lock:
            self.next_change(symbol)
            self._seq[symbol] += self.rng.randint(1, 5000)  # the cross sequence is not contiguous
            skip = symbol in self._skip
            sends: list[tuple[FakeClient, str]] = []
            for topic in self._topics_of(symbol):
                bids, asks = self._move_window(topic)
                if not bids and not asks:
                    continue  # the change was outside this window
                self._u[topic] += 1
                if skip:
                    # the skip is spent only on an update some topic would have sent:
                    # one outside every window is no message, so it can be no gap
                    self._skip.discard(symbol)
                    self._hidden_topics.add(topic)
                    continue
                if topic[1] == 1:
                    frame = self.snapshot_frame(*topic)  # depth 1 has snapshots only
                else:
                    frame = self._frame(topic, "delta", bids, asks)
                sends += self._recipients(topic, frame)
            if skip:
                return
            self.events_sent += 1
            for client, frame in sends:
                await client.send(frame)

    def note_emitted(self, symbol: str, *, skipped: bool) -> None:
        pass  # per topic, in emit and _recipients: an update can leave a topic's window alone

    def hidden_gaps(self) -> set[str]:
        """Symbols with a topic whose ``u`` moved past a skipped delta and that
        sent nothing since (a paused stream sends one more update of them)."""
        return {symbol for symbol, _ in self._hidden_topics}

    async def _resend_depth1(self) -> None:
        while True:
            await trio.sleep(DEPTH1_RESEND / 6)
            async with self._lock:
                now = trio.current_time()
                sends = []
                for topic in list(self._window):
                    if topic[1] == 1 and now - self._sent_at.get(topic, now) >= DEPTH1_RESEND:
                        sends += self._recipients(topic, self.snapshot_frame(*topic))
                for client, frame in sends:
                    await client.send(frame)

    async def _stream(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._resend_depth1)
            await super()._stream()

    # --- one connection ---------------------------------------------------------------------
    async def handle(self, client: FakeClient) -> None:
        if urlsplit(client.path).path != self.path:
            await client.ws.aclose(code=1008, reason="unknown path")
            return
        self.connected_at.append(trio.current_time())
        client.state.update(conn_id=_conn_id(), topics={})
        while True:
            raw = await client.receive()
            try:
                msg = orjson.loads(raw)
                if type(msg) is not dict:
                    raise TypeError
            except (orjson.JSONDecodeError, TypeError):
                await self._refuse(client, "", None, f"Failed to decode incoming data: {str(raw)[:60]}")
                continue
            op, args = msg.get("op"), msg.get("args")
            req_id = msg.get("req_id") if type(msg.get("req_id")) is str else None
            if op == "ping":
                self.pings.append(trio.current_time())
                await client.send(self._ack(client, "ping", req_id))  # dropped when silenced
            elif op in ("subscribe", "unsubscribe") and type(args) is list and all(type(a) is str for a in args):
                self.requests.append(ClientOp(trio.current_time(), client.state["conn_id"], op, list(args)))
                if op == "subscribe":
                    await self._subscribe(client, req_id, args)
                else:
                    await self._unsubscribe(client, req_id, args)
            else:
                await self._refuse(client, str(op or ""), req_id, "error:invalid op")

    async def _refuse(self, client: FakeClient, op: str, req_id: str | None, ret_msg: str) -> None:
        self.refusals.append(ret_msg)
        await client.send(self._ack(client, op, req_id, success=False, ret_msg=ret_msg))

    async def _subscribe(self, client: FakeClient, req_id: str | None, args: list[str]) -> None:
        """One ack for the whole request (see ``partial_subscribe`` for a
        request with bad topics), then a snapshot per subscribed topic."""
        self.subscribe_requests.append(list(args))
        topics: dict[str, Topic] = client.state["topics"]
        if self.max_args_per_request is not None and len(args) > self.max_args_per_request:
            # the refusal text is the fake's own: Bybit's is not documented
            await self._refuse(client, "subscribe", req_id, f"fake: at most {self.max_args_per_request} args per request")
            return
        if sum(map(len, topics)) + sum(map(len, args)) > ARGS_CHARS_PER_CONNECTION:
            await self._refuse(client, "subscribe", req_id, f"fake: args over {ARGS_CHARS_PER_CONNECTION} characters")
            return
        good: dict[str, Topic] = {}
        refusals: list[str] = []
        for name in args:
            topic = self._parse_topic(name)
            if topic is None or self.reject_subscribe:
                refusals.append(f"error:handler not found,topic:{name}")
            elif name in topics:
                refusals.append(f"error:already subscribed,topic:{name}")
            else:
                good[name] = topic
        if refusals and not self.partial_subscribe:
            await self._refuse(client, "subscribe", req_id, refusals[0])
            return
        for ret_msg in refusals:
            await self._refuse(client, "subscribe", req_id, ret_msg)
        if not refusals:
            await client.send(self._ack(client, "subscribe", req_id))
        # Under the stream's lock: no delta of these topics is sent while their
        # snapshots are, so a replayed snapshot (duplicate_next) follows its
        # original at once and never lands after a newer delta, which would take
        # the book back one update without any gap to show it.
        async with self._lock:
            for name, topic in good.items():
                # the snapshot and the membership in one step: no delta slips in between
                frame = self.snapshot_frame(*topic)
                self._sent_at[topic] = trio.current_time()
                topics[name] = topic
                client.symbols.add(topic[0])
                await client.send(frame)

    async def _unsubscribe(self, client: FakeClient, req_id: str | None, args: list[str]) -> None:
        """All or nothing, like a subscribe: the topics stop, one ack."""
        topics: dict[str, Topic] = client.state["topics"]
        missing = [name for name in args if name not in topics]
        if missing:
            await self._refuse(client, "unsubscribe", req_id, f"error:handler not found,topic:{missing[0]}")
            return
        async with self._lock:  # no delta of these topics after the ack
            for name in args:
                del topics[name]
            client.symbols = {t[0] for t in topics.values()}
        await client.send(self._ack(client, "unsubscribe", req_id))


class FakeBybitFutures(FakeBybitSpot):
    """Bybit linear at ``ws://127.0.0.1:<port>/v5/public/linear``: fixed decimals
    (``"65114.20"``, ``"6.054"``), ``type`` before ``ts`` at depths 50 and up,
    linear ack shapes, no per-request args limit."""

    venue_id: ClassVar[str] = "bybit_futures"
    path: ClassVar[str] = "/v5/public/linear"
    price_decimals: ClassVar[int] = 2
    qty_decimals: ClassVar[int] = 3
    trim_zeros: ClassVar[bool] = False
    ts_before_type: ClassVar[tuple[int, ...]] = (1,)
    max_args_per_request: ClassVar[int | None] = None
    linear_acks: ClassVar[bool] = True


def _diff(old: dict[str, str], new: dict[str, str], *, reverse: bool) -> list[Level]:
    changed = [(p, q) for p, q in new.items() if old.get(p) != q]
    changed += [(p, "0") for p in old if p not in new]
    return _sorted(changed, reverse)


def _sorted(levels: list[Level], reverse: bool) -> list[Level]:
    return sorted(levels, key=lambda lv: Decimal(lv[0]), reverse=reverse)


__all__ = ["FakeBybitFutures", "FakeBybitSpot", "ClientOp"]
