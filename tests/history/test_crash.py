"""A capture killed with SIGKILL: every closed file stays readable, its manifest
agrees with the files, and the next start records the gap (``capture_down``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

pq = pytest.importorskip("pyarrow.parquet")

from tests.chaos.test_matrix import fast_config  # noqa: E402
from trio_books import history  # noqa: E402
from trio_books.testing import fake_for  # noqa: E402
from trio_books.testing.harness import ServiceProcess  # noqa: E402

pytestmark = pytest.mark.e2e


def listed(root: Path) -> list[tuple[Path, dict]]:
    out = []
    for manifest in sorted(root.glob("venue=*/date=*/hour=*/manifest.json")):
        for f in json.loads(manifest.read_text())["files"]:
            out.append((manifest.parent / f["file"], f))
    return out


async def wait_files(root: Path, n: int, proc: ServiceProcess) -> None:
    with trio.fail_after(30):
        while len(listed(root)) < n:
            assert proc.proc.returncode is None, proc.log()
            await trio.sleep(0.1)


async def test_sigkill_keeps_closed_files_readable_and_the_next_start_notes_the_gap(nursery, tmp_path):
    out = tmp_path / "capture"
    fakes = [await nursery.start(fake_for(vid)(symbols, rate=50).serve)
             for vid, symbols in (("binance_spot", ["BTCUSDT", "ETHUSDT"]), ("okx_spot", ["BTC-USDT"]))]
    config = "\n".join(fast_config(fake, fake.venue_id) for fake in fakes)
    config += f'\n[sinks.parquet]\npath = "{out}"\nflush_interval = 0.2\nsnapshot_interval = 1\n'
    first = await ServiceProcess(config).start(nursery)
    await wait_files(out, 8, first)
    assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    run = json.loads(next((out / "_runs").glob("*.json")).read_text())
    assert run["ended"] is None  # killed: never closed

    for path, entry in listed(out):  # the manifest is the commit point: all it lists is whole
        table = pq.read_table(path)
        assert table.num_rows == entry["rows"], path
        ts = table["received_ts"].cast("int64")
        assert (ts[0].as_py(), ts[-1].as_py()) == (entry["first_us"], entry["last_us"])
    for path in out.glob("venue=*/date=*/hour=*/*.parquet"):  # and every closed (renamed) file is readable
        pq.read_metadata(path)

    # the next start: `trio-books capture --out` (the directory given wins over the file's)
    second = ServiceProcess(config.replace(f'path = "{out}"', f'path = "{tmp_path / "elsewhere"}"'))
    second.args[3:4] = ["capture", "--out", str(out)]
    await second.start(nursery)
    await wait_files(out, len(listed(out)) + 4, second)
    assert await second.stop() == 0
    assert "Traceback" not in second.log() and not (tmp_path / "elsewhere").exists()
    for path in out.glob("venue=*/date=*/hour=*/*.parquet"):  # nothing unlisted is left
        assert path in {p for p, _ in listed(out)}, path
    for manifest in out.glob("venue=*/date=*/hour=*/manifest.json"):  # each run's files merged: one per kind
        files = [(f["run"], f["kind"]) for f in json.loads(manifest.read_text())["files"]]
        assert len(files) == len(set(files)), files

    h = history.open(out)
    down = [g for g in h.gaps("binance_spot") if g.reason.startswith("capture_down")]
    assert len(down) == 1 and down[0].symbol == "*" and down[0].end_us > down[0].start_us
    with pytest.raises(history.InGap, match="capture_down"):
        h.book_at("binance_spot", "BTCUSDT", (down[0].start_us + down[0].end_us) / 2e6)
    before = h.book_at("binance_spot", "BTCUSDT", (down[0].start_us - 1) / 1e6, depth=5)
    after = h.book_at("binance_spot", "BTCUSDT", h.coverage("binance_spot")[-1][1], depth=5)
    assert len(before.bids) == 5 and len(after.asks) == 5

    cli = subprocess.run([sys.executable, "-m", "trio_books", "history", "book", "okx_spot", "BTC-USDT", "--at",
                          after.at.isoformat(), "--depth", "3", "--dir", str(out)], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert len(json.loads(cli.stdout)["bids"]) == 3
    cli = subprocess.run([sys.executable, "-m", "trio_books", "history", "book", "okx_spot", "BTC-USDT", "--at",
                          "2001-01-01T00:00:00Z", "--dir", str(out)], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 1 and cli.stderr.startswith("error: okx_spot BTC-USDT at 2001-01-01") and "Traceback" not in cli.stderr
