"""A fake venue that serves a recording: the n-th client connection gets the
n-th recorded connection's frames in order, and REST requests get the recorded
bodies at the point where the recording had them. A production incident,
recorded with ``trio-books record``, becomes a regression test."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio

from ..record import raw_of
from ._base import FakeClient, FakeVenue, Request, Response, Route


class FakeRecording(FakeVenue):
    """Serve ``records`` (as read by :func:`trio_books.record.read_records`) of one venue.

    ``truth`` is not maintained (the recording is the truth); compare with the
    offline :func:`trio_books.record.replay` of the same records instead.
    """

    has_rest = True

    def __init__(self, venue_id: str, symbols: Sequence[str], records: Iterable[dict[str, Any]], *, rest_wait: float = 5.0) -> None:
        super().__init__(symbols, rate=0, levels=1)
        self.venue_id = venue_id  # type: ignore[misc]
        self.rest_wait = rest_wait
        self.sessions: list[list[dict[str, Any]]] = []
        current: list[dict[str, Any]] | None = None
        for rec in records:
            if rec.get("dir") == "connect":
                current = []
                self.sessions.append(current)
            elif rec.get("dir") in ("rx", "rest"):
                if current is None:
                    current = []
                    self.sessions.append(current)
                current.append(rec)
        self._pending: dict[str, tuple[bytes, trio.Event]] = {}
        self.finished = trio.Event()
        self._arrived = trio.Event()

    async def handle(self, client: FakeClient) -> None:
        index = self.connections_accepted - 1
        if index >= len(self.sessions):
            await trio.sleep_forever()  # nothing more was recorded: stay open and quiet
        for rec in self.sessions[index]:
            if rec["dir"] == "rx":
                await client.send(raw_of(rec))
                await trio.sleep(0)
                continue
            symbol = rec.get("symbol") or parse_qs(urlsplit(rec.get("url", "")).query).get("symbol", [""])[0]
            served = trio.Event()
            body = raw_of(rec)
            self._pending[symbol.upper()] = (body if isinstance(body, bytes) else body.encode(), served)
            self._arrived.set()
            self._arrived = trio.Event()
            with trio.move_on_after(self.rest_wait):
                await served.wait()
        if index == len(self.sessions) - 1:
            self.finished.set()
        await trio.sleep_forever()

    def rest_routes(self) -> list[Route]:
        async def serve(request: Request) -> Response:
            symbol = (request.query_params.get("symbol") or request.query_params.get("instId") or "").upper()
            with trio.move_on_after(self.rest_wait):  # the client may ask before the stream reaches it
                while symbol not in self._pending:
                    await self._arrived.wait()
            pending = self._pending.pop(symbol, None)
            if pending is None:
                return Response('{"error":"not in the recording"}', status_code=404, media_type="application/json")
            body, served = pending
            served.set()
            return Response(body, media_type="application/json")

        return [Route("/{path:path}", serve)]

    def encode_delta(self, symbol, bids, asks):
        return []
