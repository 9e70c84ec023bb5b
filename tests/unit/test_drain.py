"""The drainer: batches by size and by timer, retries what is transient, isolates what is bad."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest.decode import Decoded
from ingest.drain import Drainer, DrainSettings
from ingest.errors import StoreError
from ingest.points import Point
from ingest.retry import RetryPolicy
from ingest.spool import Row, SpoolDb
from ingest.stores.memory import MemoryStore

FAST = RetryPolicy(initial_s=0.01, cap_s=0.02)


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def keep(db: SpoolDb, n: int, start: int = 0) -> None:
    decoded = [Decoded(Point("m", {"s": "A"}, {"v": float(i)}, i), None, None) for i in range(start, start + n)]
    db.keep(["park/demo/air/A/reading"] * n, decoded, [], now_ns=0)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[SpoolDb]:
    db = SpoolDb(tmp_path / "s.db").open()
    yield db
    db.close()


def running(drainer: Drainer) -> threading.Thread:
    thread = threading.Thread(target=drainer.run, daemon=True)
    thread.start()
    return thread


class TestBatching:
    def test_a_full_batch_is_written_without_waiting_for_the_timer(self, tmp_path: Path, spool: SpoolDb) -> None:
        """batch_size points waiting are written at once, even with a long flush interval."""
        store = MemoryStore()
        drainer = Drainer(SpoolDb(tmp_path / "s.db").open(), store, DrainSettings(batch_size=10,
                                                                                   flush_interval_s=60))
        running(drainer)
        time.sleep(0.05)  # let the drainer go to sleep on the timer first
        keep(spool, 10)
        drainer.notify(10)
        assert eventually(lambda: store.count() == 10, timeout=2)
        drainer.stop()

    def test_each_point_is_read_from_the_spool_once(self, tmp_path: Path, spool: SpoolDb) -> None:
        """Under a trickle the drainer waits for the timer, then reads the batch: it does not read the spool
        before waiting as well (that decoded every point twice)."""
        store = MemoryStore()

        class CountingSpool(SpoolDb):
            read = 0

            def peek(self, limit: int) -> list[Row]:
                rows = super().peek(limit)
                CountingSpool.read += len(rows)
                return rows

        drainer = Drainer(CountingSpool(tmp_path / "s.db").open(), store, DrainSettings(batch_size=1000,
                                                                                        flush_interval_s=0.05))
        running(drainer)
        for start in (0, 4, 8):
            keep(spool, 4, start)
            drainer.notify(4)
            assert eventually(lambda n=start + 4: store.count() == n, timeout=2)
        drainer.stop()
        assert CountingSpool.read == 12

    def test_a_partial_batch_is_written_when_the_timer_fires(self, tmp_path: Path, spool: SpoolDb) -> None:
        """Fewer than batch_size points are written after flush_interval, not when the next one arrives."""
        store = MemoryStore()
        keep(spool, 3)
        drainer = Drainer(SpoolDb(tmp_path / "s.db").open(), store, DrainSettings(batch_size=1000,
                                                                                   flush_interval_s=0.1))
        running(drainer)
        assert eventually(lambda: spool.counters()["stored"] == 3, timeout=2)
        assert store.count() == 3
        drainer.stop()


class TestFailures:
    def test_a_transient_error_keeps_the_batch_and_retries(self, tmp_path: Path, spool: SpoolDb) -> None:
        """While the store is down nothing leaves the spool; once it is back everything is stored."""
        store = MemoryStore()
        store.fail_with = StoreError("connection refused", retryable=True)
        keep(spool, 5)
        drainer = Drainer(SpoolDb(tmp_path / "s.db").open(), store,
                          DrainSettings(batch_size=5, flush_interval_s=0.01, retry=FAST))
        running(drainer)
        assert eventually(lambda: store.writes >= 3)
        assert spool.counters()["in_spool"] == 5 and not drainer.store_ok
        store.fail_with = None
        assert eventually(lambda: store.count() == 5)
        assert eventually(lambda: spool.counters()["in_spool"] == 0)
        drainer.stop()

    def test_a_permanent_error_dead_letters_only_the_bad_point(self, tmp_path: Path, spool: SpoolDb) -> None:
        """A batch the store refuses is split until the bad point is found; the others are stored."""
        store = MemoryStore()
        store.refuse = lambda p: p.fields["v"] == 5.0
        keep(spool, 8)
        drainer = Drainer(SpoolDb(tmp_path / "s.db").open(), store,
                          DrainSettings(batch_size=8, flush_interval_s=0.01, retry=FAST))
        running(drainer)
        assert eventually(lambda: spool.counters()["in_spool"] == 0)
        c = spool.counters()
        assert (c["stored"], c["deadlettered"], store.count()) == (7, 1, 7)
        (record,) = [r for _, r, _ in spool.outbox(10)]
        assert '"code": "store_rejected"' in record and '"topic": "park/demo/air/A/reading"' in record
        drainer.stop()

    def test_stopping_drains_what_is_left(self, tmp_path: Path, spool: SpoolDb) -> None:
        """On stop, the drainer writes what is in the spool before returning."""
        store = MemoryStore()
        drainer = Drainer(SpoolDb(tmp_path / "s.db").open(), store, DrainSettings(batch_size=2,
                                                                                   flush_interval_s=60))
        keep(spool, 5)
        drainer.stop()
        drainer.run()
        assert store.count() == 5
