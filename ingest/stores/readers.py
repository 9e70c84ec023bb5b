"""Readers: what a store holds, read back as pandas DataFrames for reports (interface: ``FrameReader``).

    sqlite:///PATH                 SqliteReader: the store file, opened read-only; a table per measurement
    influxdb1://[u:p@]host:port/DB InfluxDB1Reader: InfluxQL over HTTP (GET /query, chunked, epoch=ns);
    influxdb1s://...               over HTTPS, the certificate checked as the store checks it ([store] ca_file)
    influxdb://...                 not supported for reports yet (ConfigError): the v2 API answers Flux, not
                                   InfluxQL, and the tests' v2 server (VictoriaMetrics) answers no Flux

``reader_from_url`` checks the URL exactly as the service does (``store_from_url``), so a report reads the
store the service writes. Both readers give the same frame for the same points (see ``FrameReader``);
foreign errors (sqlite3, urllib3, JSON) become ``StoreError`` here.
"""

from __future__ import annotations

import json
import sqlite3
import ssl
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import pandas as pd
import urllib3

from ingest.errors import ConfigError, StoreError
from ingest.interfaces import FrameReader
from ingest.points import epoch_ns
from ingest.security import client_tls_context
from ingest.stores import (
    DEFAULT_INFLUXDB_PORT,
    HTTPS_SCHEMES,
    KEY,
    SqliteStore,
    influxdb1_credentials,
    store_from_url,
)

CHUNK_ROWS = 10_000
_MAX_ERROR_TEXT = 300


def reader_from_url(
    url: str,
    *,
    timeout_s: float = 30.0,
    ca_file: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> FrameReader:
    """The reader of the store that `url` names; ConfigError("store.url", ...) if it cannot be read back.

    `ca_file` ([store] ca_file) is the CA of an influxdb1s:// server's certificate, `username` and
    `password` ([store] username, password) the credentials of an influxdb1:// one, as for the store.
    """
    scheme = urlsplit(url).scheme
    if scheme in ("influxdb", "influxdbs"):
        raise ConfigError(KEY, "reports read sqlite:// and influxdb1:// stores; influxdb:// (the v2 API) "
                               "is not supported for reports yet")
    store = store_from_url(url, timeout_s=timeout_s, ca_file=ca_file, username=username,
                           password=password)  # the service's own checks
    store.close()  # built only to check the URL: nothing is open yet
    if isinstance(store, SqliteStore):
        return SqliteReader(store.path)
    parts = urlsplit(url)
    user, secret = influxdb1_credentials(url, username, password)
    return InfluxDB1Reader(
        parts.hostname or "",
        parts.port or DEFAULT_INFLUXDB_PORT,
        unquote(parts.path[1:]),
        user,
        secret,
        timeout_s=timeout_s,
        tls=client_tls_context(ca_file=ca_file, section="store") if scheme in HTTPS_SCHEMES else None,
    )


class SqliteReader:
    """Reads the SQLite store file (``SqliteStore``'s layout: a table per measurement, ``time`` in ns)."""

    def __init__(self, path: str | Path, *, timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self._timeout_s = timeout_s

    def read_frame(self, measurement: str, start: datetime, end: datetime) -> pd.DataFrame:
        """The rows of `measurement` in [start, end); no rows if the store has no such table."""
        if not self.path.is_file():
            raise StoreError(f"sqlite {self.path}: no store file there", retryable=False)
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=self._timeout_s)
            try:
                return self._query(conn, measurement, epoch_ns(start), epoch_ns(end))
            finally:
                conn.close()
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            busy = code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            raise StoreError(f"sqlite {self.path}: {exc}", retryable=busy) from exc

    def close(self) -> None:
        """Nothing stays open between reads."""

    @staticmethod
    def _query(conn: sqlite3.Connection, measurement: str, start_ns: int, end_ns: int) -> pd.DataFrame:
        found = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (measurement,)
        ).fetchone()
        if found is None:
            return _empty()
        table = '"' + measurement.replace('"', '""') + '"'
        cursor = conn.execute(f"SELECT * FROM {table} WHERE time >= ? AND time < ? ORDER BY time", (start_ns, end_ns))
        columns = [d[0] for d in cursor.description]
        return _frame(pd.DataFrame.from_records(cursor.fetchall(), columns=columns), tags=())


class InfluxDB1Reader:
    """Reads one database of an InfluxDB 1.x server with InfluxQL (``SELECT *``, chunked, times in ns)."""

    def __init__(
        self,
        host: str,
        port: int,
        database: str,
        username: str | None = None,
        password: str | None = None,
        *,
        timeout_s: float = 30.0,
        tls: ssl.SSLContext | None = None,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        host_part = f"[{host}]" if ":" in host else host
        self.base_url = f"{'https' if tls is not None else 'http'}://{host_part}:{port}"
        self.database = database
        self._timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)
        self._http = http if http is not None else urllib3.PoolManager(maxsize=1, retries=False, ssl_context=tls)
        self._headers: dict[str, str] = {}
        if username is not None:
            self._headers.update(urllib3.make_headers(basic_auth=f"{username}:{password or ''}"))

    def read_frame(self, measurement: str, start: datetime, end: datetime) -> pd.DataFrame:
        """The rows of `measurement` in [start, end); no rows if the database has no such measurement."""
        name = _quote(measurement)
        rows = self._series(f'SELECT * FROM "{name}" WHERE time >= {epoch_ns(start)} AND time < {epoch_ns(end)}')
        if not rows:
            return _empty()
        tags = [str(row[0]) for series in self._series(f'SHOW TAG KEYS FROM "{name}"') for row in series["values"]]
        frames = [pd.DataFrame(s["values"], columns=s["columns"]) for s in rows if s.get("values")]
        return _frame(pd.concat(frames, ignore_index=True), tags=tags) if frames else _empty()

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.clear()

    def _series(self, query: str) -> list[dict[str, Any]]:
        """Every series of every chunk of the answer to one statement."""
        params = {"db": self.database, "q": query, "epoch": "ns", "chunked": "true", "chunk_size": str(CHUNK_ROWS)}
        url = f"{self.base_url}/query?{urlencode(params)}"
        try:
            resp = self._http.request("GET", url, headers=self._headers, timeout=self._timeout, retries=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreError(f"InfluxDB {self.base_url} unreachable: {exc}", retryable=True) from exc
        text = resp.data.decode("utf-8", "replace")
        if resp.status != 200:
            retryable = resp.status >= 500 or resp.status in (401, 403, 408, 429)
            raise StoreError(f"InfluxDB query: {resp.status} {_cut(text)}", retryable=retryable, status=resp.status)
        return [series for chunk in _chunks(text) for series in _results(chunk)]


def _chunks(text: str) -> list[dict[str, Any]]:
    """A chunked answer is one JSON object per line."""
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise StoreError(f"InfluxDB answer is not JSON: {_cut(text)}", retryable=True) from exc


def _results(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    if "error" in chunk:
        raise StoreError(f"InfluxDB query: {_cut(str(chunk['error']))}", retryable=False)
    series: list[dict[str, Any]] = []
    for result in chunk.get("results", []):
        if "error" in result:
            raise StoreError(f"InfluxDB query: {_cut(str(result['error']))}", retryable=False)
        series.extend(result.get("series", []))
    return series


def _frame(raw: pd.DataFrame, *, tags: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """`raw` with `time` as UTC datetimes, in time order, and missing tags as ''."""
    frame = raw.copy()
    frame["time"] = pd.to_datetime(frame["time"].astype("int64"), unit="ns", utc=True)
    for tag in tags:
        if tag in frame.columns:
            frame[tag] = frame[tag].fillna("").astype(str)
    return frame.sort_values("time", kind="stable", ignore_index=True)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]")})


def _quote(name: str) -> str:
    """The inside of a double-quoted InfluxQL identifier."""
    return name.replace("\\", "\\\\").replace('"', '\\"')


def _cut(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "..."
