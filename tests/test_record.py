"""Record raw traffic while running, replay it offline: same books, same integrity results."""

from __future__ import annotations

import json
import subprocess
import sys

import trio

from trio_books import load_config_text
from trio_books.model import BookState
from trio_books.record import Recorder, read_records, replay
from trio_books.runner import build_store, run_venues
from trio_books.testing import FakeBinanceSpot
from trio_books.testing.harness import converge
from trio_books.venues import ConnectionSpec, available


async def test_record_then_replay_reproduces_books_and_failures(nursery, tmp_path):
    fake = await nursery.start(FakeBinanceSpot(["BTCUSDT", "ETHUSDT"], rate=50).serve)
    cfg = load_config_text(fake.config_toml(depth=100, backoff_base=0.05, backoff_cap=0.1))
    store = build_store(cfg)
    recorder = Recorder(str(tmp_path / "rec"), max_bytes=5_000)  # small, to force rotation
    async with trio.open_nursery() as inner:
        inner.start_soon(run_venues, cfg, store, recorder)
        with trio.fail_after(10):
            while not all(e.state is BookState.LIVE for e in store.entries()):
                await store.wait_change()
        await trio.sleep(0.3)
        fake.skip_next_update("BTCUSDT")
        with trio.fail_after(10):
            while store.venues["binance_spot"].book_resyncs.get("gap", 0) == 0:
                await trio.sleep(0.02)
            while not all(e.state is BookState.LIVE for e in store.entries()):
                await store.wait_change()
        for s in fake.symbols:
            await converge(lambda s=s: (store.view("binance_spot", s, 20).bids, store.view("binance_spot", s, 20).asks)
                           if store.state("binance_spot", s) is BookState.LIVE else None, fake, s)
        live_tops = {s: (store.view("binance_spot", s).bids[0], store.view("binance_spot", s).asks[0]) for s in fake.symbols}
        inner.cancel_scope.cancel()
    recorder.close()
    assert len(recorder.files) >= 2  # rotated
    records = list(read_records(recorder.files))
    assert {r["dir"] for r in records} >= {"connect", "rx", "rest"}
    results = replay(records)
    btc, eth = results[("binance_spot", "BTCUSDT")], results[("binance_spot", "ETHUSDT")]
    assert btc.failures == {"gap": 1} and not eth.failures.get("crossed")
    for s, r in results.items():
        assert r.live and (r.best_bid, r.best_ask) == live_tops[s[1]]
        assert r.applied > 0 and r.snapshots >= 1
    # the CLI prints the same and exits 1 because a check failed
    res = subprocess.run([sys.executable, "-m", "trio_books", "replay", *recorder.files], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stderr
    assert "binance_spot BTCUSDT: live" in res.stdout and "gap=1" in res.stdout
    assert res.stdout.strip().endswith("2 books, 1 failed checks")


def test_replay_of_a_missing_file_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "trio_books", "replay", str(tmp_path / "none.jsonl")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.startswith("error: cannot replay") and "Traceback" not in res.stderr


async def test_fake_serves_a_real_capture_and_the_service_matches_the_offline_replay(nursery, data_dir):
    """The real Binance capture (a recording in all but name) served by the fake:
    the live service must end with exactly the books the offline replay builds."""
    from tests.capture import records as capture_records
    from trio_books import open_books
    from trio_books.testing.replay import FakeRecording

    symbols = ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"]
    recs = list(capture_records("binance_spot/binance_spot_depth100ms_4sym_20211012_cryptofeed.capture.jsonl"))
    for r in recs:
        if r["dir"] == "rest":
            r["symbol"] = r["url"].split("symbol=")[1].split("&")[0]
    fake = await nursery.start(FakeRecording("binance_spot", symbols, recs).serve)
    offline = replay([{"dir": "connect", "venue": "binance_spot", "conn": 1, "symbols": symbols, "depth": 1000}]
                     + [{**r, "venue": "binance_spot", "conn": 1} for r in recs if r["dir"] != "connect"])
    async with open_books(load_config_text(fake.config_toml(depth=1000))) as books:
        with trio.fail_after(20):
            await fake.finished.wait()
            await books.wait_live("binance_spot")
        for s in symbols:  # the last frames sent may still be on their way: wait for the book to reach them
            want = offline[("binance_spot", s)]
            assert want.live
            with trio.fail_after(10):
                async for view in books.updates("binance_spot", s, depth=1):
                    if view.bids and view.asks and (view.bids[0], view.asks[0]) == (want.best_bid, want.best_ask):
                        break
        assert books.statistics()["binance_spot"].failures == {}


def _write_small_recording(rec: Recorder) -> None:
    spec = ConnectionSpec("ws://127.0.0.1:1", "http://127.0.0.1:1", ("BTCUSDT",), 100)
    conn = rec.new_connection("binance_spot", "ws://127.0.0.1:1/stream", spec)
    rec.frame("binance_spot", conn, "rest", b'{"lastUpdateId":10,"bids":[["100.0","1"]],"asks":[["101.0","1"]]}',
              url="http://127.0.0.1:1/api/v3/depth", symbol="BTCUSDT")
    for u in range(11, 41):
        rec.frame("binance_spot", conn, "rx", '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT",'
                  f'"U":{u},"u":{u},"b":[["100.0","{u}"]],"a":[]}}}}')


def test_a_recording_cut_by_a_kill_replays_every_complete_line_and_says_where_it_ended(tmp_path):
    rec = Recorder(str(tmp_path / "rec"))
    _write_small_recording(rec)
    rec.flush()  # what the writer task does every second
    (path,) = rec.files
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(open(path, "rb").read())  # what a SIGKILL leaves: flushed data, no gzip trailer
    rec.close()
    res = subprocess.run([sys.executable, "-m", "trio_books", "replay", str(cut)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "binance_spot BTCUSDT: live" in res.stdout and "applied 30" in res.stdout
    assert f"damaged: {cut}: ends early after line 32" in res.stdout


def test_damaged_lines_and_empty_recordings_are_said_and_exit_1(tmp_path):
    rec = Recorder(str(tmp_path / "rec"), compress=False)
    _write_small_recording(rec)
    rec.close()
    (path,) = rec.files
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("[1, 2]\nnot json\n")
    res = subprocess.run([sys.executable, "-m", "trio_books", "replay", path], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "binance_spot BTCUSDT: live" in res.stdout
    assert f"damaged: {path}:33: not a JSON object (skipped)" in res.stdout and f"{path}:34" in res.stdout
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    res = subprocess.run([sys.executable, "-m", "trio_books", "replay", str(empty)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "holds no connection" in res.stderr


def test_every_venue_recorded_replays_live_with_no_failure(nine_venues):
    """BingX included: its subscribe requests are replayed, so its acks (matched by
    request id) make its pushes ours (they were all dropped as unrequested)."""
    live = {(r["venue"], r["symbol"]) for r in nine_venues if r["dir"] == "live"}
    results = replay(nine_venues)
    assert set(results) == live and len(live) == 2 * len(available())
    for key, r in results.items():
        assert r.live and not r.failures, (key, r)
        assert r.applied + r.snapshots > 10


def test_ten_deleted_lines_are_one_failure_per_book(nine_venues):
    """A gap is counted once, with the resync it needs — not once per event after it."""
    by_venue: dict[str, list[int]] = {}
    for i, r in enumerate(nine_venues):
        if r["dir"] == "rx":
            by_venue.setdefault(r["venue"], []).append(i)
    drop = {i for idx in by_venue.values() for i in idx[len(idx) // 2: len(idx) // 2 + 10]}
    results = replay(r for i, r in enumerate(nine_venues) if i not in drop)
    for (venue, symbol), r in results.items():
        if venue == "bingx_spot":  # full snapshots only: nothing to lose
            assert not r.failures
        else:
            assert sum(r.failures.values()) == 1, (venue, symbol, r.failures)


def test_a_book_live_in_the_recording_and_never_live_in_replay_fails(nine_venues, tmp_path):
    """Binance's snapshots taken out: the books cannot sync, and that is a failure, exit 1."""
    kept = [r for r in nine_venues if not (r["venue"] == "binance_spot" and r["dir"] == "rest")]
    results = replay(kept)
    assert results[("binance_spot", "BTCUSDT")].failures == {"never_live": 1}
    path = tmp_path / "no-snapshots.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    res = subprocess.run([sys.executable, "-m", "trio_books", "replay", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "binance_spot BTCUSDT: not live" in res.stdout and "never_live=1" in res.stdout


async def test_the_recorder_writes_from_its_own_task_and_marks_what_it_dropped(tmp_path, monkeypatch):
    import trio_books.record as record_mod

    monkeypatch.setattr(record_mod, "FLUSH_EVERY", 0.01)
    rec = Recorder(str(tmp_path / "rec"), max_pending=2_000)
    _write_small_recording(rec)  # 32 records, ~4 kB: the queue holds about half
    assert rec.files == [] and rec.dropped > 0  # nothing touched the disk from the caller
    async with trio.open_nursery() as nursery:
        await nursery.start(rec.run)
        with trio.fail_after(10):
            while not rec.files:  # the writer thread's first batch
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    rec.close()
    damage: list[str] = []
    records = list(read_records(rec.files, damage))
    assert any(r["dir"] == "dropped" for r in records)
    assert damage and "the recorder dropped" in damage[0]
