"""The spool: durable keeping, dedup, ordered draining, and counters that always add up."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ingest import spool as spool_module
from ingest.decode import Decoded
from ingest.messages import DeadLetter
from ingest.points import Point
from ingest.spool import SpoolDb


def reading(station: str, ts: int, pm25: float = 1.0) -> Decoded:
    point = Point("air_quality", {"park": "demo", "station": station}, {"pm25": pm25}, ts)
    return Decoded(point, f"a|{station}||{ts}", None)


def gate_event(event_id: str, ts: int) -> Decoded:
    point = Point("gate_event", {"park": "demo", "gate": "G1"}, {"event_id": event_id}, ts)
    return Decoded(point, f"g|G1|{event_id}", None, unique_slot="gts|G1")


def dead(reason: str = "invalid_json") -> DeadLetter:
    return DeadLetter("park/demo/air/S/reading", b"{", reason, "", 1)


def spool(tmp_path: Path) -> SpoolDb:
    return SpoolDb(tmp_path / "spool.db").open()


def identity(counters: dict[str, int]) -> bool:
    return counters["received"] == (
        counters["stored"] + counters["deadlettered"] + counters["duplicates"] + counters["in_spool"]
    )


class TestKeeping:
    def test_kept_points_come_back_in_arrival_order(self, tmp_path: Path) -> None:
        """Points come out of the spool in the order they were kept, across batches."""
        db = spool(tmp_path)
        db.keep(["t"] * 2, [reading("A", 1), reading("B", 1)], [], now_ns=0)
        db.keep(["t"], [reading("A", 2)], [], now_ns=0)
        assert [(r.point.tags["station"], r.point.ts_ns) for r in db.peek(10)] == [("A", 1), ("B", 1), ("A", 2)]

    def test_kept_points_survive_reopening(self, tmp_path: Path) -> None:
        """What was kept is still there after the process goes away and the file is opened again."""
        spool(tmp_path).keep(["t"], [reading("A", 1)], [], now_ns=0)
        assert len(spool(tmp_path).peek(10)) == 1

    def test_point_types_survive_the_spool(self, tmp_path: Path) -> None:
        """Floats stay floats, ints stay ints, strings and bools stay as they are."""
        point = Point("m", {"t": "粤R·A1234"}, {"f": 1.0, "i": 2, "s": 'a "b"', "b": True}, 5)
        spool(tmp_path).keep(["t"], [Decoded(point, None, None)], [], now_ns=0)
        assert spool(tmp_path).peek(1)[0].point == point


class TestDedup:
    def test_same_key_twice_in_one_batch_is_one_point_and_one_duplicate(self, tmp_path: Path) -> None:
        """A repeated (station, ts) inside one batch is kept once and counted as a duplicate."""
        db = spool(tmp_path)
        kept = db.keep(["t"] * 2, [reading("A", 1), reading("A", 1, 9.0)], [], now_ns=0)
        assert kept.duplicates == 1 and len(db.peek(10)) == 1

    def test_same_key_in_a_later_batch_is_a_duplicate(self, tmp_path: Path) -> None:
        """A redelivered reading is recognised even after it has been stored and released."""
        db = spool(tmp_path)
        db.keep(["t"], [reading("A", 1)], [], now_ns=0)
        db.release(db.peek(10))
        kept = db.keep(["t"], [reading("A", 1)], [], now_ns=0)
        assert kept.duplicates == 1 and db.peek(10) == []

    def test_dedup_survives_reopening(self, tmp_path: Path) -> None:
        """After a restart a redelivered message is still a duplicate."""
        spool(tmp_path).keep(["t"], [reading("A", 1)], [], now_ns=0)
        assert spool(tmp_path).keep(["t"], [reading("A", 1)], [], now_ns=0).duplicates == 1

    def test_pruned_keys_are_forgotten(self, tmp_path: Path) -> None:
        """Keys older than the dedup window are pruned; the same reading is then new again."""
        db = spool(tmp_path)
        db.keep(["t"], [reading("A", 1)], [], now_ns=100)
        assert db.prune_seen(older_than_ns=200, limit=100) == 1
        assert db.keep(["t"], [reading("A", 1)], [], now_ns=300).duplicates == 0

    def test_pruning_in_chunks_forgets_the_oldest_keys_first(self, tmp_path: Path) -> None:
        """Under load the keys are pruned a chunk at a time, the oldest first."""
        db = spool(tmp_path)
        for i in range(5):
            db.keep(["t"], [reading("A", i)], [], now_ns=100 + i)
        assert db.prune_seen(older_than_ns=1000, limit=2) == 2
        assert db.keep(["t"], [reading("A", 0)], [], now_ns=2000).duplicates == 0
        assert db.keep(["t"], [reading("A", 2)], [], now_ns=2000).duplicates == 1
        assert db.prune_seen(older_than_ns=1000, limit=10) == 3  # A2..A4; not A0, kept again at 2000

    def test_distinct_gate_events_at_the_same_instant_get_distinct_timestamps(self, tmp_path: Path) -> None:
        """Two different events of one gate with the same ts never overwrite each other in the store."""
        db = spool(tmp_path)
        db.keep(["t"], [gate_event("e1", 1000)], [], now_ns=0)
        db.keep(["t"] * 2, [gate_event("e2", 1000), gate_event("e3", 1000)], [], now_ns=0)
        assert sorted(r.point.ts_ns for r in db.peek(10)) == [1000, 1001, 1002]

    @pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 511, 512, 513, 1100])
    def test_a_redelivered_batch_of_any_size_is_all_duplicates(self, tmp_path: Path, n: int) -> None:
        """The dedup lookup finds every repeated key, whatever the batch size (lookups go in chunks)."""
        db = spool(tmp_path)
        batch = [reading(f"S{i % 50}", i) for i in range(n)]
        db.keep(["t"] * n, batch, [], now_ns=0)
        kept = db.keep(["t"] * (n + 1), [*batch, reading("new", 0)], [], now_ns=0)
        assert kept.duplicates == n and [d.point.tags["station"] for d in kept.new] == ["new"]

    def test_lookups_take_few_statement_shapes_whatever_the_batch_sizes(self, tmp_path: Path) -> None:
        """SQLite prepares each statement shape once per connection and keeps it: a shape per batch size
        made the service's memory grow with the variety of batch sizes (12.8 MB over a simulated day)."""
        db = spool(tmp_path)
        shapes: set[int] = set()
        # the callback sees the statement with its values in place: count the listed keys
        db._db.set_trace_callback(lambda sql: shapes.add(sql.count("','") + 1) if "FROM seen" in sql else None)
        for n in range(1, 700):
            db.keep(["t"] * n, [reading("A", n * 1000 + i) for i in range(n)], [], now_ns=0)
        assert shapes == {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}

    @pytest.mark.parametrize("n", [1, 255, 256, 257, 1000, 1100])
    def test_a_batch_of_any_size_is_kept_whole_and_in_order(self, tmp_path: Path, n: int) -> None:
        """Rows go in with statements of several rows each: every point, key and dead letter of a batch is
        kept, in arrival order, whatever its size."""
        db = spool(tmp_path)
        db.keep(["t"] * n, [reading(f"S{i % 7}", i) for i in range(n)], [dead() for _ in range(n)], now_ns=0)
        assert [r.point.ts_ns for r in db.peek(2 * n)] == list(range(n))
        assert db.counters()["received"] == 2 * n and len(db.outbox(2 * n)) == n
        assert db.keep(["t"] * n, [reading(f"S{i % 7}", i) for i in range(n)], [], now_ns=0).duplicates == n

    def test_inserts_take_few_statement_shapes_whatever_the_batch_sizes(self, tmp_path: Path) -> None:
        """As with lookups: a batch goes in by statements of 256 rows and powers of two below."""
        db = spool(tmp_path)
        shapes: set[int] = set()
        db._db.set_trace_callback(lambda sql: shapes.add(sql.count("),") + 1) if "INTO spool" in sql else None)
        for n in range(1, 700):
            db.keep(["t"] * n, [reading("A", n * 1000 + i) for i in range(n)], [], now_ns=0)
        assert shapes == {1, 2, 4, 8, 16, 32, 64, 128, 256}

    def test_unkeyed_values_are_never_duplicates(self, tmp_path: Path) -> None:
        """A value without a dedup key (status without ts) is always kept."""
        point = Point("device_status", {"device": "A"}, {"online": True}, 1)
        db = spool(tmp_path)
        kept = db.keep(["t"] * 2, [Decoded(point, None, None), Decoded(point, None, None)], [], now_ns=0)
        assert kept.duplicates == 0


class TestReleasing:
    def test_released_rows_leave_the_spool_and_no_other(self, tmp_path: Path) -> None:
        """A batch of the oldest rows, or any other selection of rows, is deleted exactly."""
        db = spool(tmp_path)
        db.keep(["t"] * 10, [reading("A", ts) for ts in range(10)], [], now_ns=0)
        rows = db.peek(10)
        db.release(rows[:4])  # the oldest: a run of ids
        assert [r.point.ts_ns for r in db.peek(10)] == list(range(4, 10))
        db.release([rows[5], rows[7]])  # not a run
        assert [r.point.ts_ns for r in db.peek(10)] == [4, 6, 8, 9]
        assert db.counters()["stored"] == 6

    def test_a_batch_that_fails_midway_leaves_nothing_behind(self, tmp_path: Path) -> None:
        """Whatever raises inside a transaction rolls it back: the batch is not half kept, and the next
        batch goes through on the same connection."""
        db = spool(tmp_path)
        unstorable = Decoded(Point("air_quality", {"station": object()}, {"pm25": 1.0}, 5), "a|X||5", None)  # type: ignore[dict-item]
        with pytest.raises(ValueError):
            db.keep(["t", "t"], [reading("A", 1), unstorable], [], now_ns=0)
        assert db.counters()["received"] == 0 and db.peek(10) == []
        db.keep(["t"], [reading("A", 1)], [], now_ns=0)
        assert db.counters()["received"] == 1 and len(db.peek(10)) == 1

    def test_writers_of_one_process_take_turns(self, tmp_path: Path) -> None:
        """Every connection to one spool file shares one writer lock (threads wait on it, not in SQLite's
        stepped busy sleeps); a different spool file has its own."""
        a, b, other = spool(tmp_path), spool(tmp_path), SpoolDb(tmp_path / "other.db").open()
        assert a._writing is b._writing and a._writing is not other._writing
        kept: list[bool] = []

        def keep() -> None:
            b.keep(["t"], [reading("A", 1)], [], now_ns=0)
            kept.append(True)

        with a._writing:
            thread = threading.Thread(target=keep)
            thread.start()
            thread.join(0.2)
            assert kept == []  # waiting for the lock
        thread.join(5)
        assert kept == [True]


    def test_a_writer_in_another_process_waits_for_the_lock(self, tmp_path: Path) -> None:
        """The ingest worker and the service are two processes writing to one spool: a keep in one waits
        while the other holds the writer lock, and goes ahead as soon as it is let go."""
        db = spool(tmp_path)
        code = ("import sys; from pathlib import Path; from tests.unit.test_spool import reading; "
                "from ingest.spool import SpoolDb; print('ready', flush=True); sys.stdin.readline(); "
                "SpoolDb(Path(sys.argv[1])).open().keep(['t'], [reading('B', 1)], [], now_ns=0); print('kept')")
        with db._writing:
            child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "spool.db")], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline() == "ready\n"
            child.stdin.write("go\n")
            child.stdin.flush()
            with pytest.raises(subprocess.TimeoutExpired):
                child.wait(0.5)  # waiting for the lock
        assert child.communicate(timeout=10)[0] == "kept\n"
        assert [r.point.tags["station"] for r in db.peek(10)] == ["B"]


class TestWal:
    def test_a_large_wal_is_started_over(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Past `_WAL_RESTART_FRAMES` a checkpoint also makes the next write start the WAL over from its
        beginning: with two processes writing and reading, SQLite's own restart hardly ever found its
        moment and the WAL grew to gigabytes. The file is reused at its size, not cut (see `checkpoint`)."""
        db = spool(tmp_path)
        wal = tmp_path / "spool.db-wal"
        db.keep(["t"] * 200, [reading("A", i) for i in range(200)], [], now_ns=0)
        monkeypatch.setattr(spool_module, "_WAL_RESTART_FRAMES", 1_000_000)
        db.checkpoint()
        size = wal.stat().st_size
        assert size > 0  # copied into the database file, the WAL file left as it was
        monkeypatch.setattr(spool_module, "_WAL_RESTART_FRAMES", 1)
        db.checkpoint()
        db.keep(["t"], [reading("B", 1)], [], now_ns=0)
        frames = db._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        assert 0 < frames < 10  # only the last batch's pages: written from the WAL's beginning
        assert wal.stat().st_size == size  # the file reused, not grown nor cut
        assert len(db.peek(1000)) == 201  # nothing lost on the way


class TestCounters:
    def test_identity_holds_through_keep_release_and_dead_letters(self, tmp_path: Path) -> None:
        """received = stored + dead-lettered + duplicates + in spool, at every step."""
        db = spool(tmp_path)
        db.keep(["t"] * 3, [reading("A", 1), reading("A", 1), reading("B", 1)], [dead()], now_ns=0)
        c = db.counters()
        assert (c["received"], c["duplicates"], c["deadlettered"], c["in_spool"]) == (4, 1, 1, 2)
        rows = db.peek(10)
        db.release(rows, [(rows[0], DeadLetter("t", b"", "store_rejected", "", 1))])
        c = db.counters()
        assert (c["stored"], c["deadlettered"], c["in_spool"]) == (1, 2, 0) and identity(c)

    def test_derived_points_are_stored_but_not_counted_as_messages(self, tmp_path: Path) -> None:
        """Alert changes kept by the service itself go to the store without touching the message counts."""
        db = spool(tmp_path)
        db.keep_derived("alerts", [Point("alert", {"rule": "r"}, {"alert_id": "a"}, 1)])
        rows = db.peek(10)
        assert len(rows) == 1 and not rows[0].counted
        db.release(rows)
        c = db.counters()
        assert (c["received"], c["stored"], c["derived_stored"], c["in_spool"]) == (0, 0, 1, 0)

    def test_dead_letters_wait_in_the_outbox_until_forgotten(self, tmp_path: Path) -> None:
        """Every dead letter is in the outbox, with its reason, until the pump has published it."""
        db = spool(tmp_path)
        db.keep([], [], [dead("not_utf8")], now_ns=0)
        rows = db.outbox(10)
        assert len(rows) == 1 and '"code": "not_utf8"' in rows[0][1]
        db.forget_outbox([rows[0][0]])
        assert db.outbox(10) == []
