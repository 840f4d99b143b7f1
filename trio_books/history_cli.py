"""``trio-books history …``: books at an instant, gap windows, what a capture holds.

Outside :mod:`trio_books.history` so that the command line works without pyarrow
(the package needs it; ``history`` then says so in one line)."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    hist = sub.add_parser("history", help="read a capture (trio-books capture / [sinks.parquet])")
    what = hist.add_subparsers(dest="what", required=True)
    book = what.add_parser("book", help="a book as it was served at an instant (JSON)")
    book.add_argument("venue")
    book.add_argument("symbol")
    book.add_argument("--at", required=True, help="ISO 8601 time (2026-12-06T13:45:00.250Z) or epoch seconds")
    book.add_argument("--depth", type=int, default=None, help="levels per side (default: every proven level)")
    book.add_argument("--dir", required=True, help="the capture directory")
    gaps = what.add_parser("gaps", help="coverage and gap windows of a venue (or one book)")
    gaps.add_argument("venue")
    gaps.add_argument("symbol", nargs="?")
    gaps.add_argument("--dir", required=True, help="the capture directory")


def run(args: argparse.Namespace) -> int:
    """Exit 0 with JSON on stdout; 1 (one line) when the capture cannot answer; 2 for bad arguments."""
    try:
        from .history import HistoryError, open as open_history
        from .history.reader import to_us
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "depth", None) is not None and args.depth < 1:
        print(f"error: --depth must be at least 1, got {args.depth}", file=sys.stderr)
        return 2
    try:
        h = open_history(args.dir)
        if args.what == "book":
            at = args.at
            try:
                at = float(at)
            except ValueError:
                pass
            try:
                to_us(at)
            except HistoryError as exc:
                print(f"error: --at: {exc}", file=sys.stderr)
                return 2
            out = h.book_at(args.venue, args.symbol, at, depth=args.depth).to_json()
        else:
            out = {"venue": args.venue, "coverage": [[a.isoformat(), b.isoformat()] for a, b in h.coverage(args.venue)],
                   "gaps": [g.to_json() for g in h.gaps(args.venue, args.symbol)]}
    except HistoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0
