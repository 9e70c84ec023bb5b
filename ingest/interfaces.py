"""Every extension interface of the ingest path, documented once here.

Implementations live one file per backend (`ingest/stores/influxdb1.py`, ...) and are registered by the
name used in the configuration (the URL scheme of ``[store] url``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ingest.points import Point


class Store(Protocol):
    """A time-series store. It writes the batch it is given; the pipeline owns batching and retry.

    ``write`` raises ``StoreError(retryable=True)`` for a transient failure (the whole batch is retried
    later) and ``StoreError(retryable=False)`` when the server refuses the batch for its content (the
    pipeline then splits the batch to find and dead-letter the bad points). Writing the same point twice
    leaves one point: a store is idempotent per (measurement, tags, timestamp).
    """

    def write(self, points: Sequence[Point]) -> None: ...

    def close(self) -> None: ...


class Clock(Protocol):
    """Wall-clock time, injected so tests control it."""

    def now_ns(self) -> int: ...
