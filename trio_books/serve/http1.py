"""The plain keep-alive GET read without h11 (pure functions, no I/O).

A request whose head is exactly ``GET /target HTTP/1.1``, well-formed
``name: value`` lines (visible ASCII or obs-text values), exactly one ``Host``
and no body, upgrade or close (no ``Content-Length``, ``Transfer-Encoding``,
``Upgrade``, ``Expect``; ``Connection`` only as ``keep-alive``) is parsed here.
Anything else, valid or not, is left to h11 over the same bytes, so this only
ever accepts requests h11 accepts, with the same meaning.
"""

from __future__ import annotations

import re

MAX_HEAD = 16 * 1024
"""A head longer than this is h11's to refuse (431)."""

REQUEST_LINE = re.compile(rb"GET (/[!-~]*) HTTP/1\.1")
FIELD = re.compile(rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+):[ \t]*((?:[!-~\x80-\xff]+(?:[ \t]+[!-~\x80-\xff]+)*)?)[ \t]*")
NOT_PLAIN = frozenset({b"content-length", b"transfer-encoding", b"upgrade", b"expect", b"connection"})

Headers = list[tuple[bytes, bytes]]


def head_end(buf: bytes) -> int:
    """The length of the request head at the start of ``buf`` through its blank
    line; 0 while more bytes are needed; -1 when the head is not one this module
    reads (bare-LF line ends, too long): h11 must read it."""
    end = buf.find(b"\r\n\r\n")
    if end >= 0:
        return end + 4 if end + 4 <= MAX_HEAD else -1
    if len(buf) >= MAX_HEAD or b"\n\n" in buf or b"\n\r\n" in buf:
        return -1
    return 0


def plain_get(head: bytes) -> tuple[bytes, Headers] | None:
    """``(target, headers)`` (names lower-cased, values without surrounding
    whitespace) of a plain GET head (``head`` without its final blank line), or
    None for anything else."""
    lines = head.split(b"\r\n")
    line = REQUEST_LINE.fullmatch(lines[0])
    if line is None:
        return None
    headers: Headers = []
    hosts = 0
    for raw in lines[1:]:
        field = FIELD.fullmatch(raw)
        if field is None:
            return None
        name = field[1].lower()
        value = field[2]
        if name in NOT_PLAIN and not (name == b"connection" and value.lower() == b"keep-alive"):
            return None
        hosts += name == b"host"
        headers.append((name, value))
    return (line[1], headers) if hosts == 1 else None


def ok_response(body: bytes) -> bytes:
    """A complete ``200`` JSON response (what h11 writes for the same status and headers)."""
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\ncontent-type: application/json\r\n\r\n%b" % (len(body), body)
