"""The fake OKX V5 venue of the OKX benchmark, run in its own process.

``python -m benchmarks.okx_fake --workdir DIR [--frames N] [--certfile F --keyfile K] [--check]``

On 127.0.0.1, one plain port (``ws://``, ``http://``) and, given a certificate,
one TLS port (``wss://``, ``https://``); WebSocket and HTTP share a port (the
connection handling, framing and TLS come from ``fake_venue.py``):

* WebSocket ``[/<variant>]/ws/v5/public`` (also ``/ws/v5/private``, which
  cryptofeed's OKX feed knows but does not open for books): OKX's
  ``{"op":"subscribe","args":[{"channel":"books","instId":…},…]}`` is answered
  with one ack per arg (``{"id":…,"event":"subscribe","arg":{…},"connId":…}``;
  unknown instruments get OKX's ``60018`` error). Once every instrument of the
  stream is subscribed, the connection gets the stream from its start: the five
  400-level snapshots, then the updates, as fast as the socket takes them. The
  text ``ping`` is answered with ``pong``. ``<variant>`` ``crc`` (the default)
  sends the real CRC32 checksums, ``zero`` the same frames with
  ``"checksum":0`` (OKX since June 2026); ``<variant>-x<N>`` sends the updates
  N times over (the seqId chain breaks after the first pass: only for the raw
  ceiling, which checks nothing and would otherwise be clocked over ~0.3 s).
* REST ``GET /api/v5/public/instruments?instType=…`` (cryptofeed reads the
  instrument list at start-up; only SPOT lists anything).

As in ``fake_venue.py`` every frame is encoded once at start-up (JSON and the
RFC 6455 header) and a connection is fed with ``send_all`` of ~64 KB pre-joined
chunks, so the fake costs little CPU and the client is what limits a run.

The stream (:class:`benchmarks.okx_stream.OkxStream`) is generated at start;
its metadata goes to ``<workdir>/okx-stream.json``. With ``--check`` it is first
run through trio-books' own OKX parser and checksum verification. The process
prints one JSON line (its ports, and the check's counts) when it listens, and
stops when its standard input closes or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from urllib.parse import parse_qs, urlsplit

import orjson
import trio

from trio_books.testing.okx import parse_request

from .fake_venue import Closed, Peer, ReplayServer, Server, _listen, _tls, _until_stdin_closes
from .okx_stream import OkxStream, instruments_response, self_check
from .stream import ws_frame

PATHS = ("/ws/v5/public", "/ws/v5/private")


_chunks = ReplayServer._chunks  # frames pre-joined into ~CHUNK-byte writes, as the Binance fake does


class OkxServer(Server):
    def __init__(self, stream: OkxStream) -> None:
        self.s = stream
        self.wanted = set(stream.symbols)
        self.variants: dict[str, tuple[list[bytes], list[bytes]]] = {}  # (snapshot chunks, update chunks)
        for name, payloads in (("crc", stream.payloads), ("zero", stream.zero_checksums())):
            frames = [ws_frame(p) for p in payloads]
            self.variants[name] = (_chunks(frames[: stream.n_snap]), _chunks(frames[stream.n_snap :]))
        self.instruments = {t: orjson.dumps(instruments_response(stream.symbols, t))
                            for t in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")}
        self.connections = 0

    def rest(self, method: str, target: str) -> tuple[int, bytes]:
        parts = urlsplit(target)
        if parts.path == "/api/v5/public/instruments":
            body = self.instruments.get(parse_qs(parts.query).get("instType", [""])[0])
            if body is None:
                return 200, b'{"code":"51000","msg":"Parameter instType error","data":[]}'
            return 200, body
        return 404, b'{"code":"50014","msg":"not served by the benchmark fake","data":[]}'

    async def websocket(self, peer: Peer, target: str) -> None:
        path = urlsplit(target).path
        endpoint = next((p for p in PATHS if path.endswith(p)), None)
        variant = path[: -len(endpoint)].strip("/") if endpoint else ""
        variant, _, times = (variant or "crc").partition("-x")
        repeat = int(times) if times.isdigit() else 1
        if endpoint is None or variant not in self.variants or not 1 <= repeat <= 100:
            await peer.send(ws_frame(b"\x03\xf0unknown path", 0x8))
            return
        self.connections += 1
        conn_id = uuid.uuid4().hex[:8]
        subscribed: set[str] = set()
        ready = trio.Event()

        async def on_text(payload: bytes) -> None:
            if payload == b"ping":
                await peer.send(ws_frame(b"pong"))
                return
            request = parse_request(payload)
            if request is None:
                await peer.send(ws_frame(orjson.dumps({"event": "error", "code": "60012",
                                                       "msg": f"Invalid request: {payload[:100].decode(errors='replace')}", "connId": conn_id})))
                return
            op, args, msg = request
            rid = {"id": msg["id"]} if "id" in msg else {}
            for arg in args:
                inst = arg.get("instId") if type(arg) is dict else None
                if op not in ("subscribe", "unsubscribe") or type(arg) is not dict or arg.get("channel") != "books" or inst not in self.wanted:
                    await peer.send(ws_frame(orjson.dumps({**rid, "event": "error", "code": "60018", "msg": (
                        f"Subscribe failed, wrong URL or channel:{arg.get('channel') if type(arg) is dict else None},instId:{inst} "
                        "doesn't exist. Please use the correct URL, channel and parameters referring to API document."),
                        "connId": conn_id})))
                    continue
                await peer.send(ws_frame(orjson.dumps({**rid, "event": op, "arg": {"channel": "books", "instId": inst}, "connId": conn_id})))
                if op == "subscribe":
                    subscribed.add(inst)
            if subscribed >= self.wanted:
                ready.set()  # the stream is one piece: it starts once every instrument is subscribed

        async with trio.open_nursery() as nursery:
            snaps, body = self.variants[variant]
            nursery.start_soon(self._feed, peer, ready, snaps + body * repeat, nursery.cancel_scope)
            try:
                await self.control(peer, on_text)
            except Closed:
                pass
            nursery.cancel_scope.cancel()

    async def _feed(self, peer: Peer, ready: trio.Event, chunks: list[bytes], scope: trio.CancelScope) -> None:
        await ready.wait()
        try:
            for chunk in chunks:
                await peer.send(chunk)
        except Closed:
            scope.cancel()
        # then idle: the client closes when it has seen everything


def prepare(args: argparse.Namespace) -> tuple[OkxServer, dict]:
    stream = OkxStream(args.instruments, args.frames, seed=args.seed)
    with open(os.path.join(args.workdir, "okx-stream.json"), "wb") as fh:
        fh.write(orjson.dumps(stream.meta()))
    ready: dict = {}
    if args.check:
        ready["check"] = self_check(stream)
    server = OkxServer(stream)
    stream.payloads = []  # the encoded chunks are all the server needs now
    return server, ready


async def amain(args: argparse.Namespace, server: OkxServer, ready: dict) -> None:
    tls_ctx = _tls(args.certfile, args.keyfile)
    async with trio.open_nursery() as nursery:
        ready["port"] = await _listen(nursery, server)
        if tls_ctx is not None:
            ready["tls_port"] = await _listen(nursery, server, tls_ctx)
        print(json.dumps(ready), flush=True)
        await _until_stdin_closes(args.max_seconds)
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.okx_fake", description=__doc__.split("\n", 1)[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--instruments", type=int, default=5)
    p.add_argument("--frames", type=int, default=60_000, help="updates after the snapshots")
    p.add_argument("--seed", type=int, default=20261128)
    p.add_argument("--certfile")
    p.add_argument("--keyfile")
    p.add_argument("--check", action="store_true", help="verify the stream with trio-books' OKX code before listening")
    p.add_argument("--max-seconds", type=float, default=900)
    args = p.parse_args(argv)
    trio.run(amain, args, *prepare(args))


if __name__ == "__main__":
    main()
