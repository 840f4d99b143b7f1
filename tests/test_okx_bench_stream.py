"""The OKX benchmark's generated stream is valid OKX: its own CRC32 matches the
documented examples, its seqId chain holds, and trio-books' OKX parser,
``SeqIdChain`` and checksum verification (through the core's ``SymbolSync``)
accept every frame and end with the generator's books. Pure: no sockets, no clocks."""

from __future__ import annotations

import orjson
import pytest

from benchmarks.okx_stream import WINDOW, OkxStream, okx_checksum, self_check
from trio_books.errors import ChecksumMismatch
from trio_books.model import Snapshot
from trio_books.sync import SymbolSync
from trio_books.venues import ConnectionSpec, get_venue


@pytest.fixture(scope="module")
def stream() -> OkxStream:
    return OkxStream(5, 3000, seed=7)


def test_checksum_matches_the_documented_examples() -> None:
    assert okx_checksum(["3366.1:7", "3366:6"], ["3366.8:9", "3368:8"]) == -1881014294
    assert okx_checksum(["3366.1:7"], ["3366.8:9", "3368:8", "3372:8"]) == 831078360


def test_shape_and_seq_chain(stream: OkxStream) -> None:
    last: dict[str, int] = {}
    for k, raw in enumerate(stream.payloads):
        msg = orjson.loads(raw)
        inst = msg["arg"]["instId"]
        d = msg["data"][0]
        assert list(d) == ["asks", "bids", "ts", "checksum", "prevSeqId", "seqId"]
        if k < stream.n_snap:
            assert msg["action"] == "snapshot" and d["prevSeqId"] == -1
            assert len(d["bids"]) == len(d["asks"]) == WINDOW
        else:
            assert msg["action"] == "update" and d["prevSeqId"] == last[inst] < d["seqId"]
            assert 1 <= len(d["bids"]) + len(d["asks"])
        assert d["checksum"] != 0 and d["seqId"] == stream.seq[k]
        last[inst] = d["seqId"]
    assert [last[s] for s in stream.symbols] == stream.final_seq


def test_trio_books_accepts_every_frame_and_checksum(stream: OkxStream) -> None:
    counts = self_check(stream)
    n = stream.n_snap + stream.n_body
    assert counts == {"frames": n, "checksums_verified": n, "checksums_failed": 0}
    assert self_check(stream, stream.zero_checksums())["checksums_verified"] == 0  # 0 means "no checksum"


def test_a_wrong_checksum_is_caught(stream: OkxStream) -> None:
    proto = get_venue("okx_spot").connect(ConnectionSpec("ws://127.0.0.1:1", None, tuple(stream.symbols), WINDOW, {}))
    syncs = {s: SymbolSync(s, WINDOW, proto.new_sequencer(s), proto.verify, False) for s in stream.symbols}
    frames = list(stream.payloads[: stream.n_snap + 1])
    msg = orjson.loads(frames[-1])
    msg["data"][0]["checksum"] ^= 0x5A5A
    frames[-1] = orjson.dumps(msg)
    with pytest.raises(ChecksumMismatch):
        for raw in frames:
            for ev in proto.parse(raw):
                (syncs[ev.symbol].on_snapshot if type(ev) is Snapshot else syncs[ev.symbol].on_delta)(ev)
