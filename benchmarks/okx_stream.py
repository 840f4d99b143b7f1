"""A realistic OKX V5 ``books`` stream, deterministic per seed (the OKX benchmark's data).

What it imitates (OKX V5 public ``books`` channel, see ``shared/protocols/okx-v5.md``):

* frames ``{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot"|"update",
  "data":[{"asks":[[px,sz,"0",n],...],"bids":[...],"ts":"<ms>","checksum":<int>,
  "prevSeqId":<int>,"seqId":<int>}]}`` in OKX's field order;
* one 400-level ``snapshot`` per instrument first (``prevSeqId = -1``), then
  ``update`` frames whose ``prevSeqId`` is the instrument's previous ``seqId``;
  ``seqId`` grows by 1..40 (OKX's increments are not +1) from values above 2**31;
* 2..8 changes of the visible book per update, clustered near the top (a few far
  away). The channel shows a 400-level window of a deeper true book (~770 levels
  a side), so — as OKX does — a new level inside the window pushes the 400th one
  out (sent as a deletion), a removal pulls the 401st in, and changes deeper than
  the window are not sent at all; two changes of one level in the same update are
  sent once (the last state). An update lists ~6.7 levels on average, ~30% of
  them deletions (push-outs included);
* size ``"0"`` deletes a level; prices and sizes are decimal strings without
  trailing zeros (``"67012.3"``, ``"0.08"``), as OKX writes them; updates list asks
  ascending and bids descending;
* ``checksum`` is the signed CRC32 of the top 25 levels of the book *after* the
  frame, interleaved ``bid1:ask1:bid2:ask2…`` as ``price:size`` in the frame's own
  text (OKX's documented algorithm; OKX sends 0 since June 2026 — the
  ``zero_checksums`` payloads give that variant);
* instruments are not equally busy (BTC-USDT gets the most updates).

The checksum here is computed by this module's own code (:func:`okx_checksum`);
:func:`self_check` runs the whole stream through trio-books' OKX parser,
sequencer and checksum verification to show they agree.

``python -m benchmarks.okx_stream [--frames N]`` generates a stream, prints its
statistics and runs the self-check. Nothing here does I/O.
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import sys
import time
import zlib
from array import array
from collections.abc import Sequence

import orjson

# instId, base, quote, price decimals, size decimals, mid price (in ticks), smallest size (units), share of updates
INSTRUMENTS: tuple[tuple[str, str, str, int, int, int, int, float], ...] = (
    ("BTC-USDT", "BTC", "USDT", 1, 8, 670_123, 1_000, 0.34),          # tick 0.1, min size 0.00001
    ("ETH-USDT", "ETH", "USDT", 2, 6, 345_678, 100, 0.24),            # tick 0.01, min 0.0001
    ("SOL-USDT", "SOL", "USDT", 2, 6, 14_567, 1_000, 0.16),           # tick 0.01, min 0.001
    ("DOGE-USDT", "DOGE", "USDT", 5, 6, 12_345, 10_000_000, 0.13),    # tick 0.00001, min 10
    ("XRP-USDT", "XRP", "USDT", 4, 6, 5_234, 1_000_000, 0.13),        # tick 0.0001, min 1
)
WINDOW = 400
"""Levels per side the ``books`` channel shows."""
CHECKSUM_LEVELS = 25
MAX_OFFSET = 1000
"""True-book levels live at 1..MAX_OFFSET ticks from the mid (~77% occupied: ~770 per side)."""
FIRST_SEQ = 335_226_848_531
"""Live OKX seqIds are above 2**31 (this one was seen on BTC-USDT-SWAP in Aug 2026)."""
TS0 = 1_764_300_000_000


def instruments(n: int) -> list[str]:
    if not 1 <= n <= len(INSTRUMENTS):
        raise ValueError(f"between 1 and {len(INSTRUMENTS)} instruments")
    return [row[0] for row in INSTRUMENTS[:n]]


def instruments_response(names: Sequence[str], inst_type: str = "SPOT") -> dict:
    """``GET /api/v5/public/instruments?instType=…``: the fields clients read."""
    data = []
    if inst_type == "SPOT":
        for name, base, quote, pd, qd, _mid, min_units, _w in INSTRUMENTS:
            if name in names:
                data.append({
                    "instType": "SPOT", "instId": name, "uly": "", "instFamily": "", "baseCcy": base, "quoteCcy": quote,
                    "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "", "optType": "", "stk": "", "listTime": "1548133413000",
                    "expTime": "", "lever": "10", "tickSz": _text(1, pd), "lotSz": _text(1, qd), "minSz": _text(min_units, qd),
                    "ctType": "", "alias": "", "state": "live", "maxLmtSz": "9999999999", "maxMktSz": "1000000",
                })
    return {"code": "0", "msg": "", "data": data}


def _text(units: int, decimals: int) -> str:
    """``units`` of 10**-decimals as OKX writes it: no trailing zeros, no exponent."""
    if decimals == 0:
        return str(units)
    whole, frac = divmod(units, 10**decimals)
    frac_text = f"{frac:0{decimals}d}".rstrip("0")
    return f"{whole}.{frac_text}" if frac_text else str(whole)


def okx_checksum(bids: Sequence[str], asks: Sequence[str]) -> int:
    """OKX's book checksum from the ``"price:size"`` texts of the best levels
    (best first): take up to 25 of each side, interleave bid1, ask1, bid2, ask2, …
    (a shorter side's missing entries are skipped), join with ``:``, CRC32 of the
    ASCII bytes, read as a signed 32-bit integer."""
    parts: list[str] = []
    nb, na = min(len(bids), CHECKSUM_LEVELS), min(len(asks), CHECKSUM_LEVELS)
    for i in range(max(nb, na)):
        if i < nb:
            parts.append(bids[i])
        if i < na:
            parts.append(asks[i])
    value = zlib.crc32(":".join(parts).encode("ascii"))
    return value - 0x1_0000_0000 if value & 0x8000_0000 else value


class _Side:
    """One side of a true book: offsets (ticks away from the mid, 1 = best)."""

    __slots__ = ("offs", "piece", "size", "units")

    def __init__(self) -> None:
        self.offs: list[int] = []  # sorted ascending = best first
        self.units: dict[int, int] = {}
        self.size: dict[int, str] = {}  # size text of each level
        self.piece: dict[int, str] = {}  # "price:size" of each level (for the checksum)


class OkxBook:
    """The true book of one instrument and the 400-level window OKX shows of it."""

    def __init__(self, index: int, rng: random.Random) -> None:
        name, _b, _q, pd, qd, mid, min_units, _w = INSTRUMENTS[index]
        self.name, self.pd, self.qd, self.mid, self.min_units = name, pd, qd, mid, min_units
        self.mu = math.log(2500.0 / (mid / 10**pd))  # lognormal sizes around $2,500 a level
        self.bids, self.asks = _Side(), _Side()
        self._px: tuple[dict[int, str], dict[int, str]] = ({}, {})
        self.seq = FIRST_SEQ + 7_919_000 * index
        assert mid > MAX_OFFSET
        for side, is_bid in ((self.bids, True), (self.asks, False)):
            for off in range(1, MAX_OFFSET + 1):
                if rng.random() < 0.77:
                    self._put(side, is_bid, off, self._units(rng))

    def _units(self, rng: random.Random) -> int:
        return max(self.min_units, int(math.exp(self.mu + 1.5 * rng.gauss(0.0, 1.0)) * 10**self.qd))

    def price(self, is_bid: bool, off: int) -> str:
        cache = self._px[0 if is_bid else 1]
        text = cache.get(off)
        if text is None:
            text = cache[off] = _text(self.mid - off if is_bid else self.mid + off, self.pd)
        return text

    def _put(self, side: _Side, is_bid: bool, off: int, units: int) -> None:
        if off not in side.units:
            bisect.insort(side.offs, off)
        side.units[off] = units
        size = side.size[off] = _text(units, self.qd)
        side.piece[off] = f"{self.price(is_bid, off)}:{size}"

    def _drop(self, side: _Side, off: int) -> None:
        del side.offs[bisect.bisect_left(side.offs, off)]
        del side.units[off], side.size[off], side.piece[off]

    def checksum(self) -> int:
        b, a = self.bids, self.asks
        return okx_checksum([b.piece[o] for o in b.offs[:CHECKSUM_LEVELS]], [a.piece[o] for o in a.offs[:CHECKSUM_LEVELS]])

    def _change(self, rng: random.Random, side: _Side, is_bid: bool, out: dict[int, str | None]) -> bool:
        """One random change of the true book; what it does to the window goes to
        ``out`` (offset → size text, None = deletion; the last change of an offset
        wins). True when it changed the window (deeper changes are invisible)."""
        if rng.random() < 0.88:
            off = min(MAX_OFFSET, 1 + int(rng.expovariate(1 / 20.0)))  # near the top
        else:
            off = rng.randint(1, MAX_OFFSET)  # anywhere
        offs = side.offs
        if off in side.units:
            rank = bisect.bisect_left(offs, off)
            if rng.random() < 0.3:  # the level empties
                self._drop(side, off)
                if rank < WINDOW:
                    out[off] = None
                    if len(offs) >= WINDOW:  # the 401st level moves into the window
                        inner = offs[WINDOW - 1]
                        out[inner] = side.size[inner]
                    return True
            else:
                self._put(side, is_bid, off, self._units(rng))
                if rank < WINDOW:
                    out[off] = side.size[off]
                    return True
        else:
            self._put(side, is_bid, off, self._units(rng))
            rank = bisect.bisect_left(offs, off)
            if rank < WINDOW:
                out[off] = side.size[off]
                if len(offs) > WINDOW:  # the 400th level falls out of the window
                    out[offs[WINDOW]] = None
                return True
        return False

    def _wire(self, is_bid: bool, changes: dict[int, str | None]) -> list[list[str]]:
        out = []
        for off in sorted(changes):  # best first: bids descending, asks ascending
            size = changes[off]
            if size is None:
                out.append([self.price(is_bid, off), "0", "0", "0"])
            else:
                out.append([self.price(is_bid, off), size, "0", str(1 + (off * 7 + len(size)) % 11)])
        return out

    def update(self, rng: random.Random, ts_ms: int) -> tuple[bytes, int, int]:
        """Random changes until 2..8 of them changed the 400-level window (changes
        deeper than that happen too, unseen, as on OKX); the ``update`` frame:
        ``(json, seqId, levels in the frame)``."""
        bids: dict[int, str | None] = {}
        asks: dict[int, str | None] = {}
        todo = rng.randint(2, 8)
        while todo:
            if rng.random() < 0.5:
                todo -= self._change(rng, self.bids, True, bids)
            else:
                todo -= self._change(rng, self.asks, False, asks)
        prev = self.seq
        self.seq = prev + rng.randint(1, 40)
        a, b = self._wire(False, asks), self._wire(True, bids)
        frame = orjson.dumps({"arg": {"channel": "books", "instId": self.name}, "action": "update", "data": [{
            "asks": a, "bids": b, "ts": str(ts_ms), "checksum": self.checksum(), "prevSeqId": prev, "seqId": self.seq}]})
        return frame, self.seq, len(a) + len(b)

    def snapshot(self, ts_ms: int) -> tuple[bytes, int, int]:
        """The ``snapshot`` frame of the current window."""
        a = self._wire(False, {o: self.asks.size[o] for o in self.asks.offs[:WINDOW]})
        b = self._wire(True, {o: self.bids.size[o] for o in self.bids.offs[:WINDOW]})
        frame = orjson.dumps({"arg": {"channel": "books", "instId": self.name}, "action": "snapshot", "data": [{
            "asks": a, "bids": b, "ts": str(ts_ms), "checksum": self.checksum(), "prevSeqId": -1, "seqId": self.seq}]})
        return frame, self.seq, len(a) + len(b)

    def window(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The levels a client should hold now: (bids, asks), best first, as (price, size) text."""
        return ([(self.price(True, o), self.bids.size[o]) for o in self.bids.offs[:WINDOW]],
                [(self.price(False, o), self.asks.size[o]) for o in self.asks.offs[:WINDOW]])


class OkxStream:
    """A fixed stream, identical for every client: one snapshot per instrument
    (``n_snap`` frames), then ``n_body`` updates spread over the instruments by weight."""

    def __init__(self, n_instruments: int, n_body: int, *, seed: int = 20261128) -> None:
        rng = random.Random(seed)
        self.symbols = instruments(n_instruments)
        self.books = [OkxBook(i, rng) for i in range(n_instruments)]
        self.sym = array("B")  # instrument index of each frame
        self.seq = array("q")  # seqId of each frame
        self.levels = array("H")  # levels listed in each frame
        self.payloads: list[bytes] = []
        for i, book in enumerate(self.books):
            self._add(i, book.snapshot(TS0))
        self.n_snap = len(self.payloads)
        weights = [INSTRUMENTS[i][7] for i in range(n_instruments)]
        for k, i in enumerate(rng.choices(range(n_instruments), weights=weights, k=n_body)):
            self._add(i, self.books[i].update(rng, TS0 + 1 + k // 20))
        self.n_body = n_body
        self.final_seq = [book.seq for book in self.books]

    def _add(self, i: int, ev: tuple[bytes, int, int]) -> None:
        payload, seq, n = ev
        self.payloads.append(payload)
        self.sym.append(i)
        self.seq.append(seq)
        self.levels.append(n)

    def zero_checksums(self) -> list[bytes]:
        """The same frames with ``"checksum":0``, as OKX sends them since June 2026."""
        out = []
        for p in self.payloads:
            head, sep, tail = p.rpartition(b',"checksum":')
            out.append(head + sep + b"0" + tail[tail.index(b","):])
        return out

    def meta(self) -> dict:
        """What the orchestrator needs to mark the measuring window and count levels."""
        return {"symbols": self.symbols, "n_snap": self.n_snap, "n_body": self.n_body, "final_seq": self.final_seq,
                "sym": list(self.sym), "seq": list(self.seq), "levels": list(self.levels),
                "bytes": sum(len(p) for p in self.payloads),
                "bytes_snapshots": sum(len(p) for p in self.payloads[: self.n_snap])}


def self_check(stream: OkxStream, payloads: Sequence[bytes] | None = None) -> dict:
    """Run every frame through trio-books' own OKX parser, ``SeqIdChain`` and
    ``verify`` (the core's ``SymbolSync``, depth 400); raise on any rejection and
    compare the final books with the generator's windows. Returns counts."""
    from trio_books.model import Snapshot
    from trio_books.sync import SymbolSync
    from trio_books.venues import ConnectionSpec, get_venue

    proto = get_venue("okx_spot").connect(ConnectionSpec("ws://127.0.0.1:1", None, tuple(stream.symbols), WINDOW, {}))
    counts = {"frames": 0, "checksums_verified": 0, "checksums_failed": 0}

    def verify(book, event) -> bool:
        ok = proto.verify(book, event)
        counts["checksums_verified" if ok else "checksums_failed"] += 1
        return ok

    syncs = {s: SymbolSync(s, WINDOW, proto.new_sequencer(s), verify, proto.rest_snapshots) for s in stream.symbols}
    for raw in stream.payloads if payloads is None else payloads:
        counts["frames"] += 1
        for ev in proto.parse(raw):
            sync = syncs[ev.symbol]
            if type(ev) is Snapshot:
                sync.on_snapshot(ev)
            elif not sync.on_delta(ev):
                raise AssertionError(f"{ev.symbol}: an update was not applied ({ev.prev_id} -> {ev.final_id})")
    for book in stream.books:
        bids, asks = book.window()
        got = syncs[book.name].book
        if list(got.top_bids(WINDOW)) != bids or list(got.top_asks(WINDOW)) != asks:
            raise AssertionError(f"{book.name}: trio-books' book differs from the generator's window at the end")
        if syncs[book.name].update_id != book.seq:
            raise AssertionError(f"{book.name}: last seqId {syncs[book.name].update_id} != {book.seq}")
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.okx_stream", description=__doc__.split("\n", 1)[0])
    p.add_argument("--instruments", type=int, default=5)
    p.add_argument("--frames", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=20261128)
    args = p.parse_args(argv)
    t = time.perf_counter()
    s = OkxStream(args.instruments, args.frames, seed=args.seed)
    gen = time.perf_counter() - t
    meta = s.meta()
    body = meta["levels"][s.n_snap:]
    print(f"{len(s.payloads):,} frames ({s.n_snap} snapshots) generated in {gen:.1f} s; "
          f"update frames {(meta['bytes'] - meta['bytes_snapshots']) / s.n_body:.0f} bytes and "
          f"{sum(body) / len(body):.2f} levels on average; snapshots {meta['bytes_snapshots'] / s.n_snap / 1024:.1f} KB each")
    t = time.perf_counter()
    counts = self_check(s)
    print(f"trio-books' OKX parser + SeqIdChain + checksum verify: {counts} ({time.perf_counter() - t:.1f} s)")
    zero = self_check(s, s.zero_checksums())
    print(f"zero-checksum variant: {zero}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
