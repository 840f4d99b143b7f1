"""Reads against the feeds: ``wrk`` on ``GET /books/binance_spot/BTCUSDT?depth=20``
while ``trio-books demo`` (every fake venue, in the service's process) keeps its books.

Printed (nothing asserts): requests/s and p99 from ``wrk``, 503s shed, the service's
CPU per read (its CPU time under load less the feeds' own, over the reads served:
what a shared machine's other load cannot move much), and the feeds'
exchange-to-applied latency (p50/p99 over every venue, from the service's
``trio_books_apply_latency_seconds`` histogram, interpolated within buckets)
first unloaded, then under the read load. The service is pinned to one core
(``taskset``, when there is one to spare) and wrk to the others.

    python -m benchmarks.reads                     # 16 connections, 10 s unloaded, 10 s loaded
    python -m benchmarks.reads --connections 64 --seconds 20
    python -m benchmarks.reads --src /tmp/old      # another source tree (before/after)

Needs ``wrk`` (``apt-get install -y wrk``). Everything is on 127.0.0.1; the demo
is started with ``--seconds`` as a backstop and stopped with SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

PATH = "/books/binance_spot/BTCUSDT?depth=20"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def latency_buckets(base: str) -> dict[float, float]:
    """Cumulative counts of the apply-latency histogram, summed over venues."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "trio_books_apply_latency_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                out[bound] = out.get(bound, 0.0) + sample.value
    return out


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The ``q`` quantile (seconds) of what was observed between two scrapes."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    if not total:
        return None
    want, low, below = q * total, 0.0, 0.0
    for bound, cum in zip(bounds, counts):
        if cum >= want:
            if bound == float("inf"):
                return low
            share = (want - below) / (cum - below) if cum > below else 1.0
            return low + (bound - low) * share
        low, below = bound, cum
    return None


def wrk(url: str, connections: int, seconds: float, cpus: str | None) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", url]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "requests": total}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1e3:.2f} ms"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0, help="length of the unloaded and of the loaded phase")
    p.add_argument("--src", default=None, help="run the service from this source tree (PYTHONPATH)")
    p.add_argument("--max-requests", default=None, help="service.max_requests for the run (TRIO_BOOKS_MAX_REQUESTS)")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    cores = sorted(os.sched_getaffinity(0))
    service_cpu, wrk_cpus = (str(cores[0]), ",".join(map(str, cores[1:]))) if len(cores) > 1 else (None, None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, **({"PYTHONPATH": args.src} if args.src else {}))
    if args.max_requests:
        env["TRIO_BOOKS_MAX_REQUESTS"] = args.max_requests
    cmd = [sys.executable, "-m", "trio_books", "demo", "--http", f"127.0.0.1:{port}", "--log-level", "WARNING",
           "--seconds", str(3 * args.seconds + 60)]
    if service_cpu is not None:
        cmd = ["taskset", "-c", service_cpu, *cmd]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=args.src or None)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + PATH, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (OSError, urllib.error.HTTPError):
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                print("the demo did not serve the book within 30 s", file=sys.stderr)
                return 1
            time.sleep(0.2)
        time.sleep(2)  # let every venue reach live
        first = latency_buckets(base)
        idle_cpu = cpu_seconds(proc.pid)
        time.sleep(args.seconds)
        second = latency_buckets(base)
        idle_cpu = cpu_seconds(proc.pid) - idle_cpu
        cpu = cpu_seconds(proc.pid)
        loaded = wrk(base + PATH, args.connections, args.seconds, wrk_cpus)
        cpu = cpu_seconds(proc.pid) - cpu
        third = latency_buckets(base)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print(f"GET {PATH} at {args.connections} connections, {args.seconds:g} s"
          f"{' (service on cpu ' + service_cpu + ')' if service_cpu else ''}")
    print(f"  reads: {loaded['rps']:,.0f} requests/s, p99 {loaded['p99_ms']:.2f} ms, non-2xx {loaded['non2xx']}")
    per_request = (cpu - idle_cpu) / max(1, loaded["requests"])
    print(f"  service CPU: {cpu / args.seconds:.0%} of a core loaded, {idle_cpu / args.seconds:.0%} unloaded; "
          f"{per_request * 1e6:.0f} us per read (one core's worth: {1 / per_request:,.0f} reads/s)")
    print(f"  feeds unloaded: p50 {ms(quantile(first, second, 0.5))}, p99 {ms(quantile(first, second, 0.99))}")
    print(f"  feeds loaded:   p50 {ms(quantile(second, third, 0.5))}, p99 {ms(quantile(second, third, 0.99))}")
    print(f"  service exit status after SIGTERM: {proc.returncode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
