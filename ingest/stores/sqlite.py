"""SqliteStore: the embedded default store, one SQLite file holding the same data as InfluxDB would.

Layout, per measurement (``air_quality``, ``gate_event``, ``alert``, ...): one table of that name with a
``time`` column (INTEGER, ns since the epoch, UTC), one TEXT column per tag key (NOT NULL, '' where a point
has no such tag) and one untyped column per field key (values kept as given: REAL, INTEGER, TEXT; booleans
as 0/1). Columns are added as new keys appear. A unique index on (tag columns..., time) makes a write of
the same point merge its fields into the stored row, as InfluxDB does.

SQLite names ignore ASCII case, so a measurement, tag or field whose name differs from an existing one
only by case, a field and a tag of the same name, and the name ``time`` are refused for their content.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import StoreError
from ingest.points import INT64_MAX, INT64_MIN, FieldValue, Point

# Failures that are not about the data: the same batch may succeed later (another writer, disk, file).
_TRANSIENT_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
    }
)
_INDEX_SUFFIX = "__time_key"  # the unique index of table T is "T__time_key"; no table may end so


class SqliteStore:
    """Writes batches into a SQLite file (WAL mode), one table per measurement; used by one thread."""

    def __init__(self, path: str | Path, *, timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self._timeout_s = timeout_s
        self._conn: sqlite3.Connection | None = None
        self._tables: dict[str, _Table] = {}

    def write(self, points: Sequence[Point]) -> None:
        """Write the batch in one transaction; StoreError if any point cannot be written."""
        if not points:
            return
        try:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for measurement, group in _by_measurement(points).items():
                    self._write_table(conn, measurement, group)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OverflowError, ValueError, OSError) as exc:
            self._tables.clear()  # the rollback may have undone columns added in this batch
            raise self._translate(exc) from exc

    def close(self) -> None:
        """Close the file; a later write opens it again."""
        conn, self._conn = self._conn, None
        self._tables.clear()
        if conn is not None:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a committed batch survives a power cut
            self._conn = conn
        return self._conn

    def _write_table(self, conn: sqlite3.Connection, measurement: str, points: list[Point]) -> None:
        table = self._table(conn, measurement)
        tag_keys = _keys(p.tags for p in points)
        field_keys = _keys(p.fields for p in points)
        table.add_columns(conn, tag_keys, field_keys)
        fields = list(field_keys)
        conn.executemany(table.upsert_sql(fields), (table.row(p, fields) for p in points))

    def _table(self, conn: sqlite3.Connection, measurement: str) -> _Table:
        table = self._tables.get(measurement)
        if table is None:
            table = self._tables[measurement] = _Table.open(conn, measurement)
        return table

    def _translate(self, exc: BaseException) -> StoreError:
        if isinstance(exc, _RefusedError):
            return StoreError(f"sqlite {self.path}: {exc}", retryable=False)
        code = getattr(exc, "sqlite_errorcode", None)
        transient = isinstance(exc, OSError) or (code is not None and code & 0xFF in _TRANSIENT_CODES)
        return StoreError(f"sqlite {self.path}: {exc}", retryable=transient)


class _RefusedError(ValueError):
    """A point this store refuses for its content (names, values)."""


@dataclass
class _Table:
    """What the store knows of one measurement's table: its tag and field columns."""

    name: str
    tags: list[str] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)
    folded: dict[str, str] = field(default_factory=lambda: {"time": "time"})

    @classmethod
    def open(cls, conn: sqlite3.Connection, measurement: str) -> _Table:
        """The table of `measurement`, created if missing, with the columns it already has."""
        _check_table_name(measurement)
        found = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE", (measurement,)
        ).fetchone()
        if found is None:
            conn.execute(f"CREATE TABLE {_quote(measurement)} (time INTEGER NOT NULL)")
            index = _quote(measurement + _INDEX_SUFFIX)
            conn.execute(f"CREATE UNIQUE INDEX {index} ON {_quote(measurement)} (time)")
        elif found[0] != measurement:
            raise _RefusedError(f"measurement {measurement!r} clashes with table {found[0]!r} (SQLite ignores case)")
        table = cls(measurement)
        for _, name, decl, *_ in conn.execute(f"PRAGMA table_info({_quote(measurement)})"):
            table._remember(name, is_tag=decl == "TEXT")
        return table

    def add_columns(self, conn: sqlite3.Connection, tag_keys: Iterable[str], field_keys: Iterable[str]) -> None:
        """Add the columns this batch needs; re-create the unique index if a tag column was added."""
        new_tags = [k for k in tag_keys if k not in self.tags]
        for key in new_tags:
            self._add(conn, key, "TEXT NOT NULL DEFAULT ''", is_tag=True)
        for key in field_keys:
            if key not in self.fields:
                self._add(conn, key, "", is_tag=False)
        if new_tags:
            index = _quote(self.name + _INDEX_SUFFIX)
            columns = ", ".join(_quote(c) for c in [*self.tags, "time"])
            conn.execute(f"DROP INDEX IF EXISTS {index}")
            conn.execute(f"CREATE UNIQUE INDEX {index} ON {_quote(self.name)} ({columns})")

    def upsert_sql(self, fields: list[str]) -> str:
        """INSERT of time, every tag column and `fields`; on the same tags and time, merge the fields."""
        columns = ", ".join(_quote(c) for c in ["time", *self.tags, *fields])
        marks = ", ".join("?" * (1 + len(self.tags) + len(fields)))
        key = ", ".join(_quote(c) for c in [*self.tags, "time"])
        merge = ", ".join(f"{_quote(f)} = coalesce(excluded.{_quote(f)}, {_quote(f)})" for f in fields)
        return f"INSERT INTO {_quote(self.name)} ({columns}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {merge}"

    def row(self, point: Point, fields: list[str]) -> tuple[object, ...]:
        """The parameters of `upsert_sql(fields)` for one point: missing tags are '', missing fields NULL."""
        tags = [_tag_value(point, key) for key in self.tags]
        return (point.ts_ns, *tags, *(_field_value(point.fields.get(f)) for f in fields))

    def _add(self, conn: sqlite3.Connection, key: str, decl: str, *, is_tag: bool) -> None:
        clash = self.folded.get(_fold(key))
        if clash is not None:
            role = "tag" if is_tag else "field"
            raise _RefusedError(f"{role} {key!r} of {self.name!r} clashes with column {clash!r}")
        conn.execute(f"ALTER TABLE {_quote(self.name)} ADD COLUMN {_quote(key)} {decl}")
        self._remember(key, is_tag=is_tag)

    def _remember(self, name: str, *, is_tag: bool) -> None:
        if name == "time":
            return
        if is_tag:
            self.tags.append(name)
        else:
            self.fields.add(name)
        self.folded[_fold(name)] = name


def _by_measurement(points: Sequence[Point]) -> dict[str, list[Point]]:
    groups: dict[str, list[Point]] = {}
    for point in points:
        groups.setdefault(point.measurement, []).append(point)
    return groups


def _keys(mappings: Iterable[Iterable[str]]) -> dict[str, None]:
    """The union of the keys, in order of first appearance."""
    keys: dict[str, None] = {}
    for mapping in mappings:
        keys.update(dict.fromkeys(mapping))
    return keys


def _tag_value(point: Point, key: str) -> str:
    value = point.tags.get(key, "")
    if not isinstance(value, str):
        raise _RefusedError(f"tag {key!r} of {point.measurement!r} is not text: {value!r}")
    return value


def _field_value(value: FieldValue | None) -> FieldValue | None:
    if isinstance(value, float) and not math.isfinite(value):
        raise _RefusedError(f"field value {value!r} is not finite")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise _RefusedError(f"integer field value {value} is outside int64")
    return value


def _check_table_name(name: str) -> None:
    folded = _fold(name)
    if not name or folded.startswith("sqlite_") or folded.endswith(_INDEX_SUFFIX):
        raise _RefusedError(f"measurement name {name!r} is not allowed in SQLite")


def _fold(name: str) -> str:
    """A name as SQLite compares it: ASCII letters without case."""
    if not name or "\x00" in name:
        raise _RefusedError(f"name {name!r} is empty or contains NUL")
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans({chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)})


def _quote(name: str) -> str:
    """An SQL identifier, quoted: any text but NUL is safe."""
    return '"' + name.replace('"', '""') + '"'
