"""The store contract, run against every backend; then what is particular to each one.

Every backend runs the same suite through one parametrized fixture: SQLite in a temporary file, InfluxDB 1.x
against a real `influxd`, and the v2 write API against a real VictoriaMetrics. Adding a backend means adding
one entry to `BACKENDS`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ingest.errors import ConfigError, StoreError
from ingest.interfaces import Store
from ingest.points import FieldValue, Point
from ingest.stores import InfluxDB1Store, InfluxDB2Store, SqliteStore, store_from_url
from ingest.stores.readers import reader_from_url
from tests.conftest import require_binary
from tests.servers import InfluxDB1Server, VictoriaMetricsServer

Row = dict[str, Any]
PLATE = "粤R·A1234"
HOSTILE = ["a b", "a,b", "a=b", 'say "hi"', r"C:\temp", PLATE, "tab\there\rcr", 'x = "1, 2"', " edge "]
DATABASE = "parkwatch"
T = TypeVar("T")


@dataclass
class Backend:
    """A store under test, how to read back what it stored, and how to make it unavailable for a while."""

    name: str
    store: Store
    read: Callable[[str, int], list[Row]]  # (measurement, series expected at least) -> rows
    outage: Callable[[], AbstractContextManager[None]]
    keeps_strings: bool = True


def _sqlite_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    path = tmp_path / "parkwatch.db"
    store = store_from_url(f"sqlite:///{path}", timeout_s=0.5)
    return Backend("sqlite", store, lambda m, _: _read_sqlite(path, m), lambda: _sqlite_locked(path))


def _influxdb1_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    server: InfluxDB1Server = request.getfixturevalue("influxdb1")
    store = store_from_url(server.url_for(DATABASE), timeout_s=5.0)
    return Backend("influxdb1", store, lambda m, _: _read_influxdb1(server, m), lambda: _stopped(server))


def _victoria_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    server: VictoriaMetricsServer = request.getfixturevalue("victoria")
    store = store_from_url(server.url, token="unused", timeout_s=5.0)
    read = lambda m, n: _read_victoria(server, m, n)  # noqa: E731
    return Backend("influxdb", store, read, lambda: _stopped(server), keeps_strings=False)


BACKENDS = {"sqlite": _sqlite_backend, "influxdb1": _influxdb1_backend, "influxdb": _victoria_backend}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn, with its store built from its URL."""
    b = BACKENDS[request.param](request, tmp_path)
    yield b
    b.store.close()


# --- readers: what each backend stored, as rows {"time": ns, tag: value, field: value} -------------------


def _read_sqlite(path: Path, measurement: str) -> list[Row]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f'SELECT * FROM "{measurement}"').fetchall()
    return [{k: row[k] for k in row.keys() if row[k] not in ("", None)} for row in rows]  # noqa: SIM118


def _read_influxdb1(server: InfluxDB1Server, measurement: str) -> list[Row]:
    rows = server.query(DATABASE, f'SELECT * FROM "{measurement}"')
    return [{k: v for k, v in row.items() if v is not None} for row in rows]


def _read_victoria(server: VictoriaMetricsServer, measurement: str, min_series: int) -> list[Row]:
    """VictoriaMetrics keeps one series per field, `<measurement>_<field>`, in ms: join them into rows."""
    rows: dict[tuple[Any, ...], Row] = {}
    for series in server.export(f'{{__name__=~"{measurement}_.*"}}', min_series=min_series):
        labels = dict(series["metric"])
        field = labels.pop("__name__")[len(measurement) + 1 :]
        for ts_ms, value in zip(series["timestamps"], series["values"], strict=True):
            key = (tuple(sorted(labels.items())), ts_ms)
            rows.setdefault(key, {"time": ts_ms * 1_000_000, **labels})[field] = value
    return list(rows.values())


# --- outages ----------------------------------------------------------------------------------------------


@contextmanager
def _stopped(server: InfluxDB1Server | VictoriaMetricsServer) -> Iterator[None]:
    server.stop()
    try:
        yield
    finally:
        server.start()


@contextmanager
def _sqlite_locked(path: Path) -> Iterator[None]:
    """Another writer holds the database: writes find it locked."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


# --- helpers ----------------------------------------------------------------------------------------------


def now_ns() -> int:
    """An hour ago (VictoriaMetrics exports nothing later than now), in whole ms (it keeps ms) as ns."""
    return (time.time_ns() - 3600 * 10**9) // 1_000_000 * 1_000_000


def reading(station: str, ts_ns: int, **fields: FieldValue) -> Point:
    return Point("air_quality", {"park": "demo", "station": station}, fields, ts_ns)


def expected(backend: Backend, points: list[Point]) -> list[Row]:
    """The rows `points` should leave: one per measurement, tags and time, fields merged, last wins."""
    rows: dict[tuple[Any, ...], Row] = {}
    for p in points:
        tags = {k: v for k, v in p.tags.items() if v}
        row = rows.setdefault((p.measurement, tuple(sorted(tags.items())), p.ts_ns), {"time": p.ts_ns, **tags})
        row.update({k: v for k, v in p.fields.items() if backend.keeps_strings or _is_number(v)})
    return list(rows.values())


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def ordered(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (r["time"], sorted((k, str(v)) for k, v in r.items())))


def series_count(backend: Backend, points: list[Point]) -> int:
    """How many series VictoriaMetrics will hold for `points` (one per tag set and numeric field)."""
    return len(
        {
            (tuple(sorted(p.tags.items())), field)
            for p in points
            for field, value in p.fields.items()
            if backend.keeps_strings or _is_number(value)
        }
    )


def assert_stored(backend: Backend, measurement: str, points: list[Point]) -> None:
    rows = backend.read(measurement, series_count(backend, points))
    if not backend.keeps_strings:  # VictoriaMetrics keeps a string field as a series of 0s: leave it out
        strings = {k for p in points for k, v in p.fields.items() if isinstance(v, str)}
        rows = [{k: v for k, v in row.items() if k not in strings} for row in rows]
    assert ordered(rows) == ordered(expected(backend, points))


# --- the contract -----------------------------------------------------------------------------------------


@pytest.mark.integration
class TestStoreContract:
    def test_batch_is_stored(self, backend: Backend) -> None:
        """A batch is stored and reads back as written: tags, float, int and string fields, timestamps."""
        t = now_ns()
        points = [
            reading("S1", t, pm25=35.2, wind_dir=135, o3_flag="C"),
            reading("S2", t, pm25=12.0, wind_dir=90),
            reading("S1", t + 60_000_000_000, pm25=36.5, wind_dir=180),
        ]
        backend.store.write(points)
        assert_stored(backend, "air_quality", points)

    def test_empty_batch_is_a_no_op(self, backend: Backend) -> None:
        """Writing an empty batch does nothing and does not fail."""
        backend.store.write([])

    def test_same_point_twice_is_stored_once(self, backend: Backend) -> None:
        """Writing the same point twice stores it once."""
        p = reading("S1", now_ns(), pm25=35.2)
        backend.store.write([p])
        backend.store.write([p])
        assert_stored(backend, "air_quality", [p])

    def test_same_point_again_merges_fields(self, backend: Backend) -> None:
        """A point written again with other fields adds them to the stored point, the last value winning."""
        t = now_ns()
        points = [reading("S1", t, pm25=35.2, pm10=61.0), reading("S1", t, pm10=62.0, so2=8.0)]
        backend.store.write(points[:1])
        backend.store.write(points[1:])
        assert_stored(backend, "air_quality", points)

    def test_points_differing_only_in_time_are_both_stored(self, backend: Backend) -> None:
        """Two points that differ only in their timestamp (by 1 ms) are both stored."""
        t = now_ns()
        points = [reading("S1", t, pm25=35.2), reading("S1", t + 1_000_000, pm25=35.2)]
        backend.store.write(points)
        assert_stored(backend, "air_quality", points)

    def test_new_tag_key_next_to_older_points(self, backend: Backend) -> None:
        """A point with a tag key that earlier points lack is stored beside them, not over them."""
        t = now_ns()
        older = reading("S1", t, pm25=35.2)
        newer = Point("air_quality", {"park": "demo", "station": "S1", "period": "minute"}, {"pm25": 30.0}, t)
        backend.store.write([older])
        backend.store.write([newer])
        assert_stored(backend, "air_quality", [older, newer])

    def test_hostile_text_round_trips(self, backend: Backend) -> None:
        """Spaces, commas, '=', quotes, backslashes, tabs and Chinese text in tags and strings come back exactly."""
        t = now_ns()
        points = [
            Point("gate_event", {"gate": "G1", "plate": text}, {"n": i, "note": f"{text}\n{text}"}, t)
            for i, text in enumerate(HOSTILE)
        ]
        backend.store.write(points)
        assert_stored(backend, "gate_event", points)

    def test_hostile_names_round_trip(self, backend: Backend) -> None:
        """Tag and field keys with spaces, commas, '=' and Chinese text come back exactly."""
        p = Point("gate_event", {"gate no., 闸": "G1"}, {"load t=": 18.5, "危险品 class": 3}, now_ns())
        backend.store.write([p])
        assert_stored(backend, "gate_event", [p])

    def test_unwritable_point_is_permanent(self, backend: Backend) -> None:
        """A point no store can take (a NaN field) raises StoreError(retryable=False)."""
        with pytest.raises(StoreError) as info:
            backend.store.write([reading("S1", now_ns(), pm25=float("nan"))])
        assert info.value.retryable is False

    def test_unavailable_store_is_retryable_and_recovers(self, backend: Backend) -> None:
        """While the store is unavailable a write raises StoreError(retryable=True); afterwards it succeeds."""
        t = now_ns()
        before, during = reading("S1", t, pm25=1.0), reading("S1", t + 1_000_000, pm25=2.0)
        backend.store.write([before])
        with backend.outage(), pytest.raises(StoreError) as info:
            backend.store.write([during])
        assert info.value.retryable is True
        backend.store.write([during])
        assert_stored(backend, "air_quality", [before, during])


# --- what is particular to one backend --------------------------------------------------------------------


class TestSqliteStore:
    def test_constructor_does_no_io(self, tmp_path: Path) -> None:
        """Building the store creates no file; the first write does."""
        path = tmp_path / "sub" / "x.db"
        store = SqliteStore(path)
        assert not path.parent.exists()
        store.write([reading("S1", 1, pm25=1.0)])
        assert path.exists()
        store.close()

    def test_wal_mode(self, tmp_path: Path) -> None:
        """The database is in WAL mode."""
        store = SqliteStore(tmp_path / "x.db")
        store.write([reading("S1", 1, pm25=1.0)])
        with sqlite3.connect(tmp_path / "x.db") as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store.close()

    @pytest.mark.parametrize(
        "bad",
        [
            Point("air_quality", {"park": "demo"}, {"time": 1.0}, 1),
            Point("air_quality", {"time": "x"}, {"pm25": 1.0}, 1),
            Point("air_quality", {"park": "demo"}, {"PM25": 1.0}, 1),
            Point("Air_Quality", {"park": "demo"}, {"pm25": 1.0}, 1),
            Point("air_quality", {"pm25": "x"}, {"pm10": 1.0}, 1),
            Point("air_quality", {"park": "demo"}, {"big": 2**64}, 1),
            Point("sqlite_master", {}, {"x": 1.0}, 1),
        ],
        ids=["field time", "tag time", "case clash", "table case clash", "tag is field", "big int", "reserved"],
    )
    def test_refused_names_and_values(self, tmp_path: Path, bad: Point) -> None:
        """Names SQLite cannot keep apart (case, 'time', tag vs field) and values it cannot hold are permanent."""
        store = SqliteStore(tmp_path / "x.db")
        store.write([reading("S1", 1, pm25=1.0)])
        with pytest.raises(StoreError) as info:
            store.write([bad])
        assert info.value.retryable is False
        store.write([reading("S1", 2, pm25=2.0)])  # the store still works afterwards
        store.close()

    def test_failed_batch_leaves_nothing(self, tmp_path: Path) -> None:
        """A batch with one bad point is written not at all, columns included."""
        path = tmp_path / "x.db"
        store = SqliteStore(path)
        with pytest.raises(StoreError):
            store.write([reading("S1", 1, pm25=1.0, extra=2.0), reading("S1", 2, pm25=float("inf"))])
        store.write([reading("S1", 3, pm25=3.0)])
        assert _read_sqlite(path, "air_quality") == [{"time": 3, "park": "demo", "station": "S1", "pm25": 3.0}]
        store.close()

    def test_reopened_store_merges_into_existing_rows(self, tmp_path: Path) -> None:
        """A new store on an existing file learns its columns and merges into its rows."""
        path = tmp_path / "x.db"
        for fields in ({"pm25": 1.0}, {"pm10": 2.0}):
            store = SqliteStore(path)
            store.write([reading("S1", 1, **fields)])
            store.close()
        assert _read_sqlite(path, "air_quality") == [
            {"time": 1, "park": "demo", "station": "S1", "pm25": 1.0, "pm10": 2.0}
        ]

    def test_throughput(self, tmp_path: Path) -> None:
        """Batches of 5,000 readings with 9 fields are written at 50,000 points/s or more."""
        store = SqliteStore(tmp_path / "x.db")
        names = ["pm25", "pm10", "so2", "no2", "co", "o3", "tvoc", "h2s", "nh3"]
        points = [reading(f"S{i % 20}", i * 1000, **{n: float(i) for n in names}) for i in range(50_000)]
        start = time.perf_counter()
        for i in range(0, len(points), 5_000):
            store.write(points[i : i + 5_000])
        assert len(points) / (time.perf_counter() - start) >= 50_000
        store.close()


@pytest.mark.integration
class TestInfluxDB1Store:
    def test_creates_its_database(self, influxdb1: InfluxDB1Server) -> None:
        """The first write creates the database."""
        store = store_from_url(influxdb1.url_for("fresh db"))
        store.write([reading("S1", 1, pm25=1.0)])
        assert influxdb1.query("fresh db", "SELECT * FROM air_quality") == [
            {"time": 1, "park": "demo", "station": "S1", "pm25": 1}
        ]
        store.close()

    def test_dropped_database_is_created_again(self, influxdb1: InfluxDB1Server) -> None:
        """A database dropped under the store is a retryable failure, and the next write creates it again."""
        store = store_from_url(influxdb1.url_for(DATABASE))
        store.write([reading("S1", 1, pm25=1.0)])
        influxdb1.execute(f'DROP DATABASE "{DATABASE}"')
        with pytest.raises(StoreError) as info:
            store.write([reading("S1", 2, pm25=2.0)])
        assert (info.value.retryable, info.value.status) == (True, 404)
        store.write([reading("S1", 2, pm25=2.0)])
        assert influxdb1.count(DATABASE, "air_quality") == 1
        store.close()

    def test_field_type_conflict_is_permanent(self, influxdb1: InfluxDB1Server) -> None:
        """A field written with another type than before raises StoreError(retryable=False, status=400).
        (Only InfluxDB 1.x enforces field types here: SQLite has none, VictoriaMetrics casts.)"""
        store = store_from_url(influxdb1.url_for(DATABASE))
        t = now_ns()
        store.write([reading("S1", t, pm25=35.2)])
        with pytest.raises(StoreError) as info:
            store.write([reading("S1", t + 1_000_000, pm25="high")])
        assert (info.value.retryable, info.value.status) == (False, 400)
        assert "field type conflict" in str(info.value)
        store.close()


class TestStoreFromUrl:
    def test_sqlite_absolute_and_relative(self) -> None:
        """sqlite:///abs/x.db is absolute; sqlite:///./x.db and sqlite:x.db are relative."""
        assert _store(store_from_url("sqlite:///var/lib/x.db"), SqliteStore).path == Path("/var/lib/x.db")
        assert _store(store_from_url("sqlite:///./data/x.db"), SqliteStore).path == Path("data/x.db")
        assert _store(store_from_url("sqlite:data/x%20y.db"), SqliteStore).path == Path("data/x y.db")

    def test_influxdb_v2(self) -> None:
        """influxdb://host:port?org=&bucket= gives the v2 store; influxdbs:// uses HTTPS; port defaults to 8086."""
        store = _store(store_from_url("influxdb://db.local:9999?org=o&bucket=b", token="t"), InfluxDB2Store)
        assert (store.url, store.org, store.bucket) == ("http://db.local:9999", "o", "b")
        assert _store(store_from_url("influxdbs://db.local?org=o&bucket=b"), InfluxDB2Store).url == (
            "https://db.local:8086"
        )

    def test_influxdb1_with_encoded_credentials(self) -> None:
        """influxdb1://user:password@host:port/DB decodes user, password and database."""
        store = _store(store_from_url("influxdb1://u%40x:p%3A%2Fw@127.0.0.1:8087/park%20db"), InfluxDB1Store)
        assert (store.base_url, store.database) == ("http://127.0.0.1:8087", "park db")

    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("mysql://h/db", "unknown scheme"),
            ("sqlite://host/x.db", "no host"),
            ("sqlite:///", "path"),
            ("influxdb://h:8086?org=o", "bucket"),
            ("influxdb://h:8086?org=o&bucket=b&token=SECRET", "unknown parameter"),
            ("influxdb://h:99999?org=o&bucket=b", "port"),
            ("influxdb1://h:8086/", "DATABASE"),
            ("influxdb1://h:8086/db?x=1", "DATABASE"),
            ("influxdb1://user:SECRET@h:port/db", "port"),
            ("influxdb1://user:SEC/RET@h:8086/db", "port"),
        ],
    )
    def test_malformed_url(self, url: str, reason: str) -> None:
        """A malformed URL raises ConfigError("store.url") that says what is wrong and never shows a secret."""
        with pytest.raises(ConfigError) as info:
            store_from_url(url)
        assert info.value.key == "store.url"
        assert reason in info.value.reason
        assert "SECRET" not in str(info.value) and "SEC/RET" not in str(info.value)

    def test_constructors_do_no_io(self) -> None:
        """Building a store for an unreachable server succeeds; only writing fails."""
        store = store_from_url("influxdb1://127.0.0.1:1/db", timeout_s=0.5)
        with pytest.raises(StoreError) as info:
            store.write([reading("S1", 1, pm25=1.0)])
        assert info.value.retryable is True


def _store(store: Store, kind: type[T]) -> T:
    assert isinstance(store, kind)
    return store


class TestInfluxDB1Authentication:
    """An influxd with authentication on: the store and the report reader log in with [store] username and
    password (or the URL's); without them, or with a wrong password, a write is refused as retryable (401:
    credentials, not content), so the points stay in the spool."""

    ADMIN = ("parkwatch", "s3cret-Pw")

    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1Server]:
        require_binary(InfluxDB1Server.binary)
        with InfluxDB1Server(tmp_path_factory.mktemp("influxdb1-auth"), admin=cls.ADMIN) as server:
            server.create_database(DATABASE)
            yield server

    def test_a_store_with_username_and_password_writes_and_a_report_reads_back(self, server: InfluxDB1Server) -> None:
        user, password = self.ADMIN
        store = store_from_url(server.url_for(DATABASE), username=user, password=password, timeout_s=5.0)
        store.write([reading("AUTH1", 1_000_000_000, pm25=12.5)])
        (row,) = server.query(DATABASE, "SELECT * FROM air_quality WHERE station = 'AUTH1'")
        assert row["pm25"] == 12.5
        reader = reader_from_url(server.url_for(DATABASE), username=user, password=password)
        frame = reader.read_frame("air_quality", datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 2, tzinfo=UTC))
        assert list(frame["pm25"]) == [12.5]

    def test_credentials_in_the_url_log_in_too(self, server: InfluxDB1Server) -> None:
        user, password = self.ADMIN
        url = server.url_for(DATABASE).replace("://", f"://{user}:{password}@")
        store_from_url(url, timeout_s=5.0).write([reading("AUTH2", 2_000_000_000, pm25=1.0)])
        assert server.count(DATABASE, "air_quality") >= 1

    @pytest.mark.parametrize("password", [None, "wrong"])
    def test_no_or_a_wrong_password_is_a_retryable_refusal(self, server: InfluxDB1Server, password: str | None) -> None:
        credentials = {} if password is None else {"username": self.ADMIN[0], "password": password}
        store = store_from_url(server.url_for(DATABASE), timeout_s=5.0, **credentials)
        with pytest.raises(StoreError) as info:
            store.write([reading("AUTH3", 3_000_000_000, pm25=1.0)])
        assert info.value.retryable and info.value.status == 401
        assert "wrong" not in str(info.value)
