"""``trio-books top``: the live page's table and one book's ladder in a terminal
(rich), redrawn in place. Polls ``/health`` and ``/venues``; follows the book over ``/ws``."""

from __future__ import annotations

import argparse
import os
import signal
import time
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import trio
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

STATE_STYLE = {"live": "green", "ok": "green", "syncing": "yellow", "stale": "red", "degraded": "red", "rejected": "magenta"}
RETRY = 1.0


class Ladder:
    """One book as the ``/ws`` stream describes it (pure: fed the decoded messages)."""

    def __init__(self, venue: str, symbol: str) -> None:
        self.venue, self.symbol = venue, symbol
        self.state = "syncing"
        self.version: int | None = None
        self.messages = 0
        self.error = ""
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}

    def feed(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "error":
            self.error = str(msg.get("error"))
            return
        if (msg.get("venue"), msg.get("symbol")) != (self.venue, self.symbol):
            return
        self.messages += 1
        self.version = msg.get("version", self.version)
        kind = msg.get("type")
        if kind == "status":
            self.state = msg["state"]
            if self.state != "live":
                self.bids, self.asks = {}, {}
        elif kind == "snapshot":
            self.state = msg["state"]
            self.bids, self.asks = {}, {}
            _apply(self.bids, msg["bids"])
            _apply(self.asks, msg["asks"])
        elif kind == "update":
            _apply(self.bids, msg["bids"])
            _apply(self.asks, msg["asks"])

    def top(self, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Best ``n`` bids (highest first) and asks (lowest first), as exact strings."""
        bids = [self.bids[k] for k in sorted(self.bids, reverse=True)[:n]]
        asks = [self.asks[k] for k in sorted(self.asks)[:n]]
        return bids, asks


def _apply(side: dict[Decimal, tuple[str, str]], levels: list[list[str]]) -> None:
    for price, qty in levels:
        try:
            key, zero = Decimal(price), Decimal(qty) == 0
        except InvalidOperation:
            continue
        if zero:
            side.pop(key, None)
        else:
            side[key] = (price, qty)


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, "bold"))


def venues_table(health: dict[str, Any], venues: dict[str, Any], chosen: tuple[str, str] | None) -> Table:
    """Venues and their books: state, age, reconnects, resyncs, last error."""
    table = Table(expand=False, box=None, pad_edge=False, header_style="bold")
    for name, justify in (("venue / book", "left"), ("state", "left"), ("age", "right"), ("reconnects", "right"),
                          ("resyncs", "right"), ("last error", "left")):
        table.add_column(name, justify=justify, overflow="fold" if name == "last error" else "ellipsis", no_wrap=name != "last error")
    for venue, v in venues.get("venues", {}).items():
        h = health.get("venues", {}).get(venue, {})
        age = h.get("last_message_age_s")
        table.add_row(Text(venue, style="bold"), _state(v["state"]), "-" if age is None else f"{age:.1f} s",
                      str(h.get("reconnects", "-")), str(h.get("resyncs", "-")), Text(h.get("last_error") or "", style="red"))
        for symbol, b in v.get("books", {}).items():
            resyncs = b.get("resyncs", {})
            detail = ", ".join(f"{r} {n}" for r, n in resyncs.items())
            marker = "> " if (venue, symbol) == chosen else "  "
            table.add_row(marker + symbol, _state(b["state"]), "", "", f"{sum(resyncs.values())}" + (f" ({detail})" if detail else ""),
                          Text(b.get("error") or "", style="red"))
    return table


def ladder_table(ladder: Ladder, rows: int) -> Table:
    title = Text.assemble(f"{ladder.venue}/{ladder.symbol} ", _state(ladder.state),
                          f"  version {ladder.version if ladder.version is not None else '-'} · messages {ladder.messages}")
    if ladder.error:
        title.append(f"  {ladder.error}", style="red")
    table = Table(title=title, title_justify="left", box=None, header_style="bold")
    for name in ("bid qty", "price", "ask qty"):
        table.add_column(name, justify="right")
    bids, asks = ladder.top(rows)
    for price, qty in reversed(asks):
        table.add_row("", Text(price, style="red"), Text(qty, style="red"))
    table.add_section()
    for price, qty in bids:
        table.add_row(Text(qty, style="green"), Text(price, style="green"), "")
    return table


def screen(address: str, status: str, health: dict[str, Any], venues: dict[str, Any], ladder: Ladder | None, rows: int) -> Group:
    head = Text.assemble(Text("trio-books top ", style="bold"), address, "  ", _state(status), time.strftime("  %H:%M:%S"),
                         Text("  (Ctrl-C quits)", style="dim"))
    parts: list[Any] = [head, venues_table(health, venues, (ladder.venue, ladder.symbol) if ladder else None)]
    if ladder is not None:
        parts += [Text(""), ladder_table(ladder, rows)]
    return Group(*parts)


class Top:
    """The I/O: polls the table, follows the ladder, redraws."""

    def __init__(self, base: str, token: str, book: tuple[str, str] | None, rows: int, interval: float) -> None:
        self.base, self.token, self.rows, self.interval = base, token, rows, interval
        self.health: dict[str, Any] = {}
        self.venues: dict[str, Any] = {}
        self.status = "connecting"
        self.ladder = Ladder(*book) if book else None
        self.redraw = trio.Event()

    def changed(self) -> None:
        self.redraw.set()

    async def poll(self) -> None:
        params = {"token": self.token} if self.token else {}
        async with httpx.AsyncClient(base_url=self.base, params=params, timeout=5.0) as http:
            while True:
                try:
                    health = await http.get("/health")
                    venues = await http.get("/venues")
                    self.health, self.venues = health.json(), venues.json()
                    self.status = self.venues.get("error") or self.health.get("status", "?")
                except (httpx.HTTPError, ValueError) as exc:
                    self.status = f"unreachable: {exc or type(exc).__name__}"
                if self.ladder is None and self.venues.get("venues"):
                    venue, v = next(iter(self.venues["venues"].items()))
                    if v.get("books"):
                        self.ladder = Ladder(venue, next(iter(v["books"])))
                self.changed()
                await trio.sleep(self.interval)

    async def follow(self) -> None:
        url = self.base.replace("http", "ws", 1) + "/ws" + (f"?token={quote(self.token, safe='')}" if self.token else "")
        while True:
            ladder = self.ladder
            if ladder is None:
                await trio.sleep(self.interval)
                continue
            try:
                async with open_websocket_url(url, connect_timeout=5.0) as ws:
                    sub = {"op": "subscribe", "venue": ladder.venue, "symbol": ladder.symbol, "depth": self.rows, "kind": "book"}
                    await ws.send_message(orjson.dumps(sub).decode())
                    while True:
                        ladder.feed(orjson.loads(await ws.get_message()))
                        self.changed()
            except (OSError, HandshakeError, ConnectionClosed, orjson.JSONDecodeError) as exc:
                ladder.error = f"stream: {exc or type(exc).__name__}"
                ladder.state = "syncing"
                self.changed()
            await trio.sleep(RETRY)

    async def run(self, console: Console) -> None:
        """Until SIGINT (Ctrl-C) or SIGTERM: the last frame stays on the screen."""
        with Live(console=console, auto_refresh=False, transient=False) as live, \
                trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.poll)
                nursery.start_soon(self.follow)
                nursery.start_soon(_cancel_on_signal, signals, nursery.cancel_scope)
                while True:
                    await self.redraw.wait()
                    self.redraw = trio.Event()
                    live.update(screen(self.base, self.status, self.health, self.venues, self.ladder, self.rows), refresh=True)
                    await trio.sleep(0.1)  # at most ten frames a second


async def _cancel_on_signal(signals: Any, scope: trio.CancelScope) -> None:
    async for _ in signals:
        scope.cancel()
        return


def run_top(args: argparse.Namespace, base: str) -> int:
    book = None
    if args.book:
        venue, sep, symbol = args.book.partition("/")
        if not sep or not venue or not symbol:
            raise ValueError(f"--book: expected venue/symbol, got {args.book!r}")
        book = (venue, symbol)
    top = Top(base, args.token or os.environ.get("TRIO_BOOKS_AUTH_TOKEN", ""), book, args.rows, args.interval)
    trio.run(top.run, Console())
    return 0
