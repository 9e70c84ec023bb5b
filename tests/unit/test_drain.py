"""The drainer: batches by size and by timer, retries what is transient, isolates what is bad."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pytest

from ingest.decode import Decoded
from ingest.drain import Drainer, DrainSettings
from ingest.errors import SpoolError, StoreError
from ingest.messages import DeadLetter
from ingest.points import Point, spooled_lines
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

            def peek(self, limit: int, *, after: int = 0) -> list[Row]:
                rows = super().peek(limit, after=after)
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


class TestIdleFlush:
    """A partial batch also goes once the intake has gone quiet for flush_idle_s: the end of a burst reaches
    the store at once instead of a flush interval later; while points keep coming, the interval rules."""

    class Clock:
        def __init__(self) -> None:
            self.now = 100.0

        def __call__(self) -> float:
            return self.now

    class Wake:
        """Stands in for the drainer's event: each wait lasts the whole timeout on the fake clock, and
        `during` runs in it (the intake notifying, or not)."""

        def __init__(self, clock: TestIdleFlush.Clock, during: Callable[[], None]) -> None:
            self.clock, self.during, self.waits = clock, during, list[float]()

        def wait(self, timeout: float) -> bool:
            self.waits.append(timeout)
            self.clock.now += timeout
            self.during()
            return False

    def waited(self, tmp_path: Path, *, unflushed: int, during: Callable[[Drainer], None] = lambda d: None,
               idle: float = 0.2) -> list[float]:
        """The waits of one `_wait_for_batch` (interval 1 s), `unflushed` points having been notified."""
        clock = self.Clock()
        drainer = Drainer(SpoolDb(tmp_path / "s.db").open(), MemoryStore(),
                          DrainSettings(batch_size=1000, flush_interval_s=1.0, flush_idle_s=idle), monotonic=clock)
        if unflushed:
            drainer.notify(unflushed)
        wake = self.Wake(clock, lambda: during(drainer))
        drainer._wake = wake  # type: ignore[assignment]
        drainer._wait_for_batch()
        return wake.waits

    def test_points_waiting_go_once_nothing_new_came_for_the_idle_time(self, tmp_path: Path) -> None:
        assert self.waited(tmp_path, unflushed=3) == [0.2]

    def test_while_the_intake_keeps_notifying_the_batch_waits_for_the_interval(self, tmp_path: Path) -> None:
        waits = self.waited(tmp_path, unflushed=3, during=lambda d: d.notify(1))
        assert waits == pytest.approx([0.2] * 5) and sum(waits) == pytest.approx(1.0)

    def test_with_nothing_waiting_the_drainer_sleeps_out_the_interval(self, tmp_path: Path) -> None:
        assert sum(self.waited(tmp_path, unflushed=0)) == pytest.approx(1.0)

    def test_points_that_come_after_a_quiet_spell_go_one_idle_time_after_the_last(self, tmp_path: Path) -> None:
        calls = iter([False, True, False])  # quiet, then one notify, then quiet again
        waits = self.waited(tmp_path, unflushed=0, during=lambda d: d.notify(2) if next(calls) else None)
        assert waits == pytest.approx([0.2, 0.2, 0.2])

    def test_zero_turns_it_off(self, tmp_path: Path) -> None:
        assert self.waited(tmp_path, unflushed=3, idle=0) == [1.0]

    def test_the_end_of_a_burst_reaches_the_store_long_before_the_interval(self, tmp_path: Path,
                                                                          spool: SpoolDb) -> None:
        store = MemoryStore()
        drainer = Drainer(SpoolDb(tmp_path / "s.db").open(), store,
                          DrainSettings(batch_size=1000, flush_interval_s=60, flush_idle_s=0.05))
        running(drainer)
        for start in range(0, 30, 3):
            keep(spool, 3, start)
            drainer.notify(3)
        assert eventually(lambda: store.count() == 30, timeout=10)
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

    def test_a_store_that_prepares_its_batches_is_split_the_same_way(self, tmp_path: Path,
                                                                      spool: SpoolDb) -> None:
        """A store that encodes batches apart from sending them (InfluxDB's) refuses a prepared batch: the
        halves are prepared again from the spool and sent, until the bad point is found."""

        class LineStore(MemoryStore):
            def __init__(self) -> None:
                super().__init__()
                self.lines: list[str] = []

            def prepare(self, spooled: Sequence[bytes]) -> bytes:
                return "\n".join(spooled_lines(spooled)).encode()

            def write_prepared(self, body: bytes) -> None:
                if b" v=5.0 " in body:
                    raise StoreError("400 field type conflict", retryable=False)
                self.lines += body.decode().split("\n")

        store = LineStore()
        keep(spool, 8)
        drainer = Drainer(SpoolDb(tmp_path / "s.db").open(), store, DrainSettings(batch_size=8))
        drainer.stop()
        drainer.run()
        c = spool.counters()
        assert (c["stored"], c["deadlettered"]) == (7, 1)
        assert sorted(line.split(" ")[1] for line in store.lines) == [f"v={v}.0" for v in (0, 1, 2, 3, 4, 6, 7)]

    def test_stopping_drains_what_is_left(self, tmp_path: Path, spool: SpoolDb) -> None:
        """On stop, the drainer writes what is in the spool before returning."""
        store = MemoryStore()
        drainer = Drainer(SpoolDb(tmp_path / "s.db").open(), store, DrainSettings(batch_size=2,
                                                                                   flush_interval_s=60))
        keep(spool, 5)
        drainer.stop()
        drainer.run()
        assert store.count() == 5


class RecordingStore(MemoryStore):
    """Remembers each batch it was given (the values of field v), in order."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[float]] = []

    def write(self, points: Sequence[Point]) -> None:
        self.batches.append([float(p.fields["v"]) for p in points])
        super().write(points)


def drain_in_two_batches(tmp_path: Path, spool: SpoolDb, spool_class: type[SpoolDb], store: RecordingStore) -> None:
    """Keep 8 points and drain them, stopped, in batches of 4 through a `spool_class` connection into
    `store`: both batches reach it, in order."""
    keep(spool, 8)
    drainer = Drainer(spool_class(tmp_path / "s.db").open(), store, DrainSettings(batch_size=4))
    drainer.stop()
    drainer.run()
    assert store.batches == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]


class TestReadingAhead:
    def test_the_next_batch_is_read_while_the_current_one_is_written(self, tmp_path: Path,
                                                                     spool: SpoolDb) -> None:
        """The store's write of the first batch only returns once the second batch has been read: a drainer
        that read only after writing would never get there."""
        second_read = threading.Event()

        class SignallingSpool(SpoolDb):
            def peek(self, limit: int, *, after: int = 0) -> list[Row]:
                rows = super().peek(limit, after=after)
                if rows and rows[0].point.fields["v"] == 4.0:
                    second_read.set()
                return rows

        class WaitingStore(RecordingStore):
            def write(self, points: Sequence[Point]) -> None:
                if points[0].fields["v"] == 0.0:
                    assert second_read.wait(5), "the second batch was not read during the first write"
                super().write(points)

        drain_in_two_batches(tmp_path, spool, SignallingSpool, WaitingStore())

    def test_no_more_than_one_batch_is_read_ahead(self, tmp_path: Path, spool: SpoolDb) -> None:
        """While a write hangs, the drainer holds that batch and the next one, and reads no further."""
        peeked: list[int] = []
        release = threading.Event()

        class CountingSpool(SpoolDb):
            def peek(self, limit: int, *, after: int = 0) -> list[Row]:
                rows = super().peek(limit, after=after)
                peeked.append(len(rows))
                return rows

        class HangingStore(RecordingStore):
            def write(self, points: Sequence[Point]) -> None:
                release.wait(5)
                super().write(points)

        keep(spool, 20)
        store = HangingStore()
        drainer = Drainer(CountingSpool(tmp_path / "s.db").open(), store, DrainSettings(batch_size=4))
        thread = running(drainer)
        assert eventually(lambda: len(peeked) >= 2)
        time.sleep(0.1)  # a drainer reading further would do it now
        assert peeked == [4, 4]
        release.set()
        drainer.stop()
        thread.join(5)
        assert sum(len(b) for b in store.batches) == 20

    def test_a_batch_read_ahead_is_written_after_the_retried_one_in_order(self, tmp_path: Path,
                                                                          spool: SpoolDb) -> None:
        """The store fails the first batch twice; the batch read meanwhile waits for it, and the store
        receives every point once, in spool order."""
        failures = [StoreError("connection refused", retryable=True)] * 2

        class FlakyStore(RecordingStore):
            def write(self, points: Sequence[Point]) -> None:
                if failures:
                    self.writes += 1
                    raise failures.pop()
                super().write(points)

        keep(spool, 10)
        store = FlakyStore()
        drainer = Drainer(SpoolDb(tmp_path / "s.db").open(), store,
                          DrainSettings(batch_size=4, flush_interval_s=0.01, retry=FAST))
        drainer.stop()
        drainer.run()
        assert store.batches == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0, 9.0]]
        assert spool.counters()["in_spool"] == 0

    def test_rows_left_by_an_outage_at_shutdown_are_drained_by_the_next_run(self, tmp_path: Path,
                                                                            spool: SpoolDb) -> None:
        """A run that gives up at its deadline leaves its batch (and the one read ahead) in the spool;
        the next run starts again from the oldest row."""
        store = RecordingStore()
        store.fail_with = StoreError("connection refused", retryable=True)
        keep(spool, 8)
        drainer = Drainer(SpoolDb(tmp_path / "s.db").open(), store,
                          DrainSettings(batch_size=4, flush_interval_s=0.01, retry=FAST))
        drainer.stop()
        drainer.run(deadline=time.monotonic)  # the deadline has passed at once
        assert spool.counters()["in_spool"] == 8
        store.fail_with = None
        drainer.run()
        assert store.batches[-2:] == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]
        assert spool.counters()["in_spool"] == 0


class TestReleasingBehind:
    def test_a_stored_batch_is_released_while_the_next_one_is_written(self, tmp_path: Path,
                                                                      spool: SpoolDb) -> None:
        """The release of the first batch only returns once the second batch's write has begun: a drainer
        that released before writing on would never get there. Every point is still counted once."""
        second_write = threading.Event()

        class WaitingSpool(SpoolDb):
            def release(self, rows: Sequence[Row], failed: Iterable[tuple[Row, DeadLetter]] = ()) -> None:
                if rows[0].point.fields["v"] == 0.0:
                    assert second_write.wait(5), "the second batch was not written during the first release"
                super().release(rows, failed)

        class SignallingStore(RecordingStore):
            def write(self, points: Sequence[Point]) -> None:
                if points[0].fields["v"] == 4.0:
                    second_write.set()
                super().write(points)

        drain_in_two_batches(tmp_path, spool, WaitingSpool, SignallingStore())
        counters = spool.counters()
        assert (counters["stored"], counters["in_spool"]) == (8, 0)

    def test_a_release_that_fails_stops_the_drainer_with_its_error(self, tmp_path: Path, spool: SpoolDb) -> None:
        """A spool that cannot release a stored batch is not ignored on the release's thread: run raises
        its SpoolError, and the rows stay in the spool for the next run (writing them again is harmless)."""

        class BrokenSpool(SpoolDb):
            def release(self, rows: Sequence[Row], failed: Iterable[tuple[Row, DeadLetter]] = ()) -> None:
                raise SpoolError("disk I/O error")

        keep(spool, 8)
        store = RecordingStore()
        drainer = Drainer(BrokenSpool(tmp_path / "s.db").open(), store, DrainSettings(batch_size=4))
        drainer.stop()
        with pytest.raises(SpoolError, match="disk I/O error"):
            drainer.run()
        assert spool.counters()["in_spool"] == 8
