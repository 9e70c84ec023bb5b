"""The drainer: moves points from the spool to the store, in order, in batches.

It owns batching and retry (the store only writes what it is given). A batch is written when
`batch_size` points wait, when `flush_interval_s` has passed, or when the intake has kept nothing new for
`flush_idle_s` (a burst has ended), whichever comes first. A transient store
error keeps the batch in the spool and retries with backoff; a permanent one splits the batch in halves
until the bad points are found: they are dead-lettered, the rest is stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ingest.errors import StoreError
from ingest.interfaces import PreparingStore, Store
from ingest.messages import DeadLetter
from ingest.retry import RetryPolicy
from ingest.spool import Row, SpoolDb

log = logging.getLogger(__name__)


_Batch = tuple[list[Row], bytes | None]  # rows read from the spool, and their body if prepared
_Failed = list[tuple[Row, DeadLetter]]  # rows the store refused, dead-lettered


@dataclass(frozen=True, slots=True)
class DrainSettings:
    batch_size: int = 5000
    flush_interval_s: float = 1.0
    # A partial batch also goes once `notify` has not been called for this long (0: only by the interval).
    # Points that a burst brought (the stations' minute uploads, the end of a backlog) reach the store when
    # it ends instead of up to flush_interval_s later; under a trickle with gaps longer than this, a write
    # per gap: at most 1 / flush_idle_s writes a second.
    flush_idle_s: float = 0.2
    retry: RetryPolicy = RetryPolicy()


class Drainer:
    """Runs in its own thread (`run`); `notify` is called by the ingest thread after each kept batch."""

    def __init__(
        self,
        spool: SpoolDb,
        store: Store,
        settings: DrainSettings,
        *,
        now_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        on_stored: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._spool = spool
        self._store = store
        self._preparing = store if isinstance(store, PreparingStore) else None  # encodes apart from sending
        self._s = settings
        self._now_ns = now_ns
        self._monotonic = monotonic
        self._on_stored = on_stored
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._unflushed = 0
        self._notified = 0  # calls of notify: whether any came while the drainer waited
        self._backlog = True  # until a read finds less than a full batch: the spool may hold points already
        self._lock = threading.Lock()
        self.store_ok = True
        self.last_error = ""
        self.write_seconds = 0.0

    def notify(self, count: int) -> None:
        with self._lock:
            self._unflushed += count
            self._notified += 1
            if self._unflushed >= self._s.batch_size:
                self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self, deadline: Callable[[], float | None] = lambda: None) -> None:
        """Drain until stopped; once stopped, drain what is left until the spool is empty or `deadline()`.

        Three stages overlap, each on a thread of its own, one batch deep:
        - the next batch is read from the spool (on a connection of its own) and, for a PreparingStore,
          encoded while the current one is written: reading, decoding and encoding a batch took longer
          than InfluxDB took to write one, and they ran one after the other (the benchmark's recovery
          part: 31,280 readings/s before, 63,504 after);
        - the batch just stored is released from the spool (deleted, counted, the WAL checkpointed) while
          the next one is written: releasing took 21 of the write thread's 90 ms per batch of 5,000, and
          InfluxDB waited meanwhile (recovery part: 51,359 readings/s before, 55,422 after, 2026-12-03).
        """
        reader = self._spool.another()
        try:
            with (ThreadPoolExecutor(1, thread_name_prefix="drain-read") as ahead,
                  ThreadPoolExecutor(1, thread_name_prefix="drain-release") as behind):
                self._drain(lambda after: ahead.submit(self._next_batch, reader, after),
                            lambda rows, failed: behind.submit(self._release, rows, failed), deadline)
        finally:
            reader.close()

    def _drain(self, read: Callable[[int], Future[_Batch]], release: Callable[[list[Row], _Failed], Future[None]],
               deadline: Callable[[], float | None]) -> None:
        attempt = last_id = 0  # last_id: the newest spool row read
        released: Future[None] | None = None  # the release of the last batch stored, still running maybe
        pending = read(last_id)
        try:
            while True:
                rows, body = pending.result()
                if not rows:
                    if self._stop.is_set():
                        return
                    pending = read(last_id)
                    continue
                last_id = rows[-1].id
                pending = read(last_id)  # the next batch, while this one is written
                while (failed := self._write(rows, body)) is None:
                    previous, released = released, None
                    _finish(previous)  # the spool's connection is the checkpoint's now
                    self._spool.checkpoint()  # during an outage the WAL keeps growing: fold it in while waiting
                    stop_at = deadline() if self._stop.is_set() else None
                    pause = self._s.retry.delay(attempt)
                    attempt += 1
                    if stop_at is not None and time.monotonic() + pause > stop_at:
                        log.warning("store still unreachable at shutdown; %d+ points stay in the spool", len(rows))
                        return
                    self._stop.wait(pause) if not self._stop.is_set() else time.sleep(pause)
                attempt = 0
                previous, released = released, None
                _finish(previous)  # one release at a time, in order: a failed one raises here
                released = release(rows, failed)
        finally:
            _finish(released)  # the last batch's release, unless one that failed is what raised

    def _next_batch(self, reader: SpoolDb, after: int) -> _Batch:
        # Wait for a full batch or the flush interval, unless the last read found a full batch (a backlog:
        # at start-up, or after an outage). The spool is read once per batch: reading it before waiting as
        # well cost a second decoding of every point under live traffic (the benchmark's profile).
        with self._lock:
            full = self._unflushed >= self._s.batch_size
        if not (self._backlog or full or self._stop.is_set()):
            self._wait_for_batch()
        rows = reader.peek(self._s.batch_size, after=after)
        self._backlog = len(rows) >= self._s.batch_size
        self._wake.clear()
        with self._lock:
            self._unflushed = max(0, self._unflushed - len(rows))
        return rows, self._prepare(rows)

    def _wait_for_batch(self) -> None:
        """Until a full batch waits or the drainer is stopped (`_wake`), the flush interval has passed, or a
        whole `flush_idle_s` went by without a `notify` while points wait: the intake has gone quiet, and
        waiting longer would only delay them. The benchmark's backlog was timed up to its last point
        stored: 1 s of an 8 s run went on waiting out the interval after the intake had finished."""
        interval, idle = self._s.flush_interval_s, self._s.flush_idle_s
        if not 0 < idle < interval:
            self._wake.wait(interval)
            return
        end = self._monotonic() + interval
        with self._lock:
            seen = self._notified
        while (left := end - self._monotonic()) > 0:
            if self._wake.wait(min(idle, left)):
                return
            with self._lock:
                quiet, seen = self._notified == seen and self._unflushed > 0, self._notified
            if quiet:
                return

    def _prepare(self, rows: Sequence[Row]) -> bytes | None:
        """The batch in the store's wire form, or None: not a PreparingStore, or a point it cannot carry
        (then `write` finds it)."""
        if not rows or self._preparing is None:
            return None
        try:
            return self._preparing.prepare([r.data for r in rows])  # as the spool holds them: no Points
        except StoreError:
            return None

    def _write(self, rows: Sequence[Row], body: bytes | None = None) -> _Failed | None:
        """Write one batch (`body`: as prepared): the rows the store refused (dead letters), or None to
        retry later."""
        try:
            failed = self._write_finding_bad(rows, body)
        except StoreError as exc:
            self._mark(ok=False, error=str(exc))
            return None
        self._mark(ok=True)
        return failed

    def _release(self, rows: Sequence[Row], failed: _Failed) -> None:
        """The batch has left for the store (stored or dead-lettered): forget it in the spool."""
        self._spool.release(rows, failed)
        self._spool.checkpoint()
        self._on_stored(len(rows) - len(failed))

    def _write_finding_bad(self, rows: Sequence[Row], body: bytes | None = None) -> _Failed:
        """Write rows; on a permanent error split in halves. Transient errors propagate (retry all later)."""
        started = time.perf_counter()
        try:
            if self._preparing is not None:  # from the spool's bytes, not Points turned back into them
                if body is None:
                    body = self._preparing.prepare([r.data for r in rows])
                self._preparing.write_prepared(body)
            else:
                self._store.write([r.point for r in rows])
            return []
        except StoreError as exc:
            if exc.retryable:
                raise
            if len(rows) == 1:
                row = rows[0]
                log.warning("store refused a point from %s: %s", row.topic, str(exc)[:200])
                return [(row, DeadLetter(row.topic, row.point.to_json().encode(), "store_rejected", str(exc)[:500],
                                         self._now_ns()))]
            half = len(rows) // 2
            return self._write_finding_bad(rows[:half]) + self._write_finding_bad(rows[half:])
        finally:
            self.write_seconds += time.perf_counter() - started

    def _mark(self, *, ok: bool, error: str = "") -> None:
        if ok and not self.store_ok:
            log.info("store reachable again")
        elif not ok and (self.store_ok or error != self.last_error):
            log.warning("store write failed, keeping the batch in the spool: %s", error[:300])
        self.store_ok, self.last_error = ok, error


def _finish(work: Future[None] | None) -> None:
    """Wait for `work` (if any) and raise what it raised."""
    if work is not None:
        work.result()
