"""The measured clients of the benchmark, one process per run.

``python -m benchmarks.clients SPEC.json`` runs what the spec's ``kind`` says
and writes a JSON result to ``spec["out"]``:

``triobooks``
    trio-books as a library (``run_venues``) on one Binance Spot connection.
    Nothing in the parser or the book task is changed: the store is a
    :class:`TimedStore`, whose ``touched`` (called by the book task once per
    symbol per applied batch, after the batch's events are in the book) logs
    ``(symbol, update id, time)``. The orchestrator joins that log with the
    fake's per-frame send times afterwards.
``raw``
    The transport alone: ``trio_books.transport.open_connection`` +
    ``receive_batch`` + ``orjson.loads`` of every frame; no parser, no book.
    Transport ``wsproto-lib`` is our wsproto client with its plain-frame fast
    path switched off (every byte through wsproto, as before the fast path).
``fleet``
    Nine Binance-protocol venues (clones of ``binance_spot`` under other ids,
    each on its own fake and connection) × 10 symbols × 1000 levels, in real
    time: RSS and CPU share.

Throughput/latency runs stop by themselves when the last frame of the stream
is applied (or at the spec's timeout); the fleet run after its window.
"""

from __future__ import annotations

import os
import sys
import time
from array import array

import orjson
import trio

monotonic = time.monotonic
cpu = time.process_time


def rss_kb() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


class GcPauses:
    """Garbage-collector pauses, via ``gc.callbacks`` (costs nothing between collections)."""

    def __init__(self) -> None:
        import gc

        self.count = [0, 0, 0]
        self.pauses: list[tuple[float, float, int]] = []  # (monotonic start, seconds, generation) of pauses ≥ 0.1 ms
        self._t = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t = monotonic()
        else:
            d = monotonic() - self._t
            g = info["generation"]
            self.count[g] += 1
            if d >= 1e-4 and len(self.pauses) < 100_000:
                self.pauses.append((self._t, d, g))

    def summary(self) -> dict:
        return {"count": self.count, "pauses": self.pauses}


GC = GcPauses()


def _write(spec: dict, result: dict, logs: dict[str, array] | None = None) -> None:
    result["gc"] = GC.summary()
    if logs:
        for name, arr in logs.items():
            with open(f"{spec['out']}.{name}", "wb") as fh:
                arr.tofile(fh)
        result["logs"] = {name: arr.typecode for name, arr in logs.items()}
    with open(spec["out"], "wb") as fh:
        fh.write(orjson.dumps(result))


def _config_text(spec: dict, ws_base: str, rest_base: str) -> str:
    symbols = ", ".join(f'"{s}"' for s in spec["symbols"])
    return f"""
[service]
log_level = "WARNING"
transport = "{spec['transport']}"
channel_capacity = {spec.get('channel_capacity', 5000)}
{"gc_threshold = %d" % spec["gc_threshold"] if "gc_threshold" in spec else ""}

[venues.binance_spot]
symbols = [{symbols}]
depth = {spec.get('depth', 1000)}
ws_url = "{ws_base}"
rest_url = "{rest_base}"
"""


def _gc_like_the_service(config) -> None:
    """What ``trio-books run`` does at start (``service.gc_threshold``; 0: nothing)."""
    from trio_books import tune_gc

    if config.service.gc_threshold:
        tune_gc(config.service.gc_threshold)


# --- trio-books, end to end --------------------------------------------------------------


def _timed_store_class():
    from trio_books.store import BookStore

    class TimedStore(BookStore):
        """A BookStore that logs when each symbol's book was last applied, and
        notices the start mark and the end of the stream."""

        def setup(self, spec: dict) -> None:
            self.idx = {s: i for i, s in enumerate(spec["symbols"])}
            self.final = list(spec["final_u"])
            self.start_sym, self.start_u = spec["start_mark"]
            self.remaining = set(range(len(self.final)))
            self.log_s = array("B")
            self.log_u = array("q")
            self.log_t = array("d")
            self.t0 = self.c0 = self.t1 = self.c1 = None
            self.done = trio.Event()
            self.steps = None  # a benchmarks.steps.StepCounter when spec["count_steps"]
            if spec.get("count_steps"):
                from benchmarks.steps import StepCounter

                self.steps = StepCounter()
                trio.lowlevel.add_instrument(self.steps)

        def touched(self, e, update_id, exchange_ts) -> None:
            super().touched(e, update_id, exchange_ts)
            t = monotonic()
            i = self.idx[e.symbol]
            self.log_s.append(i)
            self.log_u.append(update_id)
            self.log_t.append(t)
            if self.t0 is None and i == self.start_sym and update_id >= self.start_u:
                self.t0, self.c0 = t, cpu()
                if self.steps is not None:
                    self.steps0 = self.steps.snapshot()
            if update_id >= self.final[i] and i in self.remaining:
                self.remaining.discard(i)
                if not self.remaining:
                    self.t1, self.c1 = t, cpu()
                    if self.steps is not None:
                        self.steps1 = self.steps.snapshot()
                    self.done.set()

    return TimedStore


async def run_triobooks(spec: dict) -> None:
    from trio_books.config import load_config_text
    from trio_books.log import setup_logging
    from trio_books.runner import run_venues

    setup_logging("WARNING")
    config = load_config_text(_config_text(spec, spec["ws_base"], spec["rest_base"]))
    _gc_like_the_service(config)
    store = _timed_store_class()()
    store.setup(spec)
    for vid, vcfg in config.enabled_venues():
        for symbol in vcfg.symbols:
            store.add(vid, symbol)
    result: dict = {"ok": False}
    with trio.move_on_after(spec["timeout"]):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_venues, config, store)
            await store.done.wait()
            nursery.cancel_scope.cancel()
    stats = store.venues["binance_spot"]
    result.update(
        ok=store.done.is_set() and store.t0 is not None and not stats.failures,
        t0=store.t0, t1=store.t1, cpu0=store.c0, cpu1=store.c1,
        failures=dict(stats.failures), last_error=stats.last_error, frames_received=stats.frames,
        channel_high_water=stats.channel_high_water, rss=rss_kb(),
    )
    if store.steps is not None and result["ok"]:
        from benchmarks.steps import difference

        result["steps"] = difference(store.steps0, store.steps1)
    if not result["ok"] and not result.get("last_error"):
        result["last_error"] = "timed out before the last frame was applied"
    _write(spec, result, {"s": store.log_s, "u": store.log_u, "t": store.log_t})


# --- the transport alone ----------------------------------------------------------------


async def run_raw(spec: dict) -> None:
    from benchmarks.minimal_ws import open_minimal
    from trio_books.transport import open_connection

    opener = open_minimal if spec["transport"] == "minimal" else open_connection  # minimal: the reference floor
    transport = "wsproto" if spec["transport"] in ("wsproto-lib", "wsproto-hop") else spec["transport"]
    total = spec["total_frames"]
    start_at = spec["start_count"]
    loads = orjson.loads
    count = 0
    t0 = c0 = t1 = c1 = None
    error = None
    with trio.move_on_after(spec["timeout"]):
        try:
            async with opener(spec["url"], max_message_size=2**20, connect_timeout=10, transport=transport) as conn:
                if spec["transport"] == "wsproto-lib":
                    _wsproto_only(conn)
                async with trio.open_nursery() as nursery:
                    receive = await nursery.start(_hop, conn) if spec["transport"] == "wsproto-hop" else conn.receive_batch
                    while count < total:
                        frames = await receive()
                        for raw in frames:
                            loads(raw)
                        count += len(frames)
                        if t0 is None and count >= start_at:
                            t0, c0 = monotonic(), cpu()
                    t1, c1 = monotonic(), cpu()
                    nursery.cancel_scope.cancel()
        except Exception as exc:  # report, don't hide
            error = f"{type(exc).__name__}: {exc}"
    ok = t1 is not None
    _write(spec, {"ok": ok, "t0": t0, "t1": t1, "cpu0": c0, "cpu1": c1, "frames": count,
                  "last_error": error or (None if ok else "timed out"), "rss": rss_kb()})


async def _hop(conn, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Benchmark-only: the design card's hop alone. This read task hands each read's
    frames through a memory channel to the task that parses them (the caller, through
    the ``receive`` it is given), as trio-books' read task hands them to its book task."""
    send, recv = trio.open_memory_channel(5000)
    task_status.started(recv.receive)
    while True:
        send.send_nowait(await conn.receive_batch())


def _wsproto_only(conn) -> None:
    """Benchmark-only: turn off the plain-frame fast path of our wsproto client,
    so every received byte goes through wsproto's decoder as it did before."""

    async def split(out: list) -> None:
        buf = conn._buf
        if buf:
            conn._ws.receive_data(bytes(buf))
            del buf[:]
            await conn._drain(out)

    conn._split = split


# --- nine venues × ten symbols × 1000 levels ----------------------------------------------


async def run_fleet(spec: dict) -> None:
    import attrs

    from trio_books.config import load_config_text
    from trio_books.log import setup_logging
    from trio_books.model import BookState
    from trio_books.store import BookStore
    from trio_books.supervise import supervise_venue
    from trio_books.venues import get_venue

    setup_logging("WARNING")
    rss_idle = rss_kb()
    ports = spec["ports"]
    config = load_config_text(_config_text(spec, f"ws://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[0]}"))
    _gc_like_the_service(config)
    base_cfg = config.venues["binance_spot"]
    base_venue = get_venue("binance_spot")
    store = BookStore()
    venues = []
    for k, port in enumerate(ports):
        vid = f"binance_spot_{k + 1}"
        venue = attrs.evolve(base_venue, id=vid)
        vcfg = attrs.evolve(base_cfg, ws_url=f"ws://127.0.0.1:{port}", rest_url=f"http://127.0.0.1:{port}")
        for s in vcfg.symbols:
            store.add(vid, s)
        venues.append((venue, vcfg))
    result: dict = {"ok": False, "rss_idle": rss_idle}
    with trio.move_on_after(spec["timeout"]):
        async with trio.open_nursery() as nursery:
            for venue, vcfg in venues:
                nursery.start_soon(supervise_venue, venue, vcfg, config.service, store)
            t_start = monotonic()
            while not all(e.state is BookState.LIVE for e in store.entries()):
                await store.wait_change()
            result["sync_seconds"] = monotonic() - t_start
            await trio.sleep(spec["settle"])
            frames0 = sum(v.frames for v in store.venues.values())
            prof = None
            if spec.get("profile_window"):
                import cProfile

                prof = cProfile.Profile()
                prof.enable()
            t0, c0 = monotonic(), cpu()
            await trio.sleep(spec["window"])
            t1, c1 = monotonic(), cpu()
            if prof is not None:
                prof.disable()
                prof.dump_stats(spec["out"] + ".window.prof")
            frames1 = sum(v.frames for v in store.venues.values())
            live = sum(e.state is BookState.LIVE for e in store.entries())
            levels = [(len(e.book.bids), len(e.book.asks)) for e in store.entries() if e.book is not None]
            result.update(
                ok=live == len(store.entries()) and not any(v.failures for v in store.venues.values()),
                books=len(store.entries()), books_live=live, venues=len(venues),
                levels_min=min(min(b, a) for b, a in levels), levels_total=sum(b + a for b, a in levels),
                window=t1 - t0, cpu=c1 - c0, frames=frames1 - frames0, rss=rss_kb(),
                failures={v.venue: dict(v.failures) for v in store.venues.values() if v.failures},
            )
            nursery.cancel_scope.cancel()
    if "window" not in result:
        result["last_error"] = "timed out before every book was live"
    _write(spec, result)


def main() -> None:
    with open(sys.argv[1], "rb") as fh:
        spec = orjson.loads(fh.read())
    kind = spec["kind"]
    runner = {"triobooks": run_triobooks, "raw": run_raw, "fleet": run_fleet}[kind]
    if spec.get("profile"):
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        trio.run(runner, spec)
        prof.disable()
        prof.dump_stats(spec["out"] + ".prof")
    else:
        trio.run(runner, spec)
    sys.stdout.flush()
    os._exit(0)  # nothing left to clean up; skip interpreter teardown


if __name__ == "__main__":
    main()
