"""Read the captured venue sessions in tests/data (format: shared/realdata/README.md)."""

from __future__ import annotations

import gzip
import json
import pathlib
from collections.abc import Iterator

DATA = pathlib.Path(__file__).parent / "data"


def records(relpath: str) -> Iterator[dict]:
    path = DATA / relpath
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
