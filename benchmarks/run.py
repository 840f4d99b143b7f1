"""End-to-end performance benchmark of trio-books (run on request; never part of the test suite).

    python -m benchmarks.run            # the whole benchmark, about 3 minutes on 2 cores
    python -m benchmarks.run --quick    # about 30-35 s: smaller runs, 1 run per client
    python -m benchmarks.run --help

A fake Binance Spot venue runs in a separate process on 127.0.0.1 and serves
one fixed diff-depth stream (see ``stream.py``) to every client, each client
in its own process, one at a time:

* maximum sustained throughput: the fake sends as fast as the socket takes
  it (TCP back-pressure makes the client the limit); frames/s and level
  updates/s from the moment 10% of the stream is applied to the moment the
  last frame is applied, and CPU seconds per 100k frames — median of N runs,
  with min–max;
* latency at a fixed 5,000 frames/s: the fake logs every frame's send time,
  the client logs when each book was applied, the two are joined afterwards;
* trio-books with both transports (``wsproto``, ``trio-websocket``), the
  transports alone (receive + ``orjson.loads``, no book: the raw ceiling),
  and cryptofeed (if installed: ``pip install -e '.[bench]'``) on ``wss://``;
* footprint: nine Binance-protocol venues × 10 symbols × 1000 levels live at
  10 events/s per symbol (Binance's ``@100ms`` cadence): RSS and CPU share.

Everything listens on 127.0.0.1 only, every run is bounded in frames and
time, and every process started here is stopped here.
"""

from __future__ import annotations

import argparse
import bisect
import importlib.util
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``python benchmarks/run.py`` works too
    sys.path.insert(0, str(ROOT))

from benchmarks import tls  # noqa: E402

RATE = 5000  # frames/s of the latency runs
STREAMS = None  # filled from the fake's stream metadata


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Client:
    """One measured configuration."""

    key: str
    label: str
    kind: str  # triobooks | raw | cryptofeed
    transport: str  # wsproto | wsproto-lib | trio-websocket | minimal | websockets
    scheme: str  # ws | wss
    gc_threshold: int | None = None  # trio-books: service.gc_threshold (None: the service's default)

    @property
    def module(self) -> str:
        return "benchmarks.client_cryptofeed" if self.kind == "cryptofeed" else "benchmarks.clients"


THROUGHPUT = [
    Client("tb-wsproto", "trio-books, wsproto", "triobooks", "wsproto", "ws"),
    Client("tb-triows", "trio-books, trio-websocket", "triobooks", "trio-websocket", "ws"),
    Client("tb-wsproto-tls", "trio-books, wsproto, TLS", "triobooks", "wsproto", "wss"),
    Client("tb-wsproto-tls-pygc", "trio-books, wsproto, TLS, Python's default GC (gc_threshold = 0)", "triobooks", "wsproto", "wss", 0),
    Client("cf-tls", "cryptofeed, TLS", "cryptofeed", "websockets", "wss"),
    Client("raw-wsproto", "raw ceiling: our wsproto client (plain-frame fast path) + orjson", "raw", "wsproto", "ws"),
    Client("raw-wsproto-lib", "raw: every frame through wsproto (the client before its fast path) + orjson", "raw", "wsproto-lib", "ws"),
    Client("raw-triows", "raw ceiling: trio-websocket + orjson", "raw", "trio-websocket", "ws"),
    Client("raw-wsproto-tls", "raw ceiling: our wsproto client + orjson, TLS", "raw", "wsproto", "wss"),
    Client("raw-minimal", "reference: socket + 20-line frame splitter + orjson", "raw", "minimal", "ws"),
]
LATENCY = ["tb-wsproto", "tb-triows", "tb-wsproto-tls", "cf-tls"]
BY_KEY = {c.key: c for c in THROUGHPUT}


@dataclass
class Env:
    workdir: str
    port: int
    tls_port: int | None
    meta: dict
    client_env: dict[str, str]
    seq: int = 0
    fake_pids: list[int] = field(default_factory=list)
    fake_cpu_seen: float = 0.0

    def run_name(self, tag: str) -> str:
        self.seq += 1
        return f"{tag}-{self.seq}"


# --- processes -----------------------------------------------------------------------------


def start_fake(args: list[str], workdir: str, timeout: float = 60.0) -> tuple[subprocess.Popen, dict]:
    """Start the fake venue process; return it and its first JSON line."""
    err = open(os.path.join(workdir, f"fake-{args[0]}.err"), "wb")
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.fake_venue", *args], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, preexec_fn=_preexec)
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()  # the fake prints its ports once it listens
        if line:
            break
    if not line:
        stop_fake(proc)
        raise RuntimeError(f"the fake venue did not start; see {err.name}")
    return proc, json.loads(line)


def stop_fake(proc: subprocess.Popen) -> str:
    """Close its stdin (it stops by itself), wait, and kill it only if it hangs."""
    out = b""
    try:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
        proc.wait(timeout=10)
        if proc.stdout:
            out = proc.stdout.read()
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    finally:
        if proc.stdout:
            proc.stdout.close()
    return out.decode(errors="replace")


def busy_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine was busy since boot, CPU seconds of this
    process and its finished children): their growth apart is other load."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:9]]
    machine = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
    ch, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    return machine, ch.ru_utime + ch.ru_stime + me.ru_utime + me.ru_stime


OTHER_LOAD: list[float] = []  # per client run: other processes' CPU, in cores
NICE: int | None = None  # --nice: scheduling priority of the fake and the clients


def _preexec() -> None:
    if NICE is not None:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)


def run_client(env: Env, client: Client, spec: dict, timeout: float, profile: str | None = None, wrap: list[str] | None = None) -> dict:
    before, t_before = busy_seconds(), time.monotonic()
    try:
        return _run_client(env, client, spec, timeout, profile, wrap)
    finally:
        after, wall = busy_seconds(), time.monotonic() - t_before
        fake_cpu = 0.0  # the fake venue is a running child: its CPU is not in RUSAGE_CHILDREN yet
        for pid in env.fake_pids:
            fake_cpu += _proc_cpu(pid)
        other = (after[0] - before[0]) - (after[1] - before[1]) - (fake_cpu - env.fake_cpu_seen)
        env.fake_cpu_seen = fake_cpu
        OTHER_LOAD.append(max(0.0, other / wall) if wall > 0 else 0.0)


def _proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _run_client(env: Env, client: Client, spec: dict, timeout: float, profile: str | None = None, wrap: list[str] | None = None) -> dict:
    spec_path = os.path.join(env.workdir, f"{spec['run']}.spec")
    spec["out"] = os.path.join(env.workdir, f"{spec['run']}.json")
    with open(spec_path, "w") as fh:
        json.dump(spec, fh)
    cmd = [sys.executable, "-m", client.module, spec_path]
    if wrap:
        cmd = [*wrap, *cmd]
    if profile:
        cmd = [profile, "record", "-r", "250", "-f", "raw", "-o", spec["out"] + ".folded", "--", *cmd]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env.client_env, timeout=timeout + 30,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_preexec)
    except subprocess.TimeoutExpired:
        return {"ok": False, "last_error": f"client process did not end within {timeout + 30:.0f} s"}
    try:
        with open(spec["out"], "rb") as fh:
            result = json.loads(fh.read())
    except (OSError, ValueError):
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return {"ok": False, "last_error": f"client exited {proc.returncode} without a result: {' | '.join(tail)}"}
    if profile:
        result["folded"] = spec["out"] + ".folded"
    if wrap:  # cachegrind's summary on stderr: "==pid== I   refs:      3,462,057,923"
        m = re.search(rb"I\s+refs:\s+([\d,]+)", proc.stderr)
        result["instructions"] = int(m.group(1).replace(b",", b"")) if m else None
    return result


def read_log(result: dict, out: str) -> dict[str, array]:
    logs = {}
    for name, code in result.get("logs", {}).items():
        arr = array(code)
        path = f"{out}.{name}"
        with open(path, "rb") as fh:
            arr.frombytes(fh.read())
        logs[name] = arr
    return logs


# --- specs ---------------------------------------------------------------------------------


def _urls(env: Env, client: Client, run: str, pace: str) -> tuple[str, str]:
    if client.scheme == "wss":
        base = f"wss://127.0.0.1:{env.tls_port}"
        rest = f"https://127.0.0.1:{env.tls_port}" if client.kind == "cryptofeed" else f"http://127.0.0.1:{env.port}"
    else:
        base = f"ws://127.0.0.1:{env.port}"
        rest = f"http://127.0.0.1:{env.port}"
    return f"{base}/r/{run}/{pace}", f"{rest}/r/{run}"


def final_u(meta: dict, n_frames: int) -> list[int]:
    """Per symbol, the last ``u`` among the first ``n_frames`` frames (prefix included)."""
    last = [0] * len(meta["symbols"])
    for s, u in zip(meta["sym"][:n_frames], meta["u"][:n_frames]):
        last[s] = u
    return last


def make_spec(env: Env, client: Client, *, pace: str, body: int, warm: int, timeout: float) -> dict:
    meta = env.meta
    run = env.run_name(client.key)
    n_prefix = meta["n_prefix"]
    start = n_prefix + warm
    spec = {"run": run, "kind": client.kind, "transport": client.transport, "symbols": meta["symbols"], "timeout": timeout,
            "depth": 1000, "final_u": final_u(meta, n_prefix + body), "start_mark": [meta["sym"][start], meta["u"][start]]}
    if client.kind == "raw":
        ws, _rest = _urls(env, client, run, pace + "-nogate")
        streams = "/".join(f"{s.lower()}@depth@100ms" for s in meta["symbols"])
        spec.update(url=f"{ws}/stream?streams={streams}", total_frames=n_prefix + body, start_count=start + 1)
    else:
        spec["ws_base"], spec["rest_base"] = _urls(env, client, run, pace)
        if client.gc_threshold is not None:
            spec["gc_threshold"] = client.gc_threshold
    return spec


# --- measurements --------------------------------------------------------------------------


def throughput_once(env: Env, client: Client, body: int, profile: str | None = None, wrap: list[str] | None = None) -> dict:
    warm = body // 10
    timeout = 600 if wrap else 120
    spec = make_spec(env, client, pace="blast", body=body, warm=warm, timeout=timeout)
    res = run_client(env, client, spec, timeout, profile, wrap)
    if not res.get("ok"):
        return {"ok": False, "error": res.get("last_error") or "failed", "failures": res.get("failures")}
    frames = body - warm - 1
    seconds = res["t1"] - res["t0"]
    n_prefix = env.meta["n_prefix"]
    levels = sum(env.meta["levels"][n_prefix + warm + 1 : n_prefix + body])
    cpu = res["cpu1"] - res["cpu0"]
    out = {"ok": True, "fps": frames / seconds, "lps": levels / seconds, "cpu_per_100k": cpu / frames * 100_000,
           "core_share": cpu / seconds, "rss_kb": res["rss"]["VmRSS"]}
    if "folded" in res:
        out["folded"] = res["folded"]
    if wrap:
        out["instructions"] = res.get("instructions")
    return out


CACHEGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
INSTRUCTION_CLIENTS = ["tb-wsproto-tls", "tb-wsproto-tls-pygc", "cf-tls"]


def instructions_per_frame(env: Env, client: Client, body: int) -> dict:
    """Machine instructions the client executes per frame (valgrind's cachegrind
    counts them; the count does not depend on other load, CPU frequency or
    scheduling). Two runs of different lengths; the difference per extra frame
    leaves start-up, snapshots and shutdown out."""
    small = body // 3
    runs = [throughput_once(env, client, n, wrap=CACHEGRIND) for n in (small, body)]
    if not all(r["ok"] and r.get("instructions") for r in runs):
        bad = next(r for r in runs if not (r["ok"] and r.get("instructions")))
        return {"ok": False, "error": bad.get("error") or "no instruction count"}
    per_frame = (runs[1]["instructions"] - runs[0]["instructions"]) / (body - small)
    return {"ok": True, "per_frame": per_frame, "frames": (small, body), "totals": [r["instructions"] for r in runs]}


def read_send_times(env: Env, spec: dict) -> array:
    """The fake's send time of every frame of a run (it writes them as it finishes)."""
    send_path = os.path.join(env.workdir, f"{spec['run']}.send")
    for _ in range(100):
        if os.path.exists(send_path):
            break
        time.sleep(0.1)
    sent = array("d")
    with open(send_path, "rb") as fh:
        sent.frombytes(fh.read())
    return sent


def latency_once(env: Env, client: Client, seconds: float) -> dict:
    body = min(int(RATE * seconds), env.meta["n_body"])
    spec = make_spec(env, client, pace=f"rate{RATE}n{body}", body=body, warm=1, timeout=seconds + 60)
    res = run_client(env, client, spec, seconds + 60)
    if not res.get("ok"):
        return {"ok": False, "error": res.get("last_error") or "failed"}
    sent = read_send_times(env, spec)
    try:
        with open(os.path.join(env.workdir, f"{spec['run']}.blocked")) as fh:
            blocked = int(fh.read())
    except (OSError, ValueError):
        blocked = -1
    logs = read_log(res, spec["out"])
    lat = join_latency(env.meta, sent, logs, body, skip=RATE)  # the first second is warm-up
    w0, w1 = sent[RATE], res["t1"]
    pauses = [d for t, d, _g in (res.get("gc") or {}).get("pauses", []) if w0 <= t <= w1]
    if not lat:
        return {"ok": False, "error": "no frame could be joined"}
    lat.sort()
    n = len(lat)
    span = sent[body - 1] - sent[0]
    return {"ok": True, "p50": lat[n // 2], "p99": lat[min(n - 1, int(n * 0.99))], "max": lat[-1], "n": n,
            "rate": (body - 1) / span if span > 0 else 0.0,
            "gc_longest": max(pauses, default=0.0), "gc_over_1ms": sum(d >= 1e-3 for d in pauses), "sender_blocked": blocked,
            "core_share": (res["cpu1"] - res["cpu0"]) / (res["t1"] - res["t0"]) if res.get("t0") and res.get("cpu0") is not None else None}


def join_latency(meta: dict, sent: array, logs: dict[str, array], body: int, skip: int) -> list[float]:
    """For every body frame after ``skip``: (first client log time whose update id
    covers the frame's ``u``, for its symbol) − (the frame's send time)."""
    n_sym = len(meta["symbols"])
    us: list[list[int]] = [[] for _ in range(n_sym)]
    ts: list[list[float]] = [[] for _ in range(n_sym)]
    for s, u, t in zip(logs["s"], logs["u"], logs["t"]):
        if us[s] and u < us[s][-1]:
            raise RuntimeError("update ids went backwards in the client log (a resync?)")
        us[s].append(u)
        ts[s].append(t)
    n_prefix = meta["n_prefix"]
    out = []
    for k in range(skip, body):
        i = n_prefix + k
        s, u = meta["sym"][i], meta["u"][i]
        j = bisect.bisect_left(us[s], u)
        if j == len(us[s]):
            continue
        out.append(ts[s][j] - sent[k])
    return out


def footprint(workdir: str, client_env: dict, transport: str, seconds: float, settle: float = 3.0, venues: int = 9) -> dict:
    proc, ready = start_fake(["live", "--venues", str(venues), "--symbols", "10", "--rate", "10"], workdir)
    try:
        env = Env(workdir, 0, None, {}, client_env, fake_pids=[proc.pid])
        env.fake_cpu_seen = _proc_cpu(proc.pid)
        run = env.run_name(f"fleet-{transport}")
        spec = {"run": run, "kind": "fleet", "transport": transport, "symbols": _symbols(10), "depth": 1000,
                "ports": ready["ports"], "settle": settle, "window": seconds, "timeout": seconds + 90}
        res = run_client(env, Client("fleet", "fleet", "triobooks", transport, "ws"), spec, seconds + 90)
    finally:
        stop_fake(proc)
    if "window" not in res:
        return {"ok": False, "error": res.get("last_error") or "failed"}
    res["cpu_share"] = res["cpu"] / res["window"]
    res["fps"] = res["frames"] / res["window"]
    return res


def _symbols(n: int) -> list[str]:
    from benchmarks.stream import symbols

    return symbols(n)


# --- profile summary -----------------------------------------------------------------------

CATEGORIES = [
    ("WebSocket receive (transport)", ("receive_batch", "get_message", "_reader_task")),
    ("JSON decode + venue parser", ("parse_frame", "Feed.parse")),
    ("book apply (OrderBook.apply)", ("OrderBook.apply",)),
    ("sync/sequencer + crossed check", ("SymbolSync.on_delta",)),
    ("store.touched + benchmark log", ("touched",)),
]


STARTUP = ("_find_and_load", "tune_gc", "on_snapshot", "_fetch_snapshot", "create_default_context", "open_connection", "http_client")


def summarize_profile(path: str) -> list[str]:
    """py-spy folded stacks of the running phase (imports left out) → where time goes."""
    total = 0
    cats = {name: 0 for name, _ in CATEGORIES}
    leaves: dict[str, int] = {}
    with open(path) as fh:
        for line in fh:
            stack, _, n = line.rstrip().rpartition(" ")
            if "unrolled_run" not in stack or any(x in stack for x in STARTUP):
                continue
            count = int(n)
            total += count
            frames = stack.split(";")
            for name, needles in CATEGORIES:
                if any(any(nd in f for nd in needles) for f in frames):
                    cats[name] += count
                    break
            leaf = frames[-1].split(" (")[0]
            where = frames[-1].rsplit("/", 1)[-1].rstrip(")")
            key = f"{leaf} ({where.split(':')[0]})"
            leaves[key] = leaves.get(key, 0) + count
    if not total:
        return ["(no samples)"]
    lines = [f"{'share':>6}  where (py-spy samples of the running phase, {total} samples)"]
    rest = total
    for name, n in cats.items():
        lines.append(f"{n / total:6.1%}  {name}")
        rest -= n
    lines.append(f"{rest / total:6.1%}  trio scheduling, channel hop, everything else")
    lines.append("top functions by own time:")
    for key, n in sorted(leaves.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(f"{n / total:6.1%}  {key}")
    return lines


# --- reporting -----------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def ok_median(rows: list[dict], field: str) -> float | None:
    """The median of ``field`` over the runs that succeeded, or None."""
    ok = [x[field] for x in rows if x["ok"]]
    return med(ok) if ok else None


def rate_and_efficiency(results: dict[str, list[dict]]):
    """``(fps, eff)``: a client key's median frames/s and frames per CPU-second
    (None where no run succeeded), for the ratio lines of a report."""

    def fps(key: str) -> float | None:
        return ok_median(results.get(key, []), "fps")

    def eff(key: str) -> float | None:
        cpu = ok_median(results.get(key, []), "cpu_per_100k")
        return None if cpu is None else 1 / cpu

    return fps, eff


def fmt_range(values: list[float], fmt: str = "{:,.0f}") -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(med(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def report(results: dict, args, meta: dict, started: float) -> str:
    tp, lat, fleet, notes = results["throughput"], results["latency"], results["footprint"], results["notes"]
    out = []
    n_body = meta["n_body"]
    out.append(f"Stream: Binance Spot combined diff-depth, {len(meta['symbols'])} symbols, {n_body:,} frames per run "
               f"(+{meta['n_prefix']} before the snapshot), {meta['bytes'] / (meta['n_prefix'] + n_body):.0f} bytes and "
               f"{sum(meta['levels']) / len(meta['levels']):.2f} level changes per frame on average; 1000-level books.")
    out.append(f"Machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; medians of {args.runs} run(s), (min–max).")
    out.append("")
    out.append("| client | frames/s | level updates/s | CPU s / 100k frames | core share | latency p50 / p99 / max @ 5,000 frames/s |")
    out.append("|---|---:|---:|---:|---:|---|")
    for c in THROUGHPUT:
        r = tp.get(c.key)
        if r is None:
            continue
        ok = [x for x in r if x["ok"]]
        if not ok:
            out.append(f"| {c.label} ({c.scheme}://) | failed: {r[0].get('error', '?')[:90]} | | | | |")
            continue
        fps = fmt_range([x["fps"] for x in ok])
        lps = fmt_range([x["lps"] for x in ok])
        cpu = fmt_range([x["cpu_per_100k"] for x in ok], "{:.2f}")
        share = f"{med([x['core_share'] for x in ok]):.0%}"
        fails = f" ({len(r) - len(ok)} failed)" if len(ok) < len(r) else ""
        l = lat.get(c.key)
        if l is None:
            ltxt = "—"
        elif not l["ok"]:
            ltxt = f"failed: {l['error'][:60]}"
        else:
            ltxt = f"{l['p50'] * 1e3:.2f} / {l['p99'] * 1e3:.2f} / {l['max'] * 1e3:.2f} ms"
        out.append(f"| {c.label} ({c.scheme}://){fails} | {fps} | {lps} | {cpu} | {share} | {ltxt} |")
    out.append("")

    fps, eff = rate_and_efficiency(tp)

    out.append("Ratios of medians — frames/s, and in brackets frames per CPU-second (insensitive to other load on the machine):")
    pairs = [
        ("trio-books wsproto (wss) / cryptofeed (wss)", "tb-wsproto-tls", "cf-tls", "target ≥ 1.5"),
        ("trio-books wsproto (ws) / cryptofeed (wss)", "tb-wsproto", "cf-tls", ""),
        ("trio-books wsproto / raw ceiling of its own transport (ws)", "tb-wsproto", "raw-wsproto", "target ≥ 0.80"),
        ("trio-books wsproto / raw ceiling of its own transport (wss)", "tb-wsproto-tls", "raw-wsproto-tls", "target ≥ 0.80"),
        ("trio-books wsproto / raw wsproto-library ceiling (ws)", "tb-wsproto", "raw-wsproto-lib", "the ceiling the target was first set against"),
        ("trio-books trio-websocket / raw trio-websocket ceiling (ws)", "tb-triows", "raw-triows", "target ≥ 0.80"),
        ("trio-books wsproto / trio-books trio-websocket (ws)", "tb-wsproto", "tb-triows", "transport choice"),
        ("trio-books, service GC policy / Python's default GC (wss)", "tb-wsproto-tls", "tb-wsproto-tls-pygc", "what gc_threshold buys"),
        ("raw wsproto library / raw minimal frame splitter (ws)", "raw-wsproto-lib", "raw-minimal", "what wsproto costs"),
        ("raw fast path / raw minimal frame splitter (ws)", "raw-wsproto", "raw-minimal", "what our client costs"),
    ]
    for text, a, b, note in pairs:
        fa, fb = fps(a), fps(b)
        ea, eb = eff(a), eff(b)
        value = f"{fa / fb:.2f} [{ea / eb:.2f}]" if fa and fb and ea and eb else "n/a"
        rounds = round_ratios(tp, a, b)
        if len(rounds) > 1:
            value += f"; round by round {fmt_range(rounds, '{:.2f}')}"
        out.append(f"- {text}: {value}" + (f"  ({note})" if note else ""))
    out.append("(Round by round: the ratio of the two clients' runs in the same round — run back to back, so slow "
               "drift of the machine's speed cancels — median and range.)")
    ins = results.get("instructions", {})
    if ins:
        out.append("")
        out.append("Machine instructions per frame (valgrind cachegrind; two runs of different lengths, the difference per "
                   "extra frame; does not depend on other load, CPU frequency or scheduling):")
        for key, r in ins.items():
            c = BY_KEY[key]
            out.append(f"- {c.label} ({c.scheme}://): " + (f"{r['per_frame']:,.0f}" if r["ok"] else f"failed ({r['error']})"))
        a, b = ins.get("tb-wsproto-tls", {}), ins.get("cf-tls", {})
        if a.get("ok") and b.get("ok"):
            out.append(f"- cryptofeed / trio-books: {b['per_frame'] / a['per_frame']:.2f}× the instructions per frame "
                       "(instructions are not time: the frames/s ratio above is the measure of the target)")
    out.append("")
    if lat:
        out.append("Latency runs (5,000 frames/s, first second left out): the client's CPU share of one core, and GC pauses in the window:")
        out.append("")
        for key, l in lat.items():
            if l.get("ok"):
                out.append(f"- {BY_KEY[key].label} ({BY_KEY[key].scheme}://): {l['n']:,} frames at {l['rate']:,.0f}/s, "
                           f"CPU {l['core_share'] or 0:.0%} of a core, longest GC pause {l['gc_longest'] * 1e3:.1f} ms "
                           f"({l['gc_over_1ms']} over 1 ms); the fake's sends blocked by a full socket: {l['sender_blocked']}")
        out.append("")
    if fleet:
        out.append("Footprint: 9 Binance-protocol venues (binance_spot clones) × 10 symbols × 1000 levels, live, "
                   "10 events/s per symbol (library mode, no HTTP API):")
        out.append("")
        out.append("| transport | books live | levels held | frames/s | CPU (share of one core) | RSS | peak RSS | RSS after imports |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for transport, r in fleet.items():
            if not r.get("ok") and "window" not in r:
                out.append(f"| {transport} | failed: {r.get('error', '?')[:80]} | | | | | | |")
                continue
            out.append(f"| {transport} | {r['books_live']}/{r['books']} | {r['levels_total']:,} | {r['fps']:,.0f} | "
                       f"{r['cpu_share']:.1%} | {r['rss']['VmRSS'] / 1024:.0f} MB | {r['rss']['VmHWM'] / 1024:.0f} MB | "
                       f"{r['rss_idle']['VmRSS'] / 1024:.0f} MB |")
        out.append("")
    if OTHER_LOAD:
        out.append(f"Other processes on the machine used {statistics.mean(OTHER_LOAD):.0%} of a core on average during the "
                   f"client runs (max {max(OTHER_LOAD):.0%} in one run); frames/s suffer from that, CPU s/100k much less.")
    if NICE is not None:
        out.append(f"The fake and the clients ran at scheduling priority {NICE} (--nice).")
    for note in notes:
        out.append(f"Note: {note}")
    out.append(f"Total time: {time.monotonic() - started:.0f} s.")
    return "\n".join(out)


def round_ratios(tp: dict, a: str, b: str) -> list[float]:
    """``a``'s frames/s over ``b``'s, for each round in which both succeeded."""
    return [x["fps"] / y["fps"] for x, y in zip(tp.get(a, []), tp.get(b, [])) if x["ok"] and y["ok"]]


def targets(results: dict) -> list[str]:
    tp, lat, fleet = results["throughput"], results["latency"], results["footprint"]

    def fps(key):
        ok = [x["fps"] for x in tp.get(key, []) if x["ok"]]
        return med(ok) if ok else None

    lines = []
    a, b = fps("tb-wsproto-tls"), fps("cf-tls")
    if a and b:
        rounds = round_ratios(tp, "tb-wsproto-tls", "cf-tls")
        extra = f" (round by round {fmt_range(rounds, '{:.2f}')})" if len(rounds) > 1 else ""
        lines.append(f"end-to-end frames/s ≥ 1.5× cryptofeed: {a / b:.2f}×{extra} — {'met' if a / b >= 1.5 else 'MISSED'}")
    a, b = fps("tb-wsproto"), fps("raw-wsproto")
    if a and b:
        lines.append(f"≥ 80% of the raw receive ceiling (our wsproto client, ws): {a / b:.0%} — {'met' if a / b >= 0.8 else 'MISSED'}")
    a, b = fps("tb-wsproto"), fps("raw-wsproto-lib")
    if a and b:
        lines.append(f"≥ 80% of the raw wsproto-library ceiling (every frame through wsproto, ws): {a / b:.0%} — {'met' if a / b >= 0.8 else 'MISSED'}")
    l = lat.get("tb-wsproto")
    if l and l["ok"]:
        lines.append(f"p99 < 2 ms at 5,000 frames/s (wsproto, ws): {l['p99'] * 1e3:.2f} ms — {'met' if l['p99'] < 0.002 else 'MISSED'}")
    f = fleet.get("wsproto")
    if f and "window" in f:
        cpu_ok, rss_ok = f["cpu_share"] < 0.15, f["rss"]["VmRSS"] < 150 * 1024
        lines.append(f"9 venues × 10 symbols: CPU {f['cpu_share']:.1%} of one core (< 15%: {'met' if cpu_ok else 'MISSED'}), "
                     f"RSS {f['rss']['VmRSS'] / 1024:.0f} MB (< 150 MB: {'met' if rss_ok else 'MISSED'})")
    return lines


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="a ~30-35 s run: fewer frames, one run per client")
    p.add_argument("--runs", type=int, help="throughput runs per client (default 3; --quick 1)")
    p.add_argument("--frames", type=int, help="frames per throughput run (default 60000; --quick 20000)")
    p.add_argument("--latency-seconds", type=float, help="length of each 5,000 frames/s run (default 6; --quick 2.5)")
    p.add_argument("--footprint-seconds", type=float, help="CPU window of the 9-venue run (default 15; --quick 5)")
    p.add_argument("--only", help="comma-separated client keys: " + ", ".join(BY_KEY))
    p.add_argument("--skip", default="", help="comma-separated parts to leave out: throughput, latency, footprint, cryptofeed")
    p.add_argument("--profile", action="store_true", help="also profile one trio-books run (py-spy if installed, else skipped) and summarize")
    p.add_argument("--instructions", action="store_true", help="also count machine instructions per frame of trio-books (wss) and "
                   "cryptofeed with valgrind (deterministic: immune to other load; ~3 minutes)")
    p.add_argument("--json", help="write every measurement to this file")
    p.add_argument("--nice", type=int, help="run the fake and the clients at this scheduling priority "
                   "(e.g. -10, needs root) to shield them from other load on a shared machine")
    args = p.parse_args(argv)
    global NICE
    NICE = args.nice
    args.runs = args.runs or (1 if args.quick else 3)
    frames = args.frames or (20_000 if args.quick else 60_000)
    lat_s = args.latency_seconds or (2.5 if args.quick else 6.0)
    fp_s = args.footprint_seconds or (5.0 if args.quick else 15.0)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    started = time.monotonic()

    notes: list[str] = []
    clients = [c for c in THROUGHPUT if not args.only or c.key in args.only.split(",")]
    if importlib.util.find_spec("cryptofeed") is None:
        notes.append("cryptofeed skipped: it is not installed in this environment (pip install -e '.[bench]').")
        clients = [c for c in clients if c.kind != "cryptofeed"]
    elif "cryptofeed" in skip:
        clients = [c for c in clients if c.kind != "cryptofeed"]
    else:
        from importlib.metadata import version

        notes.append(f"cryptofeed {version('cryptofeed')} (its Binance feed, defaults incl. uvloop), reached over wss:// "
                     "with a run-time CA trusted via SSL_CERT_FILE/REQUESTS_CA_BUNDLE.")

    b0, t0 = busy_seconds(), time.monotonic()
    time.sleep(1.0)
    b1 = busy_seconds()
    idle_other = ((b1[0] - b0[0]) - (b1[1] - b0[1])) / (time.monotonic() - t0)
    if idle_other > 0.2:
        log(f"warning: other processes are using {idle_other:.0%} of a core right now; frames/s and latency will be "
            "worse than on a quiet machine (CPU s/100k frames much less so)")
    workdir = tempfile.mkdtemp(prefix="trio-books-bench-")
    results: dict = {"throughput": {}, "latency": {}, "footprint": {}, "notes": notes}
    fake = None
    try:
        certs, clients, client_env = tls.setup(workdir, clients, notes)
        fake_args = ["replay", "--workdir", workdir, "--frames", str(max(frames, int(RATE * lat_s)))]
        if certs:
            fake_args += ["--certfile", certs["cert"], "--keyfile", certs["key"]]
        log(f"generating the stream ({max(frames, int(RATE * lat_s)):,} frames) and starting the fake venue …")
        fake, ready = start_fake(fake_args, workdir)
        with open(os.path.join(workdir, "stream.json")) as fh:
            meta = json.load(fh)
        env = Env(workdir, ready["port"], ready.get("tls_port"), meta, client_env, fake_pids=[fake.pid])
        env.fake_cpu_seen = _proc_cpu(fake.pid)
        body = frames

        if "throughput" not in skip:
            total = args.runs * len(clients)
            n = 0
            for r in range(args.runs):  # interleaved, so that drift hits every client alike
                for c in clients:
                    n += 1
                    res = throughput_once(env, c, body)
                    results["throughput"].setdefault(c.key, []).append(res)
                    text = f"{res['fps']:,.0f} frames/s, {res['cpu_per_100k']:.2f} CPU s/100k" if res["ok"] else f"FAILED: {res['error']}"
                    log(f"[{n:2}/{total}] throughput  {c.label} ({c.scheme}://) run {r + 1}: {text}")
        if args.instructions:
            if shutil.which("valgrind") is None:
                notes.append("--instructions: valgrind is not installed; no instruction counts.")
            else:
                for key in INSTRUCTION_CLIENTS:
                    c = BY_KEY[key]
                    if c not in clients:
                        continue
                    log(f"instructions {c.label} ({c.scheme}://): two runs under valgrind (slow) …")
                    res = instructions_per_frame(env, c, body)
                    results.setdefault("instructions", {})[key] = res
                    log(f"instructions {c.label}: " + (f"{res['per_frame']:,.0f} per frame" if res["ok"] else f"FAILED: {res['error']}"))
        if "latency" not in skip:
            for key in LATENCY:
                c = BY_KEY[key]
                if c not in clients:
                    continue
                res = latency_once(env, c, lat_s)
                results["latency"][key] = res
                if res["ok"]:
                    text = (f"p50 {res['p50'] * 1e3:.2f} ms, p99 {res['p99'] * 1e3:.2f} ms, max {res['max'] * 1e3:.2f} ms "
                            f"({res['n']:,} frames at {res['rate']:,.0f}/s; client CPU {res['core_share'] or 0:.0%} of a core; "
                            f"longest GC pause {res['gc_longest'] * 1e3:.1f} ms, {res['gc_over_1ms']} pauses over 1 ms)")
                else:
                    text = f"FAILED: {res['error']}"
                log(f"latency     {c.label} ({c.scheme}://): {text}")
        if args.profile:
            spy = shutil.which("py-spy") or (str(Path(sys.executable).parent / "py-spy") if (Path(sys.executable).parent / "py-spy").exists() else None)
            if spy is None:
                notes.append("--profile: py-spy is not installed (pip install py-spy); no profile taken.")
            else:
                res = throughput_once(env, BY_KEY["tb-wsproto"], body, profile=spy)
                if res.get("folded"):
                    results["profile"] = summarize_profile(res["folded"])
                else:
                    notes.append(f"--profile: the profiled run failed ({res.get('error')}).")
        stop_fake(fake)
        fake = None
        if "footprint" not in skip:
            for transport in (["wsproto"] if args.quick else ["wsproto", "trio-websocket"]):
                log(f"footprint   9 venues × 10 symbols × 1000 levels, {transport}, {fp_s:.0f} s window …")
                res = footprint(workdir, client_env, transport, fp_s, settle=2.0 if args.quick else 3.0)
                results["footprint"][transport] = res
                if "window" in res:
                    log(f"footprint   {transport}: {res['books_live']}/{res['books']} books live, CPU {res['cpu_share']:.1%} of one core, "
                        f"RSS {res['rss']['VmRSS'] / 1024:.0f} MB")
                else:
                    log(f"footprint   {transport}: FAILED: {res.get('error')}")
        text = report(results, args, meta, started)
        print(text)
        print()
        print("Targets:")
        for line in targets(results):
            print(f"- {line}")
        if results.get("profile"):
            print()
            print("Where the time goes (trio-books, wsproto, ws://, blast):")
            for line in results["profile"]:
                print(f"  {line}")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({k: v for k, v in results.items()}, fh, indent=1, default=str)
        return 0
    finally:
        if fake is not None:
            stop_fake(fake)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
