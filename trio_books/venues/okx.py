"""OKX V5 spot: the public ``books`` channel (400 levels), optionally REST-seeded.

Protocol (OKX V5 docs, "WS / Order book channel", "Connect", "GET / Order book";
see ``shared/protocols/okx-v5.md``):

* Connect to ``/ws/v5/public`` and send ``{"op":"subscribe","args":[{"channel":
  "books","instId":X}, ...]}``; OKX acks each arg once (``{"event":"subscribe"}``,
  duplicates happen) or answers ``{"event":"error","code":...,"msg":...}``;
  an error naming one of our instruments (``60018``: ``...instId:X doesn't
  exist...``, with no ``arg``) is a :class:`~trio_books.errors.SymbolRejected`
  of X (OKX answers each arg alone: the others of the request go on), any
  other error a connection-level :class:`~trio_books.errors.VenueRejected`.
* Every subscribe and unsubscribe request counts toward 480 per connection per
  hour. The feed has no clock, so it counts them over the connection's life:
  a resync that would pass 480 gets no per-book path (``resubscribe`` returns
  ``None``) and the connection starts afresh with a fresh budget.
* A book frame is ``{"arg":{...},"action":"snapshot"|"update","data":[{"asks":
  [[px, sz, "0", n], ...],"bids":[...],"ts":"<ms>","checksum":<int>,
  "prevSeqId":<int>,"seqId":<int>}]}``. Size ``"0"`` deletes a level.
* The chain: every frame's ``prevSeqId`` equals the previous frame's ``seqId``.
  The snapshot has ``prevSeqId = -1``. An unchanged book is confirmed by an empty
  update with ``seqId == prevSeqId``; after maintenance a frame may carry
  ``seqId < prevSeqId``. The one rule ``prevSeqId == last`` accepts both.
* ``checksum`` is the signed CRC32 of the top 25 levels interleaved
  ``bid1:ask1:bid2:ask2...`` as ``price:size`` in OKX's own text. Since June 2026
  OKX sends ``0`` there: ``0`` means "no checksum" (never a mismatch); any other
  value (older data, replays, fakes) is verified.
* Keep-alive: after N < 30 s without any frame send the text ``ping``; OKX
  answers the text ``pong`` (not JSON).
* REST-seeded start (``options.rest_snapshot``; OKX announced it may stop sending
  the initial snapshot): buffer updates and ignore any pushed snapshot; fetch
  ``GET /api/v5/market/books?instId=X&sz=400`` (it carries ``seqId``); fetch
  again while its ``seqId`` is below the first buffered ``prevSeqId``; drop
  updates with ``seqId <= snapshot seqId``; the first kept one must satisfy
  ``prevSeqId <= snapshot seqId < seqId``; then chain as above. A REST
  ``code`` ``51001`` ("Instrument ID does not exist") refuses the symbol.

Pure: no Trio, no I/O.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from itertools import chain
from typing import Any, Final

import attrs
import orjson

from ..book import OrderBook
from ..errors import (
    BadFrame,
    SequenceGap,
    SnapshotUnusable,
    SymbolRejected,
    VenueRejected,
)
from ..model import BEAT, UNKNOWN, UNREQUESTED, Delta, Level, Planned, Snapshot, Verdict
from ._spec import ConnectionSpec, Heartbeat, RestBudget, Subscription, Venue

CHANNEL: Final = "books"
DEPTH: Final = 400
"""Levels per side of the ``books`` channel and the most ``GET /api/v5/market/books`` returns."""
CHECKSUM_LEVELS: Final = 25
MAX_CHANNELS_PER_CONNECTION: Final = 29
"""OKX recommends fewer than 30 deep (50/400-level) book channels per connection."""
MAX_REQUEST_BYTES: Final = 64 * 1024
"""A subscribe request's args must stay within 64 KB."""
OPS_PER_CONNECTION: Final = 480
"""Subscribe/unsubscribe/login requests allowed per connection per hour."""
UNKNOWN_INSTRUMENT: Final = re.compile(r"instId:(\S+?) doesn't exist")
"""How an ``event: error`` names the instrument it refuses (``60018``)."""
REST_UNKNOWN_INSTRUMENT: Final = "51001"
SERVICE_UPGRADE_NOTICE: Final = "64008"
PING: Final = "ping"
PONG: Final = "pong"


def checksum(bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """OKX's book checksum: signed CRC32 over the best 25 bids and asks (best
    first), interleaved as ``bid:ask:bid:ask...`` with each level written as
    ``price:size`` in the venue's exact text; a shorter side is just skipped."""
    bids, asks = bids[:CHECKSUM_LEVELS], asks[:CHECKSUM_LEVELS]
    m = min(len(bids), len(asks))
    # "price:size" pairs joined by ":" are just every field joined by ":"; past the
    # shorter side only the longer one has levels left, in order
    levels = [level for pair in zip(bids, asks) for level in pair]
    levels += bids[m:] or asks[m:]
    crc = zlib.crc32(":".join(chain.from_iterable(levels)).encode("ascii"))
    return crc - (1 << 32) if crc >= 1 << 31 else crc


@attrs.define
class SeqIdChain:
    """The ``prevSeqId``/``seqId`` chain of one instrument.

    From a pushed snapshot the chain is exact: an update applies only when its
    ``prevSeqId`` equals the last ``seqId`` (which also covers the keep-alive
    ``seqId == prevSeqId`` and the maintenance reset ``seqId < prevSeqId``).
    From a REST snapshot (``rest=True``) it first bridges: updates with
    ``seqId <= snapshot seqId`` are stale, the first kept one must have
    ``prevSeqId <= snapshot seqId < seqId``.

    A snapshot without ``seqId`` (frames before OKX added the fields, like the
    2022 capture) leaves the chain unarmed: only updates without ids apply, and
    the checksum is the only check.
    """

    rest: bool = False
    last: int | None = None
    bridged: bool = True

    def on_snapshot(self, snap: Snapshot, buffered: Sequence[Delta]) -> bool:
        seq = snap.update_id
        if self.rest:
            if seq is None:
                raise BadFrame("REST snapshot without seqId")
            first_prev = buffered[0].prev_id if buffered else None
            if first_prev is not None and seq < first_prev:
                return False  # older than the buffered stream: fetch again
        self.last = seq
        self.bridged = not self.rest
        return True

    def check(self, delta: Delta) -> Verdict:
        prev, seq = delta.prev_id, delta.final_id
        if self.last is None:
            if prev is None and seq is None:
                return Verdict.APPLY  # legacy data: no chain to check
            return Verdict.GAP  # ids appeared: start again from a snapshot that has them
        if prev is None or seq is None:
            raise BadFrame("update without seqId/prevSeqId")
        if prev == self.last:
            self.last, self.bridged = seq, True
            return Verdict.APPLY
        if not self.bridged:
            if seq <= self.last:
                return Verdict.SKIP  # already in the REST snapshot
            if prev <= self.last < seq:
                self.last, self.bridged = seq, True
                return Verdict.APPLY
        return Verdict.GAP


def _levels(raw: Any, side: str) -> list[Level]:
    """``[[px, sz, "0", n], ...]`` -> ``[(px, sz), ...]``, keeping OKX's text."""
    if type(raw) is not list:
        raise BadFrame(f"{side} is not an array")
    out: list[Level] = []
    append = out.append
    for level in raw:
        if type(level) is not list or len(level) < 2:
            raise BadFrame(f"bad {side} level {str(level)[:60]}")
        price, size = level[0], level[1]
        if type(price) is not str or type(size) is not str:
            raise BadFrame(f"{side} price/size are not strings: {str(level)[:60]}")
        append((price, size))
    return out


def _int_or_none(data: dict, key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if type(value) is not int:
        raise BadFrame(f"{key} is not an integer: {str(value)[:40]}")
    return value


def _ts(data: dict) -> float | None:
    ts = data.get("ts")
    if type(ts) is str and ts.isdigit():
        return int(ts) / 1000.0
    return None


class OkxFeed:
    """One ``/ws/v5/public`` connection carrying ``books`` for some instruments."""

    def __init__(self, spec: ConnectionSpec) -> None:
        self.spec = spec
        self.symbols = spec.symbols
        self.rest_snapshots = bool(spec.options.get("rest_snapshot", False))
        self._by_wire = {s.upper(): s for s in spec.symbols}
        self._snapshotted: set[str] = set()
        self._next_id = 0
        self.ops = 0  # subscribe/unsubscribe requests made on this connection
        self.url = spec.ws_base if spec.ws_base.endswith("/ws/v5/public") else f"{spec.ws_base}/ws/v5/public"

    # --- outbound ---------------------------------------------------------------------
    def subscribe(self) -> list[Subscription]:
        """``subscribe`` requests for every instrument, each within OKX's 64 KB
        request limit (with at most 29 instruments per connection: one frame)."""
        frames: list[Subscription] = []
        chunk: list[str] = []
        size = 0
        for symbol in self.symbols:
            arg_size = len(orjson.dumps({"channel": CHANNEL, "instId": symbol.upper()})) + 1
            if chunk and size + arg_size > MAX_REQUEST_BYTES - 64:
                frames.append(self._request("subscribe", chunk))
                chunk, size = [], 0
            chunk.append(symbol)
            size += arg_size
        if chunk:
            frames.append(self._request("subscribe", chunk))
        return frames

    def resubscribe(self, symbol: str, *, unsubscribe: bool = True) -> list[Subscription] | None:
        """Resync one instrument (OKX's step 7): unsubscribe, then subscribe; a new
        snapshot follows. ``None`` when that would pass the connection's
        :data:`OPS_PER_CONNECTION` requests: the connection starts afresh."""
        if self.ops + (2 if unsubscribe else 1) > OPS_PER_CONNECTION:
            return None
        subs = [self._request("unsubscribe", [symbol])] if unsubscribe else []
        return subs + [self._request("subscribe", [symbol])]

    def _request(self, op: str, symbols: list[str]) -> Subscription:
        self._next_id += 1
        self.ops += 1
        args = [{"channel": CHANNEL, "instId": s.upper()} for s in symbols]
        return Subscription(orjson.dumps({"id": str(self._next_id), "op": op, "args": args}).decode(), tuple(symbols))

    # --- inbound ----------------------------------------------------------------------
    def parse(self, raw: str | bytes) -> list:
        if raw == PONG or raw == b"pong":
            return [BEAT]  # the answer to our text ping; not JSON
        msg = orjson.loads(raw)
        if type(msg) is not dict:
            raise BadFrame("frame is not a JSON object")
        data = msg.get("data")
        if data is not None:
            arg = msg.get("arg")
            if type(arg) is not dict or arg.get("channel") != CHANNEL:
                return [UNKNOWN]  # another channel's push: not ours
            return self._book(arg, msg.get("action"), data)
        event = msg.get("event")
        if event is None:
            return [UNKNOWN]
        if event in ("subscribe", "unsubscribe", "channel-conn-count"):
            return []  # acks, one per arg; duplicates are harmless
        if event == "error":
            return [self._refused(msg)]
        if event == "channel-conn-count-error":
            raise VenueRejected(f"venue refused the subscription: connection count {msg.get('connCount')} on {msg.get('channel')}")
        if event == "notice":
            if msg.get("code") == SERVICE_UPGRADE_NOTICE:  # ~60 s ahead: the replacement opens first
                return [Planned(f"venue notice {SERVICE_UPGRADE_NOTICE}: {str(msg.get('msg'))[:160]}")]
            return []
        return [UNKNOWN]

    def _refused(self, msg: dict) -> SymbolRejected:
        """The fault of the instrument an error names (its ``arg``, else the
        ``instId:X doesn't exist`` of its text); an error naming none of ours
        ends the connection."""
        text = f"venue error {msg.get('code')}: {str(msg.get('msg'))[:200]}"
        arg = msg.get("arg")
        inst = arg.get("instId") if type(arg) is dict else None
        if inst is None:
            m = UNKNOWN_INSTRUMENT.search(str(msg.get("msg")))
            inst = m[1] if m is not None else None
        symbol = self._by_wire.get(inst) if type(inst) is str else None
        if symbol is None:
            raise VenueRejected(text)
        return SymbolRejected(symbol, text)

    def _book(self, arg: dict, action: object, data: object) -> list:
        symbol = self._by_wire.get(arg.get("instId"))  # type: ignore[arg-type]
        if symbol is None:
            return [UNREQUESTED]
        if type(data) is not list or len(data) != 1 or type(data[0]) is not dict:
            raise BadFrame("data is not a one-element array of objects")
        d = data[0]
        bids = _levels(d.get("bids"), "bids")
        asks = _levels(d.get("asks"), "asks")
        seq = _int_or_none(d, "seqId")
        prev = _int_or_none(d, "prevSeqId")
        crc = _int_or_none(d, "checksum")
        if crc == 0:
            crc = None  # OKX fills 0 since June 2026: no checksum, never a mismatch
        ts = _ts(d)
        if action == "snapshot":
            if self.rest_snapshots:
                return []  # REST-seeded: the pushed snapshot is ignored (OKX's procedure)
            self._snapshotted.add(symbol)
            return [Snapshot(symbol, bids, asks, seq, ts, crc)]
        if action == "update":
            if not self.rest_snapshots and symbol not in self._snapshotted:
                raise SequenceGap(
                    symbol, "update before any snapshot (the venue sent no initial snapshot; "
                    "set options.rest_snapshot = true for the REST-seeded start)"
                )
            if (seq is None) != (prev is None):
                raise BadFrame("update with only one of seqId/prevSeqId")
            return [Delta(symbol, bids, asks, seq, seq, prev, ts, crc)]
        raise BadFrame(f"unknown action {str(action)[:40]!r}")

    # --- sequencing, REST, checksum ------------------------------------------------------
    def new_sequencer(self, symbol: str) -> SeqIdChain:
        return SeqIdChain(rest=self.rest_snapshots)

    def snapshot_url(self, symbol: str) -> str:
        return f"{self.spec.rest_base}/api/v5/market/books?instId={symbol.upper()}&sz={min(self.spec.depth, DEPTH)}"

    def parse_snapshot(self, symbol: str, body: bytes) -> Snapshot:
        msg = orjson.loads(body)
        if type(msg) is not dict:
            raise BadFrame("snapshot is not a JSON object")
        code = msg.get("code")
        if code != "0":
            text = f"snapshot refused: code {code}: {str(msg.get('msg'))[:160]}"
            raise (SymbolRejected if code == REST_UNKNOWN_INSTRUMENT else SnapshotUnusable)(symbol, text)
        data = msg.get("data")
        if type(data) is not list or len(data) != 1 or type(data[0]) is not dict:
            raise BadFrame("snapshot data is not a one-element array of objects")
        d = data[0]
        seq = _int_or_none(d, "seqId")
        if seq is None:
            raise BadFrame("snapshot without seqId")
        return Snapshot(symbol, _levels(d.get("bids"), "bids"), _levels(d.get("asks"), "asks"), seq, _ts(d))

    def verify(self, book: OrderBook, event: Snapshot | Delta) -> bool:
        if event.checksum is None:
            return True
        return checksum(book.top_bids(CHECKSUM_LEVELS), book.top_asks(CHECKSUM_LEVELS)) == event.checksum


OKX_SPOT: Final = Venue(
    id="okx_spot",
    # Port 8443 is retired (2026-10-31); host and path are unchanged on 443.
    ws_url="wss://ws.okx.com",
    rest_url="https://openapi.okx.com",
    connect=OkxFeed,
    # Ping after 25 s without any frame (the docs: N < 30); the pong (or any
    # frame) must follow within 5 s, before OKX's own 30 s cut-off.
    heartbeat=Heartbeat(
        watchdog=40.0, ping_interval=25.0, ping_text=PING, ping_when_idle=True, pong_timeout=5.0, pong_on="any"
    ),
    max_symbols_per_connection=MAX_CHANNELS_PER_CONNECTION,
    depths=(DEPTH,),
    max_depth=DEPTH,
    default_depth=DEPTH,
    options={"rest_snapshot": bool},
    # GET /api/v5/market/books: 40 requests per 2 s per IP.
    rest_budget=RestBudget(weight_per_minute=1200, snapshot_weight=lambda depth: 1),
    # New connections: 3 per second per IP.
    connect_budget=(3, 1.0),
    maintains_window=True,  # it pushes the levels that enter its window: no proven-range tracking needed
    symbol_form=(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)+", "BASE-QUOTE, e.g. BTC-USDT"),
)
