"""The drainer in a process of its own: it drains the spool into the store as the drainer thread does, and the
service's handle wakes it, stops it, reports the store's status and replaces it when it dies.

These start real drainer processes (as `parkwatch run` does) with a SQLite store in a file; the same
drainer in the service's process is tests/unit/test_drain.py's.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.drain import DrainSettings
from ingest.drain_process import DrainerProcess, DrainerSpec
from ingest.errors import ParkWatchError
from ingest.pipeline import RELEASE_SYNCHRONOUS, SpoolCounters
from ingest.retry import RetryPolicy
from ingest.spool import SpoolDb
from ingest.stores import StoreFactory
from tests.unit.test_drain import eventually, keep

FAST = RetryPolicy(initial_s=0.01, cap_s=0.02, jitter=0)


def spec(tmp_path: Path, *, store_url: str | None = None, batch_size: int = 100,
         flush_interval_s: float = 0.05) -> DrainerSpec:
    url = store_url or f"sqlite:///{tmp_path / 'store.db'}"
    return DrainerSpec(StoreFactory(url, None, None, None, 1.0, None), tmp_path / "spool.db",
                       DrainSettings(batch_size=batch_size, flush_interval_s=flush_interval_s, retry=FAST),
                       RELEASE_SYNCHRONOUS)


def stored(tmp_path: Path) -> list[float]:
    """The values of measurement m in the SQLite store, in time order ([] before the first write)."""
    try:
        with sqlite3.connect(tmp_path / "store.db") as db:
            return [v for (v,) in db.execute('SELECT v FROM "m" ORDER BY time')]
    except sqlite3.OperationalError:
        return []


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[SpoolDb]:
    db = SpoolDb(tmp_path / "spool.db").open()
    yield db
    db.close()


@pytest.fixture
def drainer(tmp_path: Path, spool: SpoolDb) -> Iterator[DrainerProcess]:
    handle = DrainerProcess(spec(tmp_path), restart=FAST)
    handle.start()
    yield handle
    handle.stop_within(1.0)


class TestDrainerProcess:
    def test_it_drains_the_spool_into_the_store_from_a_process_of_its_own(
        self, tmp_path: Path, spool: SpoolDb, drainer: DrainerProcess
    ) -> None:
        """Points kept in the spool reach the store, in order, and the spool counts them stored."""
        assert drainer.pid is not None and drainer.pid != os.getpid()
        keep(spool, 250)
        assert eventually(lambda: len(stored(tmp_path)) == 250)
        assert stored(tmp_path) == [float(i) for i in range(250)]
        counters = SpoolCounters(tmp_path / "spool.db")
        assert eventually(lambda: counters()["stored"] == 250 and counters()["in_spool"] == 0)
        assert drainer.store_ok and eventually(lambda: drainer.write_seconds > 0)

    def test_a_full_batch_is_written_on_notify_without_waiting_for_the_timer(
        self, tmp_path: Path, spool: SpoolDb
    ) -> None:
        """The service tells the drainer how many points were kept; a full batch goes out at once."""
        handle = DrainerProcess(spec(tmp_path, batch_size=10, flush_interval_s=60))
        handle.start()
        try:
            time.sleep(0.3)  # the drainer waits on its timer
            keep(spool, 10)
            handle.notify(10)
            assert eventually(lambda: len(stored(tmp_path)) == 10, timeout=5)
        finally:
            handle.stop_within(1.0)

    def test_stop_writes_what_is_left_and_ends_the_process(self, tmp_path: Path, spool: SpoolDb) -> None:
        """On stop the drainer writes what the spool holds (within the time given), then exits."""
        handle = DrainerProcess(spec(tmp_path, batch_size=1000, flush_interval_s=60))
        handle.start()
        pid = handle.pid
        assert pid is not None
        keep(spool, 30)  # no notify, a long flush interval: only the stop makes it write
        handle.stop_within(5.0)
        assert stored(tmp_path) == [float(i) for i in range(30)]
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    def test_the_store_status_reaches_the_service(self, tmp_path: Path, spool: SpoolDb) -> None:
        """A store that cannot be reached shows in the handle (for the operations endpoint); the points stay."""
        handle = DrainerProcess(spec(tmp_path, store_url="influxdb1://127.0.0.1:9/db"))  # nothing listens on 9
        handle.start()
        try:
            keep(spool, 5)
            assert eventually(lambda: not handle.store_ok)
            assert "127.0.0.1" in handle.last_error or "refused" in handle.last_error.lower()
            assert SpoolCounters(tmp_path / "spool.db")()["in_spool"] == 5
        finally:
            handle.stop_within(0.0)

    def test_a_drainer_that_dies_is_replaced_and_its_work_done(self, tmp_path: Path, spool: SpoolDb,
                                                               drainer: DrainerProcess) -> None:
        """A drainer killed outright is replaced after a pause; the replacement drains what is left."""
        keep(spool, 50)
        assert eventually(lambda: len(stored(tmp_path)) == 50)
        first = drainer.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert eventually(lambda: drainer.restarts == 1, timeout=20)
        assert drainer.pid != first
        keep(spool, 50, start=50)
        assert eventually(lambda: stored(tmp_path) == [float(i) for i in range(100)])
        assert eventually(lambda: SpoolCounters(tmp_path / "spool.db")()["stored"] == 100)

    def test_a_store_that_cannot_be_built_stops_the_start(self, tmp_path: Path) -> None:
        """An error while the drainer builds its store comes back as the start's error, with its text."""
        with pytest.raises(ParkWatchError, match=r"the drainer could not start: .*unknown scheme"):
            DrainerProcess(spec(tmp_path, store_url="nosuch://x")).start()
