"""OKX V5 ``books`` throughput benchmark: trio-books vs cryptofeed vs the raw ceiling.

    python -m benchmarks.okx_bench            # 60k updates per run, 3 runs per client (~1.5 minutes on 2 cores)
    python -m benchmarks.okx_bench --quick    # 20k updates, 1 run per client (~15 s)
    python -m benchmarks.okx_bench --help

A fake OKX venue (``okx_fake.py``) runs in its own process on 127.0.0.1 and
blasts one fixed, checksummed ``books`` stream (``okx_stream.py``: 5
instruments, one 400-level snapshot each, then the updates) at every client,
each client in its own fresh process, one at a time, interleaved round-robin
over the runs. TCP back-pressure makes the client the limit. Measured from the
moment 10% of the updates are applied to the moment the last one is: frames/s,
level updates/s, CPU seconds (user+sys of the client) per 100k frames, and the
client's core share; median of the runs with (min–max).

Clients:

* trio-books as a library (``run_venues``; ``okx_spot`` with ``ws_url`` at the
  fake, depth 400; parser, ``SeqIdChain``, CRC32 verification and book task
  untouched); the only hook is a ``BookStore`` subclass whose ``touched()`` notes
  ``(instrument, seqId, time)`` — on ``ws://``, on ``wss://``, and on the same
  frames with ``"checksum":0`` (nothing to verify: what OKX sends since June 2026);
* cryptofeed's ``OKX`` feed with ``checksum_validation=True``, over ``wss://``
  (it accepts no other scheme), with a run-time CA trusted through
  ``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE`` (``tls.py``); a subclass only replaces
  the two class attributes holding the addresses. Its book callback notes the
  frame's ``seqId``. (cryptofeed does not check the seqId chain, only the checksum.)
* the raw ceiling: ``trio_books.transport.open_connection`` + ``receive_batch``
  + ``orjson.loads`` of every frame, nothing else (``ws://`` and ``wss://``); it
  gets the updates 5 times over (one pass would be clocked over ~0.3 s).

Everything listens on 127.0.0.1 only; every run is bounded in frames and time;
the fake and every client process are stopped at the end, on errors and on
Ctrl-C. Nothing asserts a time. Client processes are this module run as
``python -m benchmarks.okx_bench --client SPEC.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

monotonic = time.monotonic
cpu = time.process_time
DEPTH = 400
RAW_REPEAT = 5
"""The raw-ceiling clients get the updates this many times over (one pass takes them ~0.3 s)."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Client:
    key: str
    label: str
    kind: str  # triobooks | cryptofeed | raw
    scheme: str  # ws | wss
    variant: str = "crc"  # crc: real checksums; zero: "checksum":0


CLIENTS = [
    Client("tb-ws", "trio-books (wsproto), checksums verified", "triobooks", "ws"),
    Client("tb-wss", "trio-books (wsproto), checksums verified, TLS", "triobooks", "wss"),
    Client("tb-ws-zero", 'trio-books (wsproto), "checksum":0 frames (nothing to verify)', "triobooks", "ws", "zero"),
    Client("cf-wss", "cryptofeed OKX, checksum_validation=True, TLS", "cryptofeed", "wss"),
    Client("raw-ws", "raw ceiling: open_connection + receive_batch + orjson.loads", "raw", "ws"),
    Client("raw-wss", "raw ceiling: open_connection + receive_batch + orjson.loads, TLS", "raw", "wss"),
]
BY_KEY = {c.key: c for c in CLIENTS}

# --- child processes -----------------------------------------------------------------------

CHILDREN: list[subprocess.Popen] = []


def _spawn(cmd: list[str], **kw) -> subprocess.Popen:
    # a session of its own: a Ctrl-C in the terminal reaches only the orchestrator, which stops them
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, **kw)
    CHILDREN.append(proc)
    return proc


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop one child we started: close its stdin (the fake stops by itself), else SIGTERM, else SIGKILL."""
    try:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        for f in (proc.stdout, proc.stderr):
            if f:
                f.close()
        if proc in CHILDREN:
            CHILDREN.remove(proc)


def _stop_all() -> None:
    while CHILDREN:
        _stop(CHILDREN[-1], grace=3.0)


def _on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def start_fake(workdir: str, frames: int, certs: dict | None, timeout: float = 180.0) -> tuple[subprocess.Popen, dict]:
    args = [sys.executable, "-m", "benchmarks.okx_fake", "--workdir", workdir, "--frames", str(frames), "--check"]
    if certs:
        args += ["--certfile", certs["cert"], "--keyfile", certs["key"]]
    with open(os.path.join(workdir, "okx-fake.err"), "wb") as err:
        proc = _spawn(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    deadline = monotonic() + timeout
    line = b""
    while monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
        if line:
            break
    if not line:
        _stop(proc)
        with open(os.path.join(workdir, "okx-fake.err"), errors="replace") as fh:
            tail = fh.read()[-600:]
        raise RuntimeError(f"the fake OKX venue did not start: {tail}")
    return proc, json.loads(line)


def busy_seconds() -> tuple[float, float]:
    """(CPU seconds the machine was busy since boot, CPU seconds of this process and its finished children)."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:9]]
    machine = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
    ch, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    return machine, ch.ru_utime + ch.ru_stime + me.ru_utime + me.ru_stime


def proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass
class Env:
    workdir: str
    port: int
    tls_port: int | None
    meta: dict
    client_env: dict
    fake_pid: int
    fake_cpu_seen: float = 0.0
    seq: int = 0


OTHER_LOAD: list[float] = []


def run_client(env: Env, client: Client, body: int, timeout: float) -> dict:
    meta = env.meta
    env.seq += 1
    run = f"{client.key}-{env.seq}"
    n_snap = meta["n_snap"]
    warm = body // 10
    start = n_snap + warm
    spec = {"run": run, "kind": client.kind, "symbols": meta["symbols"], "timeout": timeout,
            "final_seq": meta["final_seq"], "start_mark": [meta["sym"][start], meta["seq"][start]],
            "out": os.path.join(env.workdir, f"{run}.json")}
    port = env.tls_port if client.scheme == "wss" else env.port
    base = f"{client.scheme}://127.0.0.1:{port}"
    if client.kind == "triobooks":
        spec["ws_url"] = f"{base}/{client.variant}"  # trio-books appends /ws/v5/public
        spec["rest_url"] = f"http://127.0.0.1:{env.port}"
    elif client.kind == "cryptofeed":
        spec["ws_base"] = base
        spec["rest_base"] = f"https://127.0.0.1:{env.tls_port}"
    else:  # the updates RAW_REPEAT times over: the ceiling is ~10x faster and needs a longer window
        repeat = RAW_REPEAT
        spec["url"] = f"{base}/{client.variant}-x{repeat}/ws/v5/public"
        spec["total_frames"] = 2 * n_snap + body * repeat  # acks + snapshots + updates
        spec["start_count"] = 2 * n_snap + warm + 1
    spec_path = os.path.join(env.workdir, f"{run}.spec")
    with open(spec_path, "w") as fh:
        json.dump(spec, fh)
    before, t_before = busy_seconds(), monotonic()
    err_path = os.path.join(env.workdir, f"{run}.err")
    with open(err_path, "wb") as err:
        proc = _spawn([sys.executable, "-m", "benchmarks.okx_bench", "--client", spec_path],
                      env=env.client_env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        proc.wait(timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        pass
    finally:
        _stop(proc, grace=1.0)
        after, wall = busy_seconds(), monotonic() - t_before
        fake_cpu = proc_cpu(env.fake_pid)
        fake_used = fake_cpu - env.fake_cpu_seen
        other = (after[0] - before[0]) - (after[1] - before[1]) - fake_used
        env.fake_cpu_seen = fake_cpu
        OTHER_LOAD.append(max(0.0, other / wall) if wall > 0 else 0.0)
    try:
        with open(spec["out"], "rb") as fh:
            res = json.loads(fh.read())
    except (OSError, ValueError):
        with open(err_path, errors="replace") as fh:
            tail = " | ".join(fh.read().strip().splitlines()[-3:])
        return {"ok": False, "error": f"client exited {proc.returncode} without a result: {tail}"}
    if not res.get("ok"):
        return {"ok": False, "error": res.get("last_error") or "failed", "detail": res}
    seconds = res["t1"] - res["t0"]
    frames = body - warm - 1
    levels = sum(meta["levels"][start + 1 : n_snap + body])
    if client.kind == "raw":
        frames += body * (RAW_REPEAT - 1)
        levels += sum(meta["levels"][n_snap:]) * (RAW_REPEAT - 1)
    c = res["cpu1"] - res["cpu0"]
    return {"ok": True, "fps": frames / seconds, "lps": levels / seconds, "cpu_per_100k": c / frames * 100_000,
            "core_share": c / seconds, "fake_cpu_per_100k": fake_used / frames * 100_000, "detail": {k: v for k, v in res.items() if k not in ("t0", "t1", "cpu0", "cpu1")}}


# --- the clients (run in the child process) -----------------------------------------------


def _write(spec: dict, result: dict) -> None:
    with open(spec["out"], "w") as fh:
        json.dump(result, fh)


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class _Marks:
    """Start/end of the measured window, from (instrument index, seqId) notes."""

    def __init__(self, spec: dict) -> None:
        self.final = list(spec["final_seq"])
        self.start_sym, self.start_seq = spec["start_mark"]
        self.remaining = set(range(len(self.final)))
        self.t0 = self.c0 = self.t1 = self.c1 = None
        self.notes = 0

    def note(self, i: int, seq: int) -> bool:
        """True once the last frame of every instrument is in."""
        self.notes += 1
        if self.t0 is None and i == self.start_sym and seq >= self.start_seq:
            self.t0, self.c0 = monotonic(), cpu()
        if seq >= self.final[i] and i in self.remaining:
            self.remaining.discard(i)
            if not self.remaining:
                self.t1, self.c1 = monotonic(), cpu()
                return True
        return False

    def result(self) -> dict:
        return {"t0": self.t0, "t1": self.t1, "cpu0": self.c0, "cpu1": self.c1, "notes": self.notes}


async def client_triobooks(spec: dict) -> None:
    import trio

    from trio_books.config import load_config_text
    from trio_books.log import setup_logging
    from trio_books.runner import run_venues
    from trio_books.store import BookStore

    marks = _Marks(spec)
    idx = {s: i for i, s in enumerate(spec["symbols"])}
    done = trio.Event()

    class NotingStore(BookStore):
        def touched(self, e, update_id, exchange_ts) -> None:
            super().touched(e, update_id, exchange_ts)
            if update_id is not None and marks.note(idx[e.symbol], update_id):
                done.set()

    setup_logging("WARNING")
    symbols = ", ".join(f'"{s}"' for s in spec["symbols"])
    config = load_config_text(f"""
[service]
log_level = "WARNING"
transport = "wsproto"

[venues.okx_spot]
symbols = [{symbols}]
depth = {DEPTH}
ws_url = "{spec['ws_url']}"
rest_url = "{spec['rest_url']}"
""")
    store = NotingStore()
    for vid, vcfg in config.enabled_venues():
        for s in vcfg.symbols:
            store.add(vid, s)
    with trio.move_on_after(spec["timeout"]):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_venues, config, store)
            await done.wait()
            nursery.cancel_scope.cancel()
    stats = store.venues["okx_spot"]
    ok = done.is_set() and marks.t0 is not None and not stats.failures
    error = stats.last_error or (None if ok else "timed out before the last frame was applied")
    if stats.failures:
        error = f"failures {dict(stats.failures)}: {stats.last_error}"
    _write(spec, {"ok": ok, "last_error": error, "frames_received": stats.frames, "failures": dict(stats.failures),
                  "rss_kb": _rss_kb(), **marks.result()})


async def client_raw(spec: dict) -> None:
    import orjson
    import trio

    from trio_books.transport import open_connection

    total, start_at = spec["total_frames"], spec["start_count"]
    loads = orjson.loads
    count = 0
    t0 = c0 = t1 = c1 = None
    error = None
    sub = orjson.dumps({"id": "1", "op": "subscribe", "args": [{"channel": "books", "instId": s} for s in spec["symbols"]]}).decode()
    with trio.move_on_after(spec["timeout"]):
        try:
            async with open_connection(spec["url"], max_message_size=2**22, connect_timeout=10, transport="wsproto") as conn:
                await conn.send(sub)
                while count < total:
                    frames = await conn.receive_batch()
                    for raw in frames:
                        loads(raw)
                    count += len(frames)
                    if t0 is None and count >= start_at:
                        t0, c0 = monotonic(), cpu()
                t1, c1 = monotonic(), cpu()
        except Exception as exc:  # noqa: BLE001 -- report, don't hide
            error = f"{type(exc).__name__}: {exc}"
    ok = t1 is not None
    _write(spec, {"ok": ok, "t0": t0, "t1": t1, "cpu0": c0, "cpu1": c1, "frames_received": count,
                  "last_error": error or (None if ok else "timed out"), "rss_kb": _rss_kb()})


def client_cryptofeed(spec: dict) -> None:
    import asyncio

    try:
        from cryptofeed import FeedHandler
        from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
        from cryptofeed.defines import L2_BOOK
        from cryptofeed.exchanges import OKX
    except ImportError as exc:
        _write(spec, {"ok": False, "last_error": f"cryptofeed is not installed ({exc})"})
        os._exit(0)

    ws, rest = spec["ws_base"], spec["rest_base"]
    # Same endpoints, routes, filters and options as upstream; only the addresses point at the fake.
    public_filter = OKX.websocket_endpoints[0].channel_filter
    private_filter = OKX.websocket_endpoints[1].channel_filter
    upstream_routes = OKX.rest_endpoints[0].routes

    class LocalOKX(OKX):
        websocket_endpoints = [  # noqa: RUF012 -- cryptofeed's own class attribute
            WebsocketEndpoint(f"{ws}/ws/v5/public", channel_filter=public_filter, options={"compression": None}),
            WebsocketEndpoint(f"{ws}/ws/v5/private", channel_filter=private_filter, options={"compression": None}),
        ]
        rest_endpoints = [RestEndpoint(rest, routes=Routes(upstream_routes.instruments, liquidations=upstream_routes.liquidations))]  # noqa: RUF012

    marks = _Marks(spec)
    idx = {s: i for i, s in enumerate(spec["symbols"])}  # BTC-USDT is both OKX's instId and cryptofeed's symbol
    log_file = spec["out"] + ".log"

    def finish(ok: bool, error: str | None = None) -> None:
        try:
            with open(log_file, errors="replace") as lf:
                text = lf.read()
        except OSError:
            text = ""
        bad = text.count("BadChecksum")
        if bad:
            ok, error = False, f"{bad} BadChecksum in cryptofeed's log; {error or ''}"
        if not ok and text:
            error = f"{error}; cryptofeed log: {text[-400:]}"
        _write(spec, {"ok": ok, "last_error": error, "bad_checksums": bad, "rss_kb": _rss_kb(), **marks.result()})
        os._exit(0)  # cryptofeed's shutdown is not what is measured

    async def on_book(book, receipt_timestamp) -> None:
        if marks.note(idx[book.symbol], book.raw["data"][0]["seqId"]):
            finish(True)

    fh = FeedHandler(config={"uvloop": True, "log": {"filename": log_file, "level": "WARNING"}})
    fh.add_feed(LocalOKX(symbols=list(spec["symbols"]), channels=[L2_BOOK], callbacks={L2_BOOK: on_book},
                         max_depth=DEPTH, checksum_validation=True))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.call_later(spec["timeout"], lambda: finish(False, "timed out before the last frame was applied"))
    fh.run(install_signal_handlers=False)
    finish(False, "cryptofeed's loop ended before the last frame was applied")


def client_main(spec_path: str) -> None:
    with open(spec_path) as fh:
        spec = json.load(fh)
    if spec["kind"] == "cryptofeed":
        client_cryptofeed(spec)
        return
    import trio

    trio.run(client_triobooks if spec["kind"] == "triobooks" else client_raw, spec)
    sys.stdout.flush()
    os._exit(0)


# --- report ------------------------------------------------------------------------------


from benchmarks.run import fmt_range, med, rate_and_efficiency  # noqa: E402 - the Binance harness's report helpers


def report(results: dict[str, list[dict]], clients: list[Client], meta: dict, args, notes: list[str], started: float) -> str:
    out = []
    n_snap, n_body = meta["n_snap"], meta["n_body"]
    body_levels = meta["levels"][n_snap:]
    out.append(f"Stream: OKX V5 `books`, {len(meta['symbols'])} instruments ({', '.join(meta['symbols'])}), one 400-level snapshot "
               f"each ({meta['bytes_snapshots'] / n_snap / 1024:.1f} KB) then {n_body:,} updates per run, "
               f"{(meta['bytes'] - meta['bytes_snapshots']) / n_body:.0f} bytes and {sum(body_levels) / n_body:.2f} levels per update "
               "on average; every frame with a real CRC32 checksum (except the `checksum:0` row) and a seqId/prevSeqId chain.")
    out.append(f"Machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; medians of {args.runs} run(s), (min–max); "
               "measured from 10% of the updates applied to the last one applied.")
    out.append("")
    out.append("| client | frames/s | level updates/s | CPU s / 100k frames | core share | fake's CPU s / 100k frames |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for c in clients:
        r = results.get(c.key, [])
        ok = [x for x in r if x["ok"]]
        if not ok:
            err = r[0].get("error", "?") if r else "not run"
            out.append(f"| {c.label} ({c.scheme}://) | failed: {err[:160].replace('|', '/')} | | | | |")
            continue
        fails = f" ({len(r) - len(ok)} of {len(r)} failed)" if len(ok) < len(r) else ""
        out.append(f"| {c.label} ({c.scheme}://){fails} | {fmt_range([x['fps'] for x in ok])} | {fmt_range([x['lps'] for x in ok])} | "
                   f"{fmt_range([x['cpu_per_100k'] for x in ok], '{:.2f}')} | {med([x['core_share'] for x in ok]):.0%} | "
                   f"{med([x['fake_cpu_per_100k'] for x in ok]):.2f} |")
    out.append("")
    out.append("*Core share*: the client's CPU / wall time in the window (below ~95%: it was pre-empted, by other load or by "
               "the fake). *Fake's CPU*: the fake venue process over the whole client run (start-up included), per 100k "
               "measured frames.")
    out.append("")

    fps, eff = rate_and_efficiency(results)

    out.append("Ratios of the medians — frames/s, and in brackets frames per CPU-second (less sensitive to other load):")
    out.append("")
    out.append("| ratio | value |")
    out.append("|---|---:|")
    for text, a, b in (
        ("trio-books (wss) / cryptofeed (wss), both verifying checksums", "tb-wss", "cf-wss"),
        ("trio-books (ws) / cryptofeed (wss)", "tb-ws", "cf-wss"),
        ("trio-books / raw ceiling (ws)", "tb-ws", "raw-ws"),
        ("trio-books / raw ceiling (wss)", "tb-wss", "raw-wss"),
        ("trio-books with checksums / trio-books on checksum-0 frames (ws)", "tb-ws", "tb-ws-zero"),
        ("cryptofeed / raw ceiling (wss)", "cf-wss", "raw-wss"),
    ):
        fa, fb, ea, eb = fps(a), fps(b), eff(a), eff(b)
        if fa and fb and ea and eb:
            out.append(f"| {text} | {fa / fb:.2f} [{ea / eb:.2f}] |")
    out.append("")
    if OTHER_LOAD:
        out.append(f"Other processes on the machine used {statistics.mean(OTHER_LOAD):.0%} of a core on average during the "
                   f"client runs (max {max(OTHER_LOAD):.0%} in one run); frames/s suffer from that, CPU s/100k much less.")
    for note in notes:
        out.append(f"Note: {note}")
    out.append(f"Total time: {monotonic() - started:.0f} s.")
    return "\n".join(out)


# --- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.okx_bench", description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="20k updates per run, one run per client")
    p.add_argument("--runs", type=int, help="runs per client (default 3; --quick 1)")
    p.add_argument("--frames", type=int, help="updates per run (default 60000; --quick 20000)")
    p.add_argument("--only", help="comma-separated client keys: " + ", ".join(BY_KEY))
    p.add_argument("--skip-cryptofeed", action="store_true")
    p.add_argument("--json", help="write every measurement to this file")
    p.add_argument("--client", help=argparse.SUPPRESS)  # internal: run one measured client
    args = p.parse_args(argv)
    if args.client:
        client_main(args.client)
        return 0
    args.runs = args.runs or (1 if args.quick else 3)
    frames = args.frames or (20_000 if args.quick else 60_000)
    started = monotonic()
    notes: list[str] = []
    clients = [c for c in CLIENTS if not args.only or c.key in args.only.split(",")]
    if any(c.kind == "cryptofeed" for c in clients):
        if args.skip_cryptofeed:
            clients = [c for c in clients if c.kind != "cryptofeed"]
        elif importlib.util.find_spec("cryptofeed") is None:
            notes.append("cryptofeed skipped: not installed here (pip install -e '.[bench]').")
            clients = [c for c in clients if c.kind != "cryptofeed"]
        else:
            from importlib.metadata import version

            notes.append(f"cryptofeed {version('cryptofeed')}: its OKX feed with checksum_validation=True, max_depth=400, uvloop, "
                         "reached over wss:// with a run-time CA (SSL_CERT_FILE/REQUESTS_CA_BUNDLE); it checks the CRC32 "
                         "but not the seqId/prevSeqId chain. trio-books checks both.")
    # Ctrl-C / SIGTERM end the runs and stop every child (also when started with SIGINT ignored, e.g. `cmd &`)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    b0, t0 = busy_seconds(), monotonic()
    time.sleep(1.0)
    b1 = busy_seconds()
    idle_other = ((b1[0] - b0[0]) - (b1[1] - b0[1])) / (monotonic() - t0)
    notes.append(f"before the runs, other processes used {idle_other:.0%} of a core (1 s sample).")
    if idle_other > 0.2:
        log(f"warning: other processes are using {idle_other:.0%} of a core right now")
    workdir = tempfile.mkdtemp(prefix="trio-books-okx-bench-")
    results: dict[str, list[dict]] = {}
    try:
        from benchmarks import tls

        certs, clients, client_env = tls.setup(workdir, clients, notes)
        log(f"generating the OKX stream ({frames:,} updates), checking it with trio-books' OKX code, starting the fake …")
        fake, ready = start_fake(workdir, frames, certs)
        check = ready.get("check", {})
        notes.append(f"stream self-check through trio-books' OKX parser + SeqIdChain + checksum verify: "
                     f"{check.get('frames', 0):,} frames, {check.get('checksums_verified', 0):,} checksums verified, "
                     f"{check.get('checksums_failed', 0)} failed.")
        with open(os.path.join(workdir, "okx-stream.json")) as fh:
            meta = json.load(fh)
        env = Env(workdir, ready["port"], ready.get("tls_port"), meta, client_env, fake.pid)
        env.fake_cpu_seen = proc_cpu(fake.pid)
        timeout = 60 + frames / 1000  # generous: ≥ 1,000 frames/s would be needed to finish
        total, n = args.runs * len(clients), 0
        for r in range(args.runs):  # interleaved, so that drift hits every client alike
            for c in clients:
                n += 1
                res = run_client(env, c, frames, timeout)
                results.setdefault(c.key, []).append(res)
                text = (f"{res['fps']:,.0f} frames/s, {res['cpu_per_100k']:.2f} CPU s/100k, core share {res['core_share']:.0%}"
                        if res["ok"] else f"FAILED: {res['error'][:300]}")
                log(f"[{n:2}/{total}] {c.label} ({c.scheme}://) run {r + 1}: {text}")
        _stop(fake)
        print(report(results, clients, meta, args, notes, started))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"results": results, "notes": notes, "other_load": OTHER_LOAD}, fh, indent=1, default=str)
        return 0
    except KeyboardInterrupt:
        log("interrupted: stopping the fake and the client processes …")
        return 130
    finally:
        _stop_all()
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
