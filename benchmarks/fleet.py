"""Fleet benchmark: the service with many books of all nine venues (run on request; prints numbers).

    python -m benchmarks.fleet                 # 9 venues × 100 symbols, ~60 s
    python -m benchmarks.fleet --symbols 20    # a quicker, smaller fleet

Every venue's fake (``trio_books.testing``) runs in its own process
(``fleet_fakes.py``): each symbol at its own rate between 5 and 20 events/s (at most
the venue's documented push cadence: ``--uncapped`` lifts that),
plus bursts. The service is ``trio-books run`` on a generated config pointing at
the fakes, in its own process. Once every book is live, three windows:

* feeds: the service's CPU share of one core (``/proc``), RSS, and the
  exchange-timestamp → applied latency (the service's histogram in ``/metrics``,
  percentiles interpolated within its buckets);
* feeds + readers: the same while HTTP clients read ``/books/…?depth=20`` and
  ``/ws`` clients are subscribed to books;
* idle: the fakes send nothing but heartbeats; CPU per connection.

Loopback only; every process started here is stopped here (the fakes also stop
when their stdin closes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import trio

from benchmarks.fleet_fakes import default_grid
from benchmarks.fleet_read import Readers, latency_counts, percentile, scrape
from trio_books.venues import available

HOST = "127.0.0.1"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def proc_cpu(pid: int) -> float:
    """CPU seconds of a process, all its threads: nanoseconds on a CPU from
    ``schedstat`` (``stat``'s clock ticks are 10 ms, too coarse for an idle window)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that just ended
            pass
    return total / 1e9


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_fakes(args: argparse.Namespace) -> tuple[list[subprocess.Popen], list[str]]:
    procs, tables = [], []
    for i, vid in enumerate(args.venues):
        cmd = [sys.executable, "-m", "benchmarks.fleet_fakes", vid, "--symbols", str(args.symbols), "--seed", str(i + 1),
               "--min-rate", str(args.min_rate), "--max-rate", str(args.max_rate), "--max-seconds", str(args.max_seconds),
               "--batch", str(args.batch), "--nice", str(args.fakes_nice)] + ([] if args.grid is None else ["--grid", str(args.grid)]) \
            + (["--cadence", "0"] if args.uncapped else [])
        procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
    for vid, p in zip(args.venues, procs):
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"the {vid} fake did not start")
        tables.append(json.loads(line)["config"])
    return procs, tables


async def wait_live(url: str, books: int, timeout: float) -> float:
    started = trio.current_time()
    live, per_venue = 0, {}
    async with httpx.AsyncClient(timeout=30) as client:
        with trio.move_on_after(timeout):
            while True:
                try:
                    live = await live_books(client, url, per_venue)
                except (httpx.HTTPError, ValueError, KeyError, AttributeError, TypeError):
                    pass  # not answering yet
                if live >= books:
                    return trio.current_time() - started
                await trio.sleep(0.5)
    raise RuntimeError(f"{live} of {books} books live after {timeout:g} s ({per_venue}; on a small machine the fakes "
                       "may be what falls behind: try --symbols 40)")


async def fake_stats(fakes: list[subprocess.Popen]) -> list[dict]:
    """Each fake's driver statistics since the last call (see fleet_fakes.Driver.stats)."""
    for p in fakes:
        p.stdin.write(b"stats\n")
        p.stdin.flush()
    return [json.loads(await trio.to_thread.run_sync(p.stdout.readline)) for p in fakes]


async def live_books(client: httpx.AsyncClient, url: str, per_venue: dict | None = None) -> int:
    venues = (await client.get(f"{url}/venues")).json()["venues"]
    for vid, v in venues.items():
        if per_venue is not None:
            per_venue[vid] = sum(1 for state in v["symbols"].values() if state == "live")
    return sum(1 for v in venues.values() for state in v["symbols"].values() if state == "live")


async def window(url: str, pid: int, seconds: float, fakes: list[subprocess.Popen]) -> dict:
    async with httpx.AsyncClient(timeout=30) as client:
        await fake_stats(fakes)
        m0, c0, t0 = scrape(await client.get(f"{url}/metrics")), proc_cpu(pid), time.monotonic()
        f0 = [proc_cpu(p.pid) for p in fakes]
        await trio.sleep(seconds)
        c1, t1 = proc_cpu(pid), time.monotonic()  # before the scrape: rendering /metrics is not the window's
        f1 = [proc_cpu(p.pid) for p in fakes]
        drivers = await fake_stats(fakes)
        m1 = scrape(await client.get(f"{url}/metrics"))
        live = await live_books(client, url)
    bounds, counts = latency_counts(m0, m1)
    frames = m1.get("trio_books_frames_total", 0) - m0.get("trio_books_frames_total", 0)
    return {"cpu": (c1 - c0) / (t1 - t0), "fakes_cpu": [(b - a) / (t1 - t0) for a, b in zip(f0, f1)],
            "drivers": drivers, "live": live, "rss_mb": proc_rss_mb(pid), "frames_per_s": frames / (t1 - t0),
            "events": sum(counts), "connections": m1.get("trio_books_connected", 0),
            "p50": percentile(bounds, counts, 0.5), "p99": percentile(bounds, counts, 0.99),
            "p999": percentile(bounds, counts, 0.999)}


async def measure(args: argparse.Namespace, url: str, pid: int, fakes: list[subprocess.Popen], books: list[tuple[str, str]]) -> dict:
    out: dict = {}
    log(f"waiting for {len(books)} books to be live …")
    out["startup_s"] = await wait_live(url, len(books), args.startup_timeout)
    log(f"all live after {out['startup_s']:.1f} s; settling {args.settle:g} s")
    await trio.sleep(args.settle)
    log(f"window: feeds only ({args.window:g} s)")
    out["feeds"] = await window(url, pid, args.window, fakes)
    log(f"window: feeds + {args.http_rate:g} HTTP reads/s + {args.ws_clients} /ws clients ({args.window:g} s)")
    readers = Readers(url, books, args.http_rate, args.ws_clients, args.ws_books, random.Random(5))
    async with trio.open_nursery() as nursery:
        await nursery.start(readers.run)
        out["readers"] = await window(url, pid, args.window, fakes)
        nursery.cancel_scope.cancel()
    out["readers"].update(readers.summary(args.window))
    log(f"window: idle, heartbeats only ({args.idle_window:g} s)")
    for p in fakes:
        p.stdin.write(b"pause\n")
        p.stdin.flush()
    await trio.sleep(2.0)
    out["idle"] = await window(url, pid, args.idle_window, fakes)
    out["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return out


def fakes_line(name: str, w: dict, n_books: int, venues: list[str], grid: float | None) -> str:
    """The fakes' side of a window: their CPU, how late their ticks were written, and
    whether they kept up (every book live at the end and every venue's tick lag p99
    under its grid, 10 ms when each event is written as it falls due)."""
    worst = max(zip(venues, w["drivers"]), key=lambda vd: (vd[1]["lag_p99"] or 0) / _grid(vd[0], grid))
    behind = w["live"] < n_books or any((d["lag_p99"] or 0) >= _grid(v, grid) for v, d in zip(venues, w["drivers"]))
    wait = max(d["wait_p99"] or 0 for d in w["drivers"])
    return (f"Fakes ({name}): {sum(w['fakes_cpu']):.2f} cores (busiest venue {max(w['fakes_cpu']):.0%}); "
            f"{sum(d['events'] for d in w['drivers']):,} events; tick lag p99 {(worst[1]['lag_p99'] or 0) * 1e3:.1f} ms "
            f"({worst[0]}, the worst against its grid); frames' wait for their write p99 ≤ {wait * 1e3:.2f} ms; "
            f"books live at the end {w['live']}/{n_books}; fell behind: {'YES' if behind else 'no'}")


def _grid(venue_id: str, grid: float | None) -> float:
    return default_grid(venue_id) if grid is None else (grid or 0.01)


def report(args: argparse.Namespace, res: dict, n_books: int) -> str:
    def row(name: str, w: dict) -> str:
        lat = " / ".join(f"{w[k] * 1e3:.2f}" if w[k] is not None else "—" for k in ("p50", "p99", "p999"))
        return (f"| {name} | {w['frames_per_s']:,.0f} | {w['cpu']:.1%} | {w['rss_mb']:.0f} MB | {lat} ms |")

    f, r, i = res["feeds"], res["readers"], res["idle"]
    conns = int(i["connections"]) or 1
    pacing = ("each event written when due" if args.grid == 0 else
              "events on a fixed grid (" + ("every 100 ms for the Binance family, 10 ms for the others" if args.grid is None
                                           else f"every {args.grid * 1e3:g} ms") + f"), at most {args.batch} per write")
    lines = [
        f"Fleet: {len(args.venues)} venues × {args.symbols} symbols = {n_books} books, {args.min_rate:g}–{args.max_rate:g} "
        "events/s per symbol plus bursts" + (" (uncapped)" if args.uncapped else ", capped at each venue's documented push cadence "
                                             "(a symbol every 100 ms at most: Binance family, OKX; 300 ms: BingX)")
        + f"; {int(f['connections'])} connections; all live {res['startup_s']:.1f} s after start.",
        f"Fakes: {pacing}; nice {args.fakes_nice}. Machine load average at the end: {res['load']}.",
        "",
        fakes_line("feeds", f, n_books, args.venues, args.grid),
        fakes_line("feeds + readers", r, n_books, args.venues, args.grid),
        "",
        "| window | frames/s | service CPU (one core) | RSS | exchange → applied p50 / p99 / p999 |",
        "|---|---:|---:|---:|---|",
        row("feeds", f),
        row(f"feeds + {r['http_done'] / args.window:,.0f} HTTP reads/s + {args.ws_clients} /ws clients "
            f"({r['ws_messages'] / args.window:,.0f} msgs/s)", r),
        row("idle (heartbeats only)", i),
        "",
        f"Idle cost: {i['cpu']:.2%} of a core for {conns} connections = {i['cpu'] / conns:.4%} per connection.",
        "Latency: the service's histogram (buckets 0.1, 0.25, 0.5, 1, 2.5, 5 ms …, interpolated); the venues stamp whole "
        "milliseconds, so every figure carries 0–1 ms of truncation (0.5 ms on average).",
        "",
        "Targets (9 × 100 books): CPU < 40 % of a core: " + ("met" if f["cpu"] < 0.40 else "NOT met")
        + f" ({f['cpu']:.1%}); RSS < 400 MB: " + ("met" if f["rss_mb"] < 400 else "NOT met") + f" ({f['rss_mb']:.0f} MB); "
        + "p99 < 2 ms: " + ("met" if (f["p99"] or 1) < 0.002 else "NOT met") + f" ({(f['p99'] or 0) * 1e3:.2f} ms); "
        + "idle < 0.05 % per connection: " + ("met" if i["cpu"] / conns < 0.0005 else "NOT met") + f" ({i['cpu'] / conns:.4%})",
    ]
    if args.symbols < 100:
        lines.append(f"(a {args.symbols}-symbol fleet: the targets are for 100 symbols per venue)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__.split("\n", 1)[0])
    p.add_argument("--symbols", type=int, default=100, help="symbols per venue (default 100)")
    p.add_argument("--min-rate", type=float, default=5.0)
    p.add_argument("--max-rate", type=float, default=20.0)
    p.add_argument("--window", type=float, default=10.0, help="seconds of each loaded window (default 10)")
    p.add_argument("--idle-window", type=float, default=8.0)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--http-rate", type=float, default=200.0, help="HTTP reads per second in the readers window")
    p.add_argument("--ws-clients", type=int, default=8)
    p.add_argument("--ws-books", type=int, default=10, help="books each /ws client subscribes to")
    p.add_argument("--startup-timeout", type=float, default=60.0)
    p.add_argument("--grid", type=float, default=None,
                   help="the fakes' tick in seconds (default 0.1 for the Binance family, 0.01 for the others; 0: each event "
                        "written when due, as before)")
    p.add_argument("--batch", type=int, default=8, help="most events per write of a fake's tick (default 8)")
    p.add_argument("--uncapped", action="store_true", help="drive every symbol at its drawn rate even past its venue's "
                   "documented push cadence (fleet_fakes.CADENCE; BingX pushes a whole book every 300 ms, so 5-20/s overstates it)")
    p.add_argument("--fakes-nice", type=int, default=5,
                   help="the fakes' nice value (default 5: on a full machine the service gets the CPU first and the "
                        "fakes fall behind, which the report shows)")
    p.add_argument("--json", help="write the measurements to this file")
    p.add_argument("--venues", default=",".join(available()), help="comma-separated venue ids (default: all nine)")
    args = p.parse_args(argv)
    args.venues = [v for v in args.venues.split(",") if v]
    if not args.venues or set(args.venues) - set(available()):
        p.error(f"--venues: ids among {', '.join(available())}")
    args.max_seconds = args.startup_timeout + args.settle + 2 * args.window + args.idle_window + 60
    workdir = tempfile.mkdtemp(prefix="trio-books-fleet-")
    t_start = time.monotonic()
    fakes: list[subprocess.Popen] = []
    service = None
    try:
        log(f"starting {len(args.venues)} fake venues × {args.symbols} symbols …")
        fakes, tables = start_fakes(args)
        port = free_port()
        url = f"http://{HOST}:{port}"
        config = os.path.join(workdir, "config.toml")
        with open(config, "w") as fh:
            fh.write(f'[service]\nhttp = "{HOST}:{port}"\nlog_level = "WARNING"\n\n' + "\n".join(tables))
        books = [(vid, s) for vid, table in zip(args.venues, tables) for s in _symbols(table)]
        errlog = open(os.path.join(workdir, "service.log"), "wb")
        service = subprocess.Popen([sys.executable, "-m", "trio_books", "run", "--config", config],
                                   stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog)
        res = trio.run(measure, args, url, service.pid, fakes, books)
        if service.poll() is not None:
            raise RuntimeError("the service exited during the run")
        print(report(args, res, len(books)))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(res, fh, indent=1)
        return 0
    except (RuntimeError, httpx.HTTPError) as exc:
        log(f"fleet benchmark failed: {exc or type(exc).__name__} after {time.monotonic() - t_start:.0f} s")
        if service is not None:
            with open(os.path.join(workdir, "service.log"), "rb") as fh:
                log(fh.read().decode(errors="replace")[-2000:])
        return 1
    finally:
        if service is not None and service.poll() is None:
            service.terminate()
            try:
                service.wait(10)
            except subprocess.TimeoutExpired:
                service.kill()
        for f in fakes:
            try:
                f.stdin.close()
            except OSError:
                pass
        for f in fakes:
            try:
                f.wait(10)
            except subprocess.TimeoutExpired:
                f.kill()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def _symbols(table: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith("symbols = "))
    return json.loads(line.split("=", 1)[1])


if __name__ == "__main__":
    sys.exit(main())
