"""The spool: the service's durable memory on local disk (SQLite in WAL mode).

A message is acknowledged to the broker only after the transaction that keeps it here has committed.
One transaction per batch holds, together: the points to store (in arrival order), the dedup keys, the
dead letters still to publish, and the counters. So after a crash at any moment the counters, the dedup
index and the spool agree, and the broker redelivers exactly what was not committed.

    received = stored + deadlettered + duplicates + in_spool      (always; in_spool = 0 once idle)

Each thread opens its own ``SpoolDb`` on the same file (SQLite connections are not shared across threads).
Writers take turns on a lock per spool file before they ask SQLite for its write lock: a thread lock within
a process and an flock of ``spool.db.lock`` across processes (the ingest worker, ingest/worker.py, and the
service). SQLite's busy handler waits for a held lock in steps (1, 2, 5, 10, 15, 20, 25... ms), and the
benchmark traced most of the alert-latency tail to the ingest thread sleeping through those steps (10 to
110 ms) while the drainer or the rules' derived points held the lock for a few ms. A writer waiting on
these locks runs as soon as they are released; SQLite's own timeout still covers any other process.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ingest.errors import SpoolError
from ingest.messages import DeadLetter
from ingest.points import Point

if TYPE_CHECKING:  # the drainer's process reads the spool without the decoder (pydantic and the models)
    from ingest.decode import Decoded

COUNTERS = ("received", "stored", "deadlettered", "duplicates")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, point BLOB NOT NULL,
                                  counted INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_at ON seen (at);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT NOT NULL,
                                   logged INTEGER NOT NULL DEFAULT 0);
"""
_WAL_RESTART_FRAMES = 16_384  # pages (64 MB at SQLite's 4 KB) in the WAL before `checkpoint` starts it over
_IN_CHUNK = 512  # keys per lookup statement, a power of two (see `_existing`)
_LOOKUPS = {1 << b: f"SELECT key FROM seen WHERE key IN ({','.join('?' * (1 << b))})"
            for b in range(_IN_CHUNK.bit_length())}
_WRITE_LOCKS: dict[Path, _WriterLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


class _WriterLock:
    """Writers to one spool file take turns: the threads of a process on a lock, the processes (the ingest
    worker and the service, ingest/worker.py) on an flock of a side file, ``spool.db.lock``. Either wakes
    the next writer as soon as the holder lets go. Not re-entrant."""

    def __init__(self, path: Path) -> None:
        self._threads = threading.Lock()
        self._path = path.with_name(path.name + ".lock")
        self._fd: int | None = None  # opened on first use: the spool's folder may not exist before

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as exc:
            self._threads.release()
            raise SpoolError(f"cannot lock {self._path}: {exc}") from exc

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


def _write_lock(path: Path) -> _WriterLock:
    """This process's lock of writers to the spool at `path`."""
    key = path.resolve()
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, _WriterLock(key))


@dataclass(frozen=True, slots=True)
class Kept:
    """The outcome of keeping one batch: the values that were new (duplicates left out)."""

    new: tuple[Decoded, ...]
    duplicates: int


class Row(NamedTuple):
    """One point read back from the spool. A named tuple, immutable like the rest: the drainer makes a
    million of these in a recovery, and a tuple is built in half the time of a frozen dataclass."""

    id: int
    topic: str
    data: bytes  # the point in the spool's form (`Point.to_bytes`): a PreparingStore encodes straight from it
    counted: bool = True  # False for derived points (alert changes, averages): not messages received

    @property
    def point(self) -> Point:
        """The point, decoded on each use (the drainer's prepared batches never need it)."""
        return Point.from_bytes(self.data)


class SpoolDb:
    """One thread's connection to the spool file."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self._path = path
        self._synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._writing = _write_lock(path)

    def open(self) -> SpoolDb:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            # No connection checkpoints on commit: a checkpoint of a large WAL under synchronous=FULL took
            # seconds, stalling the ingest thread (and so the acks). The drainer checkpoints after each
            # batch it releases (`checkpoint`), off the ingest thread.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open spool {self._path}: {exc}") from exc
        self._conn = conn
        return self

    def another(self) -> SpoolDb:
        """Another connection to the same spool, opened, for another thread."""
        return type(self)(self._path, synchronous=self._synchronous).open()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise SpoolError("spool is not open")
        return self._conn

    # --- ingest side ----------------------------------------------------------------------------------

    def keep(
        self, topics: Sequence[str], decoded: Sequence[Decoded], dead: Sequence[DeadLetter], *, now_ns: int
    ) -> Kept:
        """Durably keep one batch of received messages: valid ones (with their topics) and rejected ones."""
        with self._transaction("keep batch") as db:
            new, new_topics, keys = self._dedup(topics, decoded, now_ns)
            _insert(db, "spool (topic, point)", 2,
                    [v for t, d in zip(new_topics, new, strict=True) for v in (t, d.point.to_bytes())])
            _insert(db, "seen (key, at)", 2, [v for k in keys for v in (k, now_ns)])
            _insert(db, "outbox (record)", 1, [d.to_json() for d in dead])
            duplicates = len(decoded) - len(new)
            self._add(received=len(decoded) + len(dead), duplicates=duplicates, deadlettered=len(dead))
        return Kept(tuple(new), duplicates)

    def _dedup(
        self, topics: Sequence[str], decoded: Sequence[Decoded], now_ns: int
    ) -> tuple[list[Decoded], list[str], list[str]]:
        existing = self._existing([d.key for d in decoded if d.key is not None])
        new: list[Decoded] = []
        new_topics: list[str] = []
        keys: list[str] = []
        for topic, d in zip(topics, decoded, strict=True):
            if d.key is not None:
                if d.key in existing:
                    continue
                existing.add(d.key)
                keys.append(d.key)
            new.append(self._claim_slot(d, existing, keys) if d.unique_slot is not None else d)
            new_topics.append(topic)
        return new, new_topics, keys

    def _claim_slot(self, d: Decoded, claimed: set[str], keys: list[str]) -> Decoded:
        """Move a gate event forward by nanoseconds until no other event of that gate has its timestamp."""
        ts = d.point.ts_ns
        while (key := f"{d.unique_slot}|{ts}") in claimed or self._existing([key]):
            ts += 1
        claimed.add(key)
        keys.append(key)
        return d if ts == d.point.ts_ns else replace(d, point=replace(d.point, ts_ns=ts))

    def _existing(self, keys: list[str]) -> set[str]:
        """The keys among `keys` that the dedup index holds.

        A lookup lists its keys in the statement (`IN (?, ?, ...)`), padded to a power of two by repeating
        the last key: so no more than ten statement shapes exist. With one shape per batch size, SQLite
        prepared a new statement for every new size and Python's per-connection cache kept the last 128
        of them, up to 10 MB of SQLite memory; the benchmark's full simulated day saw the service grow by
        12.8 MB, in steps, over 17 simulated hours.
        """
        found: set[str] = set()
        for i in range(0, len(keys), _IN_CHUNK):
            chunk = keys[i : i + _IN_CHUNK]
            size = 1 << (len(chunk) - 1).bit_length()
            chunk += chunk[-1:] * (size - len(chunk))
            found.update(r[0] for r in self._db.execute(_LOOKUPS[size], chunk))
        return found

    def keep_derived(self, topic: str, points: Sequence[Point]) -> None:
        """Keep points the service derived itself (alert changes, AQI): stored like the rest, but they
        are not messages, so they stay out of the received/stored accounting."""
        values = [v for p in points for v in (topic, p.to_bytes(), 0)]
        with self._transaction("keep derived points") as db:
            _insert(db, "spool (topic, point, counted)", 3, values)

    def prune_seen(self, older_than_ns: int, *, limit: int) -> int:
        """Forget at most `limit` dedup keys kept since before `older_than_ns` (the dedup window has passed),
        the oldest first, so that a pruning under load holds the write lock only briefly."""
        sql = "DELETE FROM seen WHERE key IN (SELECT key FROM seen WHERE at < ? ORDER BY at LIMIT ?)"
        with self._writing:
            try:
                return self._db.execute(sql, (older_than_ns, limit)).rowcount
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot prune dedup keys: {exc}") from exc

    # --- drain side -----------------------------------------------------------------------------------

    def peek(self, limit: int, *, after: int = 0) -> list[Row]:
        """The oldest `limit` points still to store with ids above `after`, in arrival order (ids only grow:
        one writer at a time commits, so no row can appear below one already read)."""
        try:
            rows = self._db.execute("SELECT id, topic, point, counted FROM spool WHERE id > ? ORDER BY id LIMIT ?",
                                    (after, limit)).fetchall()
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot read spool: {exc}") from exc
        return [Row(i, t, p, c == 1) for i, t, p, c in rows]

    def release(self, rows: Sequence[Row], failed: Iterable[tuple[Row, DeadLetter]] = ()) -> None:
        """The store has taken `rows` except `failed` (dead-lettered): forget them, count them."""
        failed = list(failed)
        counted = sum(r.counted for r in rows)
        failed_counted = sum(r.counted for r, _ in failed)
        records = [(d.to_json(),) for _, d in failed]
        with self._transaction("release stored rows") as db:
            self._delete(rows)
            db.executemany("INSERT INTO outbox (record) VALUES (?)", records)
            self._add(stored=counted - failed_counted, deadlettered=failed_counted,
                      derived_stored=len(rows) - counted - (len(failed) - failed_counted),
                      derived_deadlettered=len(failed) - failed_counted)

    def _delete(self, rows: Sequence[Row]) -> None:
        """Delete the rows. A batch from `peek` is a run of consecutive ids (the oldest rows; AUTOINCREMENT
        ids only grow), deleted with one range statement: a DELETE per id held the write lock, which the
        ingest thread waits for, for 25 to 36 ms per 1,200 rows on the benchmark machine."""
        ids = sorted({r.id for r in rows})
        if ids and ids[-1] - ids[0] + 1 == len(ids):  # the range holds these ids and no other
            self._db.execute("DELETE FROM spool WHERE id BETWEEN ? AND ?", (ids[0], ids[-1]))
        else:
            self._db.executemany("DELETE FROM spool WHERE id = ?", [(i,) for i in ids])

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file without waiting for anyone (PASSIVE); once the
        WAL holds more than `_WAL_RESTART_FRAMES` frames, also start it over from its beginning.

        SQLite starts the WAL over only when a writer begins while every frame is copied and no reader
        still uses one. With the ingest worker writing a batch every few ms from its own process and the
        drainer reading here, that moment hardly came: the benchmark's simulated day grew the WAL to
        15.8 GB in 7 minutes, and its index (spool.db-shm, mapped by every connection) to 30 MB of each
        process's RSS. RESTART waits for the readers (a few ms) holding the writer lock, so writers in
        both processes wait on that lock, not in SQLite's stepped busy sleeps; the next write starts the
        WAL over from its beginning, and the file is reused at the size it reached (bounded by the
        threshold and what arrives between two checkpoints: about 100 MB at 5,000 readings/s).

        Not TRUNCATE, which also cuts the file to nothing: freeing and then growing again some 70 MB of
        file held the writer lock for 70 to 155 ms (RESTART: 11 to 28 ms), every 2.5 s at the
        benchmark's 5,000 readings/s, and every reading kept meanwhile waited for it; that was the alert
        latency's tail (bench machine, 2026-12-03; README, Benchmark).
        """
        try:
            _, frames, _ = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames > _WAL_RESTART_FRAMES:
                with self._writing:
                    self._db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot checkpoint the spool: {exc}") from exc

    # --- dead-letter outbox ---------------------------------------------------------------------------

    def outbox(self, limit: int) -> list[tuple[int, str, bool]]:
        """Dead letters still to log or publish: (id, JSON record, already logged)."""
        sql = "SELECT id, record, logged FROM outbox ORDER BY id LIMIT ?"
        return [(i, r, bool(lg)) for i, r, lg in self._db.execute(sql, (limit,))]

    def mark_logged(self, ids: Sequence[int]) -> None:
        with self._writing:
            self._db.executemany("UPDATE outbox SET logged = 1 WHERE id = ?", [(i,) for i in ids])

    def forget_outbox(self, ids: Sequence[int]) -> None:
        with self._writing:
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    # --- counters -------------------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """received, stored, deadlettered, duplicates and in_spool (derived from the identity)."""
        values = dict.fromkeys(COUNTERS, 0)
        values.update(dict(self._db.execute("SELECT name, value FROM counters").fetchall()))
        values["in_spool"] = values["received"] - values["stored"] - values["deadlettered"] - values["duplicates"]
        return values

    def _add(self, **deltas: int) -> None:
        self._db.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            [(k, v) for k, v in deltas.items() if v],
        )

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the process's writer lock: committed if the block completes,
        rolled back if anything in it raises; an SQLite error comes out as SpoolError("cannot {what}")."""
        db = self._db
        with self._writing:
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise SpoolError(f"cannot {what}: {exc}") from exc
            except BaseException:
                self._rollback()  # not left open: the next BEGIN would fail on this connection
                raise

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # no transaction was open: nothing to undo
            self._db.execute("ROLLBACK")


_ROWS_PER_INSERT = 256  # rows of one INSERT statement at most; a power of two (see `_insert`)


@functools.lru_cache(maxsize=64)
def _insert_statement(into: str, width: int, rows: int) -> str:
    row = f"({', '.join('?' * width)})"
    return f"INSERT INTO {into} VALUES {', '.join([row] * rows)}"


def _insert(db: sqlite3.Connection, into: str, width: int, values: Sequence[object]) -> None:
    """Insert rows of `width` values each, given one after another in `values`, in their order: in
    statements of 256 rows, then of the largest power of two that is left (a batch of 1,000 rows: 256 x 3,
    128, 64, 32, 8), so that no more than nine statement shapes per table exist.

    ``executemany`` runs a statement once per row, and Python's sqlite3 lets go of the GIL around each
    run: on the benchmark's 1,000-frame batches a spool row took 4.2 µs and a dedup key 2.8, against 1.9
    and 1.4 here (2026-12-04), and the ingest worker's network thread took the GIL up to twice per row.
    """
    rows, done = len(values) // width, 0
    while done < rows:
        n = min(_ROWS_PER_INSERT, 1 << ((rows - done).bit_length() - 1))
        db.execute(_insert_statement(into, width, n), values[done * width : (done + n) * width])
        done += n


class DerivedWriter:
    """Keeps points the service derives (alert changes, averages, AQI) in the spool, so they reach the store
    with the readings. Thread-safe; the connection is opened on first use (constructors do no I/O)."""

    def __init__(self, path: Path, topic: str) -> None:
        self._db = SpoolDb(path)
        self._topic = topic
        self._open = False
        self._lock = threading.Lock()

    def __call__(self, points: Sequence[Point]) -> None:
        if not points:
            return
        with self._lock:
            if not self._open:
                self._db.open()
                self._open = True
            self._db.keep_derived(self._topic, points)

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._open = False
