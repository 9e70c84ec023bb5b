"""MemoryStore: keeps points in a dict, for tests and for `parkwatch rules test`. Same semantics as
InfluxDB: a point with the same measurement, tags and timestamp as an earlier one merges into it.

`fail_with` makes every write raise that error (a scripted outage); `refuse` refuses points that match it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from ingest.errors import StoreError
from ingest.points import FieldValue, Point

Key = tuple[str, tuple[tuple[str, str], ...], int]


class MemoryStore:
    def __init__(self) -> None:
        self.points: dict[Key, dict[str, FieldValue]] = {}
        self.writes = 0
        self.fail_with: StoreError | None = None
        self.refuse: Callable[[Point], bool] = lambda p: False
        self._lock = threading.Lock()

    def write(self, points: Sequence[Point]) -> None:
        with self._lock:
            self.writes += 1
            if self.fail_with is not None:
                raise self.fail_with
            bad = [p for p in points if self.refuse(p)]
            for p in points:
                if not self.refuse(p):
                    key = (p.measurement, tuple(sorted(p.tags.items())), p.ts_ns)
                    self.points.setdefault(key, {}).update(p.fields)
            if bad:
                raise StoreError(f"refused {len(bad)} point(s)", retryable=False, status=400)

    def count(self, measurement: str | None = None) -> int:
        with self._lock:
            return sum(1 for k in self.points if measurement is None or k[0] == measurement)

    def close(self) -> None:
        pass
