"""The fake Binance Spot venue of the benchmark, run in its own process.

It serves the combined diff-depth stream (``/stream?streams=<sym>@depth@100ms/...``),
``GET /api/v3/depth`` and ``GET /api/v3/exchangeInfo`` on 127.0.0.1, on one
plain port (``ws://``, ``http://``) and, given a certificate, one TLS port
(``wss://``, ``https://``). WebSocket and HTTP share a port: a request with
``Upgrade: websocket`` becomes a WebSocket, anything else is a REST call.

The WebSocket side is written to cost the sender as little as possible, so
that the client under test is what limits a run: every frame of the stream is
encoded once at start-up (JSON and the RFC 6455 header), and a connection is
fed by ``send_all`` of large pre-joined chunks. Client frames (pings, close,
SUBSCRIBE) are parsed by a small reader that answers pings at once.

Modes
-----
``replay``: a fixed stream (see :class:`benchmarks.stream.ReplayStream`) that
every connection gets from its start. The URL prefix ``/r/<run>/<pace>`` names
the run and the pace: ``blast`` (as fast as the socket takes it) or
``rate<N>[n<M>]`` (N frames/s, the first M frames of the body; the send time of every frame is written to
``<workdir>/<run>.send`` for the latency join), ``trickle<N>[n<M>]`` (the same, one frame per send at its
own due time); ``-nogate`` skips the wait for
the REST snapshots (raw-ceiling clients fetch none). Otherwise the prefix is
sent, and the body waits until the run fetched a snapshot of every symbol.

``live``: N venues on N ports, each with its own books, that change in real
time at ``rate`` events per second per symbol (the 9-venue footprint run);
snapshots are the current books.

The process prints one JSON line (its ports) when it listens, and stops when
its standard input closes or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from array import array

import orjson
import trio

from .fake_peer import (CHUNK, Closed, Peer, Server, _listen, _split, _streams, _subscribe_reply, _tls,  # noqa: F401 (okx_fake imports some)
                        _until_stdin_closes)
from .stream import LiveVenue, ReplayStream, exchange_info, ws_frame


class Run:
    def __init__(self, n_symbols: int) -> None:
        self.requested: set[int] = set()
        self.n = n_symbols
        self.gate = trio.Event()

    def snapshot_requested(self, i: int) -> None:
        self.requested.add(i)
        if len(self.requested) >= self.n:
            self.gate.set()


class ReplayServer(Server):
    def __init__(self, stream: ReplayStream, workdir: str) -> None:
        self.s = stream
        self.workdir = workdir
        self.index = {name: i for i, name in enumerate(stream.symbols)}
        self.frames = [ws_frame(p) for p in stream.payloads]
        self.prefix_chunk = b"".join(self.frames[: stream.n_prefix])
        self.body = self.frames[stream.n_prefix :]
        self.body_chunks = self._chunks(self.body)
        self.runs: dict[str, Run] = {}
        self.info = orjson.dumps(exchange_info(stream.symbols))
        self.snap_cache: dict[tuple[int, int], bytes] = {}

    @staticmethod
    def _chunks(frames: list[bytes]) -> list[bytes]:
        out, cur, size = [], [], 0
        for f in frames:
            cur.append(f)
            size += len(f)
            if size >= CHUNK:
                out.append(b"".join(cur))
                cur, size = [], 0
        if cur:
            out.append(b"".join(cur))
        return out

    def run(self, name: str) -> Run:
        if name not in self.runs:
            self.runs[name] = Run(len(self.s.symbols))
        return self.runs[name]

    def rest(self, method: str, target: str) -> tuple[int, bytes]:
        prefix, endpoint, query = _split(target)
        if endpoint == "/api/v3/exchangeInfo":
            return 200, self.info
        if endpoint != "/api/v3/depth":
            return 404, b'{"code":-1,"msg":"unknown path"}'
        symbol = query.get("symbol", [""])[0]
        i = self.index.get(symbol)
        if i is None:
            return 400, b'{"code":-1121,"msg":"Invalid symbol."}'
        try:
            limit = min(5000, int(query.get("limit", ["100"])[0]))
        except ValueError:
            return 400, b'{"code":-1100,"msg":"Illegal characters found in parameter \'limit\'."}'
        if len(prefix) >= 2 and prefix[0] == "r":
            self.run(prefix[1]).snapshot_requested(i)
        body = self.snap_cache.get((i, limit))
        if body is None:
            body = self.snap_cache[(i, limit)] = self.s.snapshot_body(i, limit)
        return 200, body

    async def websocket(self, peer: Peer, target: str) -> None:
        prefix, endpoint, query = _split(target)
        if endpoint != "/stream" or len(prefix) != 3 or prefix[0] != "r":
            await peer.send(ws_frame(b"\x03\xf0unknown path", 0x8))
            return
        run_name, pace = prefix[1], prefix[2]
        wanted = {f"{s.lower()}@depth@100ms" for s in self.s.symbols}
        if set(_streams(query)) != wanted:
            await peer.send(ws_frame(orjson.dumps({"code": 2, "msg": "Invalid request: the benchmark stream has all its symbols"})))
            await peer.send(ws_frame(b"\x03\xf0invalid stream", 0x8))
            return
        gate = not pace.endswith("-nogate")
        pace = pace.removesuffix("-nogate")
        run = self.run(run_name)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._feed, peer, run, pace, gate, run_name, nursery.cancel_scope)
            try:
                await self.control(peer, lambda p: _subscribe_reply(peer, p))
            except Closed:
                pass
            nursery.cancel_scope.cancel()

    async def _feed(self, peer: Peer, run: Run, pace: str, gate: bool, run_name: str, scope: trio.CancelScope) -> None:
        try:
            await peer.send(self.prefix_chunk)
            if gate:
                with trio.move_on_after(30):
                    await run.gate.wait()
            if pace == "blast":
                for chunk in self.body_chunks:
                    await peer.send(chunk)
            elif pace.startswith(("rate", "trickle")):  # rate|trickle<frames/s>[n<frames>]
                single = pace.startswith("trickle")
                rate, _, count = pace.removeprefix("trickle").removeprefix("rate").partition("n")
                await self._paced(peer, float(rate), run_name, int(count) if count else len(self.body), single)
        except Closed:
            scope.cancel()
        # then idle: the client closes when it has seen everything

    async def _paced(self, peer: Peer, rate: float, run_name: str, count: int, single: bool = False) -> None:
        """``rate`` frames/s: what is due every ~1 ms (Trio's timer resolution) in one
        send; ``single`` (the trickle): one frame per send at its own due time, spaced
        by a blocking ``time.sleep`` (this run is the only one the fake serves now)."""
        body = self.body
        n = min(count, len(body))
        sent_at = array("d", bytes(8 * n))
        t0 = time.monotonic()
        i = 0
        blocked = 0
        while single and i < n:
            wait = t0 + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            ts = sent_at[i] = time.monotonic()
            await peer.send(body[i])
            if time.monotonic() - ts > 0.002:
                blocked += 1
            i += 1
        while i < n:
            now = time.monotonic()
            due = min(n, int((now - t0) * rate) + 1)
            if due <= i:
                await trio.sleep(t0 + i / rate - now)
                continue
            chunk = b"".join(body[i:due])
            ts = time.monotonic()
            for k in range(i, due):
                sent_at[k] = ts
            await peer.send(chunk)
            if time.monotonic() - ts > 0.002:
                blocked += 1  # the socket was full: the client is behind (latency after this is understated)
            i = due
        with open(os.path.join(self.workdir, f"{run_name}.blocked"), "w") as fh:
            fh.write(str(blocked))
        path = os.path.join(self.workdir, f"{run_name}.send")
        with open(path + ".tmp", "wb") as fh:
            sent_at.tofile(fh)
        os.replace(path + ".tmp", path)


class LiveServer(Server):
    """One live venue: its own books, real-time changes, current snapshots."""

    def __init__(self, venue: LiveVenue, rate: float, phase: float) -> None:
        self.v = venue
        self.rate = rate
        self.phase = phase
        self.clients: list[Peer] = []
        self.info = orjson.dumps(exchange_info(venue.symbols))
        self.events = 0

    def rest(self, method: str, target: str) -> tuple[int, bytes]:
        _prefix, endpoint, query = _split(target)
        if endpoint == "/api/v3/exchangeInfo":
            return 200, self.info
        if endpoint != "/api/v3/depth":
            return 404, b'{"code":-1,"msg":"unknown path"}'
        book = self.v.by_name.get(query.get("symbol", [""])[0])
        if book is None:
            return 400, b'{"code":-1121,"msg":"Invalid symbol."}'
        try:
            limit = min(5000, int(query.get("limit", ["100"])[0]))
        except ValueError:
            return 400, b'{"code":-1100,"msg":"bad limit"}'
        return 200, orjson.dumps(book.snapshot(limit))

    async def websocket(self, peer: Peer, target: str) -> None:
        _prefix, endpoint, query = _split(target)
        wanted = {b.stream_name for b in self.v.books}
        if endpoint != "/stream" or set(_streams(query)) != wanted:
            await peer.send(ws_frame(b"\x03\xf0the benchmark stream has all its symbols", 0x8))
            return
        self.clients.append(peer)
        try:
            await self.control(peer, lambda p: _subscribe_reply(peer, p))
        finally:
            self.clients.remove(peer)

    async def ticker(self) -> None:
        await trio.sleep(self.phase)
        period = 1.0 / self.rate
        next_t = trio.current_time()
        while True:
            next_t += period
            await trio.sleep_until(next_t)
            if not self.clients:
                continue
            chunk = b"".join(ws_frame(f) for f in self.v.tick(int(time.time() * 1000)))
            self.events += len(self.v.books)
            for peer in list(self.clients):
                try:
                    await peer.send(chunk)
                except Closed:
                    pass


async def main_replay(args: argparse.Namespace) -> None:
    stream = ReplayStream(args.symbols, args.frames, seed=args.seed)
    with open(os.path.join(args.workdir, "stream.json"), "wb") as fh:
        fh.write(orjson.dumps(stream.meta()))
    server = ReplayServer(stream, args.workdir)
    tls_ctx = _tls(args.certfile, args.keyfile)
    async with trio.open_nursery() as nursery:
        ports = {"port": await _listen(nursery, server)}
        if tls_ctx is not None:
            ports["tls_port"] = await _listen(nursery, server, tls_ctx)  # same stream and runs, TLS on top
        print(json.dumps(ports), flush=True)
        await _until_stdin_closes(args.max_seconds)
        nursery.cancel_scope.cancel()


async def main_live(args: argparse.Namespace) -> None:
    servers = [LiveServer(LiveVenue(args.symbols, seed=args.seed + i), args.rate, phase=i / (args.venues * args.rate))
               for i in range(args.venues)]
    async with trio.open_nursery() as nursery:
        ports = [await _listen(nursery, s) for s in servers]
        for s in servers:
            nursery.start_soon(s.ticker)
        print(json.dumps({"ports": ports}), flush=True)
        await _until_stdin_closes(args.max_seconds)
        nursery.cancel_scope.cancel()
    total = sum(s.events for s in servers)
    print(json.dumps({"events_sent": total}), flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("replay")
    r.add_argument("--workdir", required=True)
    r.add_argument("--symbols", type=int, default=10)
    r.add_argument("--frames", type=int, default=100_000)
    r.add_argument("--seed", type=int, default=20240601)
    r.add_argument("--certfile")
    r.add_argument("--keyfile")
    r.add_argument("--max-seconds", type=float, default=900)
    lv = sub.add_parser("live")
    lv.add_argument("--venues", type=int, default=9)
    lv.add_argument("--symbols", type=int, default=10)
    lv.add_argument("--rate", type=float, default=10.0, help="events per second per symbol")
    lv.add_argument("--seed", type=int, default=7)
    lv.add_argument("--max-seconds", type=float, default=300)
    args = p.parse_args(argv)
    trio.run(main_replay if args.mode == "replay" else main_live, args)


if __name__ == "__main__":
    main()
