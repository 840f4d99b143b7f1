"""Writes captured batches as Parquet (blocking: the sink calls it from a worker thread).

Each batch becomes, per venue and hour, one changes file and one snapshots file
(one row group each: the time bound of a crash's loss), each written under a
temporary name and renamed; then the partition's manifest is rewritten (the
commit point), then the run file. When an hour is over, this run's files of the
partition are merged into one per kind (same commit order), so an hour holds a
few files, not hundreds. On start, anything a crash left unlisted is deleted,
and a run that never closed is recorded as a gap (``capture_down``) of every
book of its venues, from its last flush to this start.
"""

from __future__ import annotations

import calendar
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .layout import (MANIFEST, RUNS, SCHEMAS, FORMAT, hour_of, manifests, new_manifest, partition, read_json,
                     write_json)

MERGED_ROW_GROUP = 250_000


class HistoryWriter:
    def __init__(self, root: str | os.PathLike, run_id: str, compression: str = "zstd") -> None:
        self.root = Path(root)
        self.run_id = run_id
        self.compression = None if compression == "none" else compression
        self.manifests: dict[tuple[str, int], dict] = {}
        self.open_parts: set[tuple[str, int]] = set()  # partitions with this run's unmerged files
        self.files = 0
        self.run: dict[str, Any] = {}

    # --- a run ---------------------------------------------------------------------------
    def open_run(self, now: int) -> list[str]:
        """Recover the directory after a crash and start this run; returns what was noted."""
        (self.root / RUNS).mkdir(parents=True, exist_ok=True)
        notes = self._recover()
        for path in sorted((self.root / RUNS).glob("*.json")):
            try:
                run = read_json(path)
            except ValueError as exc:
                notes.append(f"ignored: {exc}")
                continue
            if run.get("ended") is None and run.get("crash_noted") is None:
                until = run["flushed_until"]
                why = f"capture_down: run {run['run']} ended without closing (crash?); its rows after its last flush are lost"
                for venue in run.get("venues", []):
                    self._manifest(venue, hour_of(until))["gaps"].append(
                        {"symbol": "*", "start_us": until, "end_us": now, "reason": why, "run": run["run"]})
                run["crash_noted"] = self.run_id
                self._commit_manifests()
                write_json(path, run)
                notes.append(why)
                self._merge_run(run["run"], hour_of(run["started"]))
        self.run = {"format": FORMAT, "run": self.run_id, "started": now, "flushed_until": now, "ended": None, "venues": []}
        write_json(self._run_path(), self.run)
        return notes

    def close_run(self) -> None:
        for part in sorted(self.open_parts):
            self._merge(*part)
        self.open_parts.clear()
        self._commit_manifests()
        self.run["ended"] = self.run["flushed_until"]
        write_json(self._run_path(), self.run)

    def _run_path(self) -> Path:
        return self.root / RUNS / f"{self.run_id}.json"

    def _recover(self) -> list[str]:
        notes = []
        for tmp in self.root.glob("**/.*.tmp"):
            tmp.unlink()
        for part in {p.parent for p in self.root.glob("venue=*/date=*/hour=*/*.parquet")}:
            listed = set()
            if (part / MANIFEST).exists():
                listed = {f["file"] for f in read_json(part / MANIFEST)["files"]}
            for path in part.glob("*.parquet"):
                if path.name not in listed:
                    path.unlink()
                    notes.append(f"deleted {path}: written but never listed in its manifest (a crash)")
        return notes

    # --- batches -------------------------------------------------------------------------
    def write(self, batch: Any) -> None:
        for venue in sorted(set(batch.changes) | set(batch.snapshots)):
            for hour, rows in _by_hour(batch.changes.get(venue, ())):
                self._add_file(venue, hour, "changes", _changes_table(rows))
            for hour, rows in _by_hour(batch.snapshots.get(venue, ())):
                self._add_file(venue, hour, "snapshots", _snapshots_table(rows))
        for venue, gaps in batch.gaps.items():
            for symbol, start, end, reason in gaps:
                listed = self._manifest(venue, hour_of(start))["gaps"]
                for gap in listed:
                    if gap["symbol"] == symbol and gap["start_us"] == start and gap.get("run") == self.run_id:
                        gap["end_us"] = end
                        break
                else:
                    listed.append({"symbol": symbol, "start_us": start, "end_us": end, "reason": reason, "run": self.run_id})
        current = hour_of(batch.until)
        for part in sorted(p for p in self.open_parts if p[1] < current):
            self._merge(*part)
            self.open_parts.discard(part)
        self._commit_manifests()
        self.run["flushed_until"] = batch.until
        self.run["venues"] = sorted(set(self.run["venues"]) | set(batch.changes) | set(batch.snapshots) | set(batch.gaps))
        write_json(self._run_path(), self.run)
        # keep only this hour's manifests in memory
        self.manifests = {k: m for k, m in self.manifests.items() if k[1] >= current - 1}

    def _add_file(self, venue: str, hour: int, kind: str, table: pa.Table) -> None:
        self.files += 1
        name = f"{kind}-{self.run_id}-{self.files:06d}.parquet"
        self._write_table(partition(self.root, venue, hour) / name, [table], SCHEMAS[kind])
        self._manifest(venue, hour)["files"].append(_entry(name, kind, self.run_id, table))
        self.open_parts.add((venue, hour))

    def _write_table(self, path: Path, tables: Any, schema: pa.Schema) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with pq.ParquetWriter(tmp, schema, compression=self.compression) as out:
            for table in tables:
                out.write_table(table, row_group_size=MERGED_ROW_GROUP)
        os.replace(tmp, path)

    def _merge_run(self, run: str, since: int) -> None:
        """A crashed run's files, merged (it never did so itself)."""
        for path in manifests(self.root):
            m = read_json(path)
            hour = calendar.timegm(time.strptime(m["date"], "%Y-%m-%d")) // 3600 + m["hour"]
            if hour >= since and any(f["run"] == run for f in m["files"]):
                self._merge(m["venue"], hour, run)
        self._commit_manifests()
        self.manifests.clear()

    def _merge(self, venue: str, hour: int, run: str | None = None) -> None:
        """A run's files (this one's by default) of one partition into one per kind."""
        run = run or self.run_id
        manifest = self._manifest(venue, hour)
        folder = partition(self.root, venue, hour)
        for kind in SCHEMAS:
            mine = [f for f in manifest["files"] if f["kind"] == kind and f["run"] == run]
            if len(mine) < 2:
                continue
            name = f"{kind}-{run}.parquet"
            self._write_table(folder / name, _grouped(folder, mine), SCHEMAS[kind])
            merged = {"file": name, "kind": kind, "run": run, "rows": sum(f["rows"] for f in mine),
                      "first_us": min(f["first_us"] for f in mine), "last_us": max(f["last_us"] for f in mine)}
            manifest["files"] = [f for f in manifest["files"] if f not in mine] + [merged]
            write_json(folder / MANIFEST, manifest)  # commit, then the merged files go
            for f in mine:
                (folder / f["file"]).unlink()

    def _manifest(self, venue: str, hour: int) -> dict:
        key = (venue, hour)
        if key not in self.manifests:
            path = partition(self.root, venue, hour) / MANIFEST
            self.manifests[key] = read_json(path) if path.exists() else new_manifest(venue, hour)
        return self.manifests[key]

    def _commit_manifests(self) -> None:
        for (venue, hour), manifest in self.manifests.items():
            folder = partition(self.root, venue, hour)
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / MANIFEST, manifest)


def _grouped(folder: Path, files: list[dict]):
    """The files' rows in order, in tables of about :data:`MERGED_ROW_GROUP` rows (memory stays bounded)."""
    pending, rows = [], 0
    for f in sorted(files, key=lambda f: (f["first_us"], f["file"])):
        table = pq.read_table(folder / f["file"])
        pending.append(table)
        rows += table.num_rows
        if rows >= MERGED_ROW_GROUP:
            yield pa.concat_tables(pending)
            pending, rows = [], 0
    if pending:
        yield pa.concat_tables(pending)


def _entry(name: str, kind: str, run: str, table: pa.Table) -> dict:
    ts = table.column("received_ts").cast(pa.int64())
    return {"file": name, "kind": kind, "run": run, "rows": table.num_rows, "first_us": ts[0].as_py(), "last_us": ts[-1].as_py()}


def _by_hour(rows) -> list[tuple[int, list]]:
    """Rows (in time order, the time third) cut at hour boundaries."""
    parts: dict[int, list] = defaultdict(list)
    for row in rows:
        parts[hour_of(row[2])].append(row)
    return sorted(parts.items())


def _changes_table(rows: list) -> pa.Table:
    symbol, seq, recv, exch, uid, side, price, qty = [], [], [], [], [], [], [], []
    for s, q, r, e, u, bids, asks in rows:
        for name, levels in (("bid", bids), ("ask", asks)):
            for p, x in levels:
                symbol.append(s)
                seq.append(q)
                recv.append(r)
                exch.append(e)
                uid.append(u)
                side.append(name)
                price.append(p)
                qty.append(x)
    return pa.table([symbol, seq, recv, exch, uid, side, price, qty], schema=SCHEMAS["changes"])


def _levels(books: list) -> pa.Array:
    offsets, prices, qtys = [0], [], []
    for levels in books:
        for p, q in levels:
            prices.append(p)
            qtys.append(q)
        offsets.append(len(prices))
    values = pa.StructArray.from_arrays([pa.array(prices, pa.string()), pa.array(qtys, pa.string())], ["price", "qty"])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def _snapshots_table(rows: list) -> pa.Table:
    cols = list(zip(*rows))
    fields = SCHEMAS["snapshots"]
    arrays = [pa.array(cols[i], fields.field(i).type) for i in range(9)]
    return pa.Table.from_arrays(arrays + [_levels(cols[9]), _levels(cols[10])], schema=fields)


__all__ = ["HistoryWriter"]
