"""Every extension interface of the ingest path, documented once here.

Implementations live one file per backend (`ingest/stores/influxdb1.py`, ...) and are registered by the
name used in the configuration (the URL scheme of ``[store] url``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ingest.points import Point

if TYPE_CHECKING:
    import pandas as pd


class Store(Protocol):
    """A time-series store. It writes the batch it is given; the pipeline owns batching and retry.

    ``write`` raises ``StoreError(retryable=True)`` for a transient failure (the whole batch is retried
    later) and ``StoreError(retryable=False)`` when the server refuses the batch for its content (the
    pipeline then splits the batch to find and dead-letter the bad points). Writing the same point twice
    leaves one point: a store is idempotent per (measurement, tags, timestamp).
    """

    def write(self, points: Sequence[Point]) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class PreparingStore(Store, Protocol):
    """A store that sends a batch in a wire form (line protocol) may offer its two steps apart:
    ``write(points)`` is ``write_prepared(prepare([p.to_bytes() for p in points]))``. The drainer then
    prepares the next batch while the current one is sent (encoding took about as long as InfluxDB took to
    write), and from the points as the spool holds them (`Point.to_bytes`), without building Points.

    ``prepare`` raises ``StoreError(retryable=False)`` for a point the wire form cannot carry; the drainer
    then writes that batch with ``write``, which finds the bad point as usual.
    """

    def prepare(self, spooled: Sequence[bytes]) -> bytes: ...

    def write_prepared(self, body: bytes) -> None: ...


class FrameReader(Protocol):
    """Reads back what a store holds, for reports (``ingest/stores/readers.py``: SQLite, InfluxDB 1.x).

    ``read_frame`` returns the rows of one measurement with ``start <= time < end`` (aware datetimes) as a
    pandas DataFrame: a column ``time`` (datetime64[ns, UTC], ascending), one column per tag (text, ''
    where a row has none) and one per field (missing values NaN/None). A measurement the store does not
    hold gives no rows. Booleans may come back as 0/1 (SQLite keeps no boolean type). Failures raise
    ``StoreError``: ``retryable`` when the store is unreachable or busy, not when the question is wrong.
    """

    def read_frame(self, measurement: str, start: datetime, end: datetime) -> pd.DataFrame: ...

    def close(self) -> None: ...


class Clock(Protocol):
    """Wall-clock time, injected so tests control it."""

    def now_ns(self) -> int: ...


@runtime_checkable
class BrokerLink(Protocol):
    """The state of the service's connection to the broker, for the operations endpoint: an MqttSource in
    the service's process, or the handle on the ingest worker that owns one (ingest/worker.py)."""

    @property
    def connected(self) -> bool: ...

    @property
    def reconnects(self) -> int: ...

    def wait_connected(self, timeout: float) -> bool: ...
