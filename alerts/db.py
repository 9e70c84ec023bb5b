"""AlertDb: the alerts' durable memory (SQLite, WAL): the alerts and the notification outbox.

An alert's change and the outbox rows it causes are written in one transaction, so after a crash an
alert already notified is not notified again and no change is lost. Each outbox row is one delivery to
one channel, unique by `notification_id` (alert id / change number / channel).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from alerts.model import Alert

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY, rule TEXT NOT NULL, source TEXT NOT NULL, active INTEGER NOT NULL,
    seq INTEGER NOT NULL, body TEXT NOT NULL, last_sent REAL, escalated INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS alerts_active ON alerts (active, rule, source);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, notification_id TEXT NOT NULL UNIQUE, channel TEXT NOT NULL,
    kind TEXT NOT NULL, body TEXT NOT NULL, group_key TEXT, not_before REAL NOT NULL, attempts INTEGER NOT NULL
    DEFAULT 0, status TEXT NOT NULL DEFAULT 'queued', last_error TEXT);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (channel, status, not_before);
"""


@dataclass(frozen=True, slots=True)
class Row:
    """One queued delivery: the alert as it was when the change happened."""

    id: int
    notification_id: str
    channel: str
    kind: str
    alert: Alert
    group_key: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class Stored:
    alert: Alert
    seq: int
    last_sent: float | None
    escalated: bool


class AlertDb:
    """Thread-safe: one connection behind a lock (alert traffic is small)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    def open(self) -> AlertDb:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        self._conn = conn
        return self

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            assert self._conn is not None, "AlertDb is not open"
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- alerts ---------------------------------------------------------------------------------------

    def active(self) -> list[Stored]:
        with self.transaction() as db:
            rows = db.execute("SELECT body, seq, last_sent, escalated FROM alerts WHERE active = 1 ORDER BY rowid")
            return [Stored(Alert.from_json_dict(json.loads(b)), s, ls, bool(e)) for b, s, ls, e in rows]

    def get(self, alert_id: str) -> Stored | None:
        with self.transaction() as db:
            row = db.execute("SELECT body, seq, last_sent, escalated FROM alerts WHERE alert_id = ?",
                             (alert_id,)).fetchone()
        return None if row is None else Stored(Alert.from_json_dict(json.loads(row[0])), row[1], row[2], bool(row[3]))

    @staticmethod
    def save(db: sqlite3.Connection, alert: Alert, seq: int, *, last_sent: float | None = None,
             escalated: bool = False) -> None:
        db.execute(
            "INSERT INTO alerts (alert_id, rule, source, active, seq, body, last_sent, escalated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(alert_id) DO UPDATE SET active = excluded.active, "
            "seq = excluded.seq, body = excluded.body, last_sent = coalesce(excluded.last_sent, last_sent), "
            "escalated = max(escalated, excluded.escalated)",
            (alert.alert_id, alert.rule, alert.source, int(alert.active), seq,
             json.dumps(alert.to_json_dict(), ensure_ascii=False), last_sent, int(escalated)),
        )

    # --- outbox ---------------------------------------------------------------------------------------

    @staticmethod
    def enqueue(db: sqlite3.Connection, notification_id: str, channel: str, kind: str, alert: Alert,
                *, not_before: float, group_key: str | None = None) -> None:
        db.execute(
            "INSERT OR IGNORE INTO outbox (notification_id, channel, kind, body, group_key, not_before) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (notification_id, channel, kind, json.dumps(alert.to_json_dict(), ensure_ascii=False), group_key,
             not_before),
        )

    def due(self, channel: str, now: float, limit: int = 50) -> list[Row]:
        """Queued rows of `channel` whose time has come, oldest first, with the rest of their group."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id, notification_id, channel, kind, body, group_key, attempts FROM outbox "
                "WHERE channel = ? AND status = 'queued' AND not_before <= ? ORDER BY id LIMIT ?",
                (channel, now, limit)).fetchall()
            if rows and rows[0][5] is not None:  # a group: everything queued under its key goes together
                rows = db.execute(
                    "SELECT id, notification_id, channel, kind, body, group_key, attempts FROM outbox "
                    "WHERE channel = ? AND status = 'queued' AND group_key = ? ORDER BY id",
                    (channel, rows[0][5])).fetchall()
        return [Row(i, n, c, k, Alert.from_json_dict(json.loads(b)), g, a) for i, n, c, k, b, g, a in rows]

    def next_due(self, channel: str) -> float | None:
        with self.transaction() as db:
            row = db.execute("SELECT min(not_before) FROM outbox WHERE channel = ? AND status = 'queued'",
                             (channel,)).fetchone()
        return None if row is None else row[0]

    def mark(self, ids: Sequence[int], status: str, error: str | None = None) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE outbox SET status = ?, last_error = ? WHERE id = ?",
                           [(status, error, i) for i in ids])

    def retry_later(self, ids: Sequence[int], at: float, error: str) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE outbox SET attempts = attempts + 1, not_before = ?, last_error = ? WHERE id = ?",
                           [(at, error, i) for i in ids])

    def counts(self) -> dict[str, int]:
        """Outbox rows by `channel:status`, for metrics and tests."""
        with self.transaction() as db:
            rows = db.execute("SELECT channel, status, count(*) FROM outbox GROUP BY channel, status").fetchall()
        return {f"{c}:{s}": n for c, s, n in rows}

    def sent(self, channel: str) -> list[str]:
        with self.transaction() as db:
            rows = db.execute("SELECT notification_id FROM outbox WHERE channel = ? AND status = 'sent' ORDER BY id",
                              (channel,)).fetchall()
        return [r[0] for r in rows]
