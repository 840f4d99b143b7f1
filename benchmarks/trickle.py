"""Trickle benchmark: one event per frame, paced, trio-books against cryptofeed (run on request).

    python -m benchmarks.trickle            # 1k, 5k, 20k events/s; 3 interleaved rounds; ~4 minutes
    python -m benchmarks.trickle --quick    # one round, 3 s per run, ~1 minute

The fake Binance Spot venue of ``benchmarks.run`` (its own process) sends the
body one frame per ``send`` at the frame's own due time, so each event arrives
alone and costs the client a wake-up. Per client and rate: CPU seconds per 100k
events (the client process's user+sys from the first body event applied to the
last), and frame-sent → book-applied latency (both ``CLOCK_MONOTONIC``).
Clients run one at a time, each in a fresh process, interleaved round by round
(trio-books wsproto and trio-websocket, cryptofeed; all over TLS, as cryptofeed
accepts nothing else); the ratios are taken per round. A last run per
trio-books transport at 5k/s counts Trio task steps and scheduler passes per
event (an instrument; not in the timed rounds).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

from benchmarks import run, tls
from benchmarks.run import Client, Env, join_latency, make_spec, run_client, start_fake, stop_fake

CLIENTS = [
    Client("tb-wsproto-tls", "trio-books, wsproto", "triobooks", "wsproto", "wss"),
    Client("tb-triows-tls", "trio-books, trio-websocket", "triobooks", "trio-websocket", "wss"),
    Client("cf-tls", "cryptofeed", "cryptofeed", "websockets", "wss"),
]
RATES = (1000, 5000, 20000)
FLOORS = [  # --instructions also counts these: where trio-books' instructions per event go
    run.BY_KEY["raw-wsproto-tls"],
    Client("raw-hop-tls", "our transport + orjson, read task → memory channel → parsing task (the design card's hop)",
           "raw", "wsproto-hop", "wss"),
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def trickle_once(env: Env, client: Client, rate: int, seconds: float, count_steps: bool = False) -> dict:
    body = min(int(rate * seconds), env.meta["n_body"])
    spec = make_spec(env, client, pace=f"trickle{rate}n{body}", body=body, warm=1, timeout=seconds + 60)
    if count_steps:
        spec["count_steps"] = True
    res = run_client(env, client, spec, seconds + 60)
    if not res.get("ok"):
        return {"ok": False, "error": res.get("last_error") or "failed"}
    sent = run.read_send_times(env, spec)
    lat = sorted(join_latency(env.meta, sent, run.read_log(res, spec["out"]), body, skip=min(rate, body // 4)))
    if not lat:
        return {"ok": False, "error": "no frame could be joined"}
    n = len(lat)
    events = body - 1
    out = {"ok": True, "cpu_per_100k": (res["cpu1"] - res["cpu0"]) / events * 100_000, "n": n,
           "p50": lat[n // 2], "p99": lat[min(n - 1, int(n * 0.99))], "p999": lat[min(n - 1, int(n * 0.999))],
           "rate": (body - 1) / (sent[body - 1] - sent[0])}
    if "steps" in res:
        st = res["steps"]
        out["steps"] = {"steps": st["steps"] / events, "io_waits": st["io_waits"] / events,
                        "by_task": {k: v / events for k, v in sorted(st["by_task"].items(), key=lambda kv: -kv[1])}}
    return out


def instructions_per_event(env: Env, client: Client, rate: int = 100, small: int = 300, large: int = 900) -> dict:
    """Machine instructions per trickled event (valgrind cachegrind; load-independent): two
    runs at ``rate`` events/s (slow enough that every event is still its own wake-up under
    valgrind), the difference per extra event."""
    totals = []
    for body in (small, large):
        spec = make_spec(env, client, pace=f"trickle{rate}n{body}", body=body, warm=1, timeout=600)
        res = run_client(env, client, spec, 600, wrap=run.CACHEGRIND)
        if not res.get("ok") or not res.get("instructions"):
            return {"ok": False, "error": res.get("last_error") or "no instruction count"}
        totals.append(res["instructions"])
    return {"ok": True, "per_event": (totals[1] - totals[0]) / (large - small), "rate": rate}


def report(results: dict, steps: dict, rounds: int) -> list[str]:
    out = ["| client | events/s | CPU s / 100k events | p50 / p99 / p999 latency |", "|---|---:|---:|---|"]
    for rate in RATES:
        for c in CLIENTS:
            rows = [r for r in results.get((c.key, rate), []) if r["ok"]]
            if not rows:
                continue
            cpu = statistics.median(r["cpu_per_100k"] for r in rows)
            lat = " / ".join(f"{statistics.median(r[k] for r in rows) * 1e3:.3f}" for k in ("p50", "p99", "p999"))
            rng = f" ({min(r['cpu_per_100k'] for r in rows):.2f}–{max(r['cpu_per_100k'] for r in rows):.2f})" if len(rows) > 1 else ""
            out.append(f"| {c.label} | {rate:,} | {cpu:.2f}{rng} | {lat} ms |")
    out.append("")
    out.append(f"Ratios trio-books / cryptofeed, round by round ({rounds} round(s); ≤ 1 is better for trio-books):")
    for key in ("tb-wsproto-tls", "tb-triows-tls"):
        for rate in RATES:
            a, b = results.get((key, rate), []), results.get(("cf-tls", rate), [])
            pairs = [(x, y) for x, y in zip(a, b) if x["ok"] and y["ok"]]
            if not pairs:
                continue
            cpu = [x["cpu_per_100k"] / y["cpu_per_100k"] for x, y in pairs]
            p50 = [x["p50"] / y["p50"] for x, y in pairs]
            label = next(c.label for c in CLIENTS if c.key == key)
            out.append(f"- {label} @ {rate:,}/s: CPU per event {', '.join(f'{v:.2f}' for v in cpu)} "
                       f"(median {statistics.median(cpu):.2f}); p50 {', '.join(f'{v:.2f}' for v in p50)}")
    for key, st in steps.items():
        ins = st.get("instructions")
        if ins and ins["ok"]:
            out.append(f"- {key}: {ins['per_event']:,.0f} machine instructions per event (valgrind, {ins['rate']} events/s)")
        if st.get("ok") and "steps" in st:
            s = st["steps"]
            tasks = ", ".join(f"{k} {v:.2f}" for k, v in list(s["by_task"].items())[:6])
            out.append(f"- {key} @ 5,000/s: {s['steps']:.2f} task steps and {s['io_waits']:.2f} scheduler passes per event ({tasks})")
    return out


def main(argv: list[str] | None = None) -> int:
    global RATES
    p = argparse.ArgumentParser(prog="python -m benchmarks.trickle", description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="one round, 3 s per run")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3; --quick 1)")
    p.add_argument("--seconds", type=float, help="seconds per run (default 4; --quick 3)")
    p.add_argument("--rates", default=",".join(map(str, RATES)), help="events/s, comma-separated")
    p.add_argument("--only", help="comma-separated client keys: " + ", ".join(c.key for c in CLIENTS))
    p.add_argument("--instructions", action="store_true", help="also count machine instructions per event with valgrind "
                   "(load-independent; ~1-2 minutes per client), for the clients and two floors: our transport alone, "
                   "and with the read task → channel → parsing task hop")
    p.add_argument("--json", help="write every measurement to this file")
    args = p.parse_args(argv)
    RATES = tuple(int(r) for r in args.rates.split(","))
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (3.0 if args.quick else 4.0)
    clients = [c for c in CLIENTS if not args.only or c.key in args.only.split(",")]
    notes: list[str] = []
    if importlib.util.find_spec("cryptofeed") is None:
        notes.append("cryptofeed is not installed (pip install -e '.[bench]'): its rows are missing.")
        clients = [c for c in clients if c.kind != "cryptofeed"]
    workdir = tempfile.mkdtemp(prefix="trio-books-trickle-")
    fake = None
    started = time.monotonic()
    try:
        certs, clients, client_env = tls.setup(workdir, clients, notes)
        frames = int(max(RATES) * seconds) + 10
        fake_args = ["replay", "--workdir", workdir, "--frames", str(frames)]
        if certs:
            fake_args += ["--certfile", certs["cert"], "--keyfile", certs["key"]]
        log(f"generating the stream ({frames:,} frames) and starting the fake venue …")
        fake, ready = start_fake(fake_args, workdir)
        with open(os.path.join(workdir, "stream.json")) as fh:
            meta = json.load(fh)
        env = Env(workdir, ready["port"], ready.get("tls_port"), meta, client_env, fake_pids=[fake.pid])
        results: dict = {}
        for r in range(rounds):
            for rate in RATES:
                for c in clients:
                    res = trickle_once(env, c, rate, seconds)
                    results.setdefault((c.key, rate), []).append(res)
                    text = (f"{res['cpu_per_100k']:.2f} CPU s/100k, p50 {res['p50'] * 1e3:.3f} ms, p99 {res['p99'] * 1e3:.3f} ms"
                            if res["ok"] else f"FAILED: {res['error']}")
                    log(f"round {r + 1} {rate:>6,}/s {c.label}: {text}")
        steps = {}
        for c in clients:
            if c.kind == "triobooks" and 5000 in RATES:
                steps[c.label] = trickle_once(env, c, 5000, min(seconds, 2.0), count_steps=True)
        if args.instructions:
            for c in clients + (FLOORS if certs else []):
                log(f"instructions per event: {c.label} under valgrind (slow) …")
                ins = instructions_per_event(env, c)
                steps.setdefault(c.label, {})["instructions"] = ins
                log(f"instructions per event: {c.label}: " + (f"{ins['per_event']:,.0f}" if ins["ok"] else f"FAILED: {ins['error']}"))
        lines = report(results, steps, rounds)
        print(f"Trickle: Binance Spot diff-depth stream, one event per frame and per send, {seconds:g} s per run, "
              f"medians of {rounds} round(s) (min–max), over TLS (wss://).")
        print("\n".join(lines))
        for note in notes:
            print(f"Note: {note}")
        print(f"Other load: {statistics.mean(run.OTHER_LOAD):.0%} of a core on average during the runs"
              if run.OTHER_LOAD else "", f"Total time: {time.monotonic() - started:.0f} s.")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({f"{k[0]}@{k[1]}": v for k, v in results.items()} | {"steps": steps}, fh, indent=1)
        return 0
    finally:
        if fake is not None:
            stop_fake(fake)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
