"""The capture directory: partitions, Parquet schemas, manifests, run files.

::

    DIR/venue=binance_spot/date=2026-12-06/hour=13/
        changes-<run>-000001.parquet      one row per changed level
        snapshots-<run>-000001.parquet    one row per full book
        manifest.json                     files, row counts, time ranges, gap windows
    DIR/_runs/<run>.json                  each capture run: started, flushed until, ended

Partitions are Hive-style (``venue=…``), so DuckDB, Polars and pyarrow read the
venue, date and hour from the path. A file becomes part of the capture when its
partition's manifest lists it (files are written under a temporary name, renamed,
then listed); the next start deletes anything a crash left unlisted.

Prices and quantities are the venue's decimal text, exactly as the live book
serves it (dictionary encoding makes repeated prices cheap). Decimal128 was not chosen: a column has one scale, but precision
differs by symbol and changes when a venue changes a tick size, and the text is
what checksums (OKX, Kraken) and the served book use. ``CAST(price AS
DECIMAL(38, 12))`` in DuckDB or ``pl.col("price").cast(pl.Decimal(38, 12))`` turns
it into numbers when wanted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

HOUR_US = 3_600_000_000
MANIFEST = "manifest.json"
RUNS = "_runs"
FORMAT = 1
TS = pa.timestamp("us", tz="UTC")
LEVEL = pa.struct([("price", pa.string()), ("qty", pa.string())])

CHANGES = pa.schema([
    ("symbol", pa.string()),
    ("seq", pa.int64()),  # the book's row number in its capture run: the levels of one change share it
    ("received_ts", TS),  # when the service applied the change
    ("exchange_ts", TS),  # the venue's timestamp of the event, where it has one
    ("update_id", pa.int64()),  # the venue's update id the change ends on, where it has one
    ("side", pa.string()),  # "bid" or "ask"
    ("price", pa.string()),
    ("qty", pa.string()),  # "0" (in the venue's spelling) removes the level
])

SNAPSHOTS = pa.schema([
    ("symbol", pa.string()),
    ("seq", pa.int64()),
    ("received_ts", TS),
    ("exchange_ts", TS),
    ("update_id", pa.int64()),
    ("depth", pa.int32()),  # levels the live book keeps per side (null: all)
    ("tracked", pa.bool_()),  # the book tracks the range it provably knows (see README)
    ("bid_bound", pa.string()),  # the worst proven bid (null: the whole side)
    ("ask_bound", pa.string()),
    ("bids", pa.list_(LEVEL)),  # best first, every level the book holds
    ("asks", pa.list_(LEVEL)),
])

SCHEMAS = {"changes": CHANGES, "snapshots": SNAPSHOTS}


def hour_of(ts_us: int) -> int:
    return ts_us // HOUR_US


def partition(root: Path, venue: str, hour: int) -> Path:
    day = time.strftime("%Y-%m-%d", time.gmtime(hour * 3600))
    return root / f"venue={venue}" / f"date={day}" / f"hour={hour % 24:02d}"


def write_json(path: Path, obj: Any) -> None:
    """Write then rename: a reader (or a crash) sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(json.dumps(obj, indent=1).encode())
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    """A manifest or run file; ValueError (one line) when it is not one."""
    try:
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    if type(obj) is not dict or obj.get("format") != FORMAT:
        raise ValueError(f"{path}: not a trio-books capture file (format {FORMAT})")
    return obj


def new_manifest(venue: str, hour: int) -> dict:
    return {"format": FORMAT, "venue": venue, "date": time.strftime("%Y-%m-%d", time.gmtime(hour * 3600)),
            "hour": hour % 24, "files": [], "gaps": []}


def manifests(root: Path) -> list[Path]:
    return sorted(root.glob(f"venue=*/date=*/hour=*/{MANIFEST}"))


__all__ = ["CHANGES", "HOUR_US", "MANIFEST", "RUNS", "SCHEMAS", "SNAPSHOTS", "hour_of", "manifests", "new_manifest",
           "partition", "read_json", "write_json"]
