"""The report's readers against the stores that wrote the data: SQLite and a real InfluxDB 1.x (`influxd`).

The same points go into both stores; read back, they give the same frames, and the daily report computed
from InfluxDB equals the one computed from SQLite, table by table.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from ingest.errors import StoreError
from ingest.interfaces import FrameReader
from ingest.points import Point
from ingest.stores import InfluxDB1Store, SqliteStore, readers
from ingest.stores.readers import InfluxDB1Reader, SqliteReader, reader_from_url
from rules.report import daily_report
from rules.report.daily import TABLES
from tests.servers import InfluxDB1Server
from tests.unit.test_report import DAY, MIDNIGHT, PARK, SHANGHAI, alerts, gate_events, readings

pytestmark = pytest.mark.integration
DATABASE = "parkwatch report"  # a space: the name is quoted and URL-encoded all the way
POINTS: Callable[[], list[Point]] = lambda: readings() + gate_events() + alerts()  # noqa: E731


@pytest.fixture
def influx_reader(influxdb1: InfluxDB1Server) -> FrameReader:
    store = InfluxDB1Store("127.0.0.1", influxdb1.port, DATABASE)
    points = POINTS()
    for i in range(0, len(points), 2000):
        store.write(points[i:i + 2000])
    store.close()
    return reader_from_url(influxdb1.url_for(DATABASE))


@pytest.fixture
def sqlite_reader(tmp_path: Path) -> FrameReader:
    store = SqliteStore(tmp_path / "store.db")
    store.write(POINTS())
    store.close()
    return SqliteReader(tmp_path / "store.db")


class TestInfluxDB1Reader:
    def test_frames_equal_the_sqlite_frames(self, influx_reader: FrameReader, sqlite_reader: FrameReader) -> None:
        """Every measurement reads back with the same rows, times, tags ('' where absent) and values."""
        start, end = MIDNIGHT - timedelta(days=1), MIDNIGHT + timedelta(days=1)
        for measurement in ("air_quality", "gate_event", "alert"):
            influx, sqlite = (r.read_frame(measurement, start, end) for r in (influx_reader, sqlite_reader))
            assert len(influx) == len(sqlite) > 0
            assert set(influx.columns) == set(sqlite.columns)
            key = ["time", *(c for c in ("station", "gate", "alert_id") if c in sqlite.columns)]
            influx, sqlite = (f.sort_values(key, ignore_index=True)[sorted(f.columns)] for f in (influx, sqlite))
            if "granted" in sqlite.columns:  # SQLite keeps booleans as 1/0
                sqlite["granted"] = sqlite["granted"].astype(bool)
                influx["granted"] = influx["granted"].astype(bool)
            pd.testing.assert_frame_equal(influx, sqlite, check_dtype=False)

    def test_the_report_from_influxdb_equals_the_report_from_sqlite(
        self, influx_reader: FrameReader, sqlite_reader: FrameReader
    ) -> None:
        """daily_report gives the same tables whichever store it reads."""
        influx, sqlite = (daily_report(r, PARK, DAY, SHANGHAI) for r in (influx_reader, sqlite_reader))
        for name in TABLES:
            pd.testing.assert_frame_equal(getattr(influx, name), getattr(sqlite, name), check_dtype=False,
                                          obj=name)

    def test_a_missing_measurement_reads_as_no_rows(self, influx_reader: FrameReader) -> None:
        """A measurement the database never had gives an empty frame."""
        frame = influx_reader.read_frame("device_status", MIDNIGHT, MIDNIGHT + timedelta(hours=1))
        assert frame.empty and list(frame.columns) == ["time"]

    def test_a_missing_database_is_a_permanent_store_error(self, influxdb1: InfluxDB1Server) -> None:
        """Reading a database that does not exist says so, and is not retried."""
        reader = InfluxDB1Reader("127.0.0.1", influxdb1.port, "nowhere")
        with pytest.raises(StoreError, match="database not found") as caught:
            reader.read_frame("air_quality", MIDNIGHT, MIDNIGHT + timedelta(hours=1))
        assert not caught.value.retryable

    def test_large_answers_come_in_chunks(self, influx_reader: FrameReader, monkeypatch: pytest.MonkeyPatch) -> None:
        """An answer larger than one chunk is read whole."""
        chunks: list[int] = []
        real = readers._chunks
        monkeypatch.setattr(readers, "CHUNK_ROWS", 500)
        monkeypatch.setattr(readers, "_chunks", lambda text: chunks.append(len(real(text))) or real(text))
        frame = influx_reader.read_frame("air_quality", MIDNIGHT, MIDNIGHT + timedelta(days=1))
        assert len(frame) == 2 * 24 * 60 + 10 + 1  # S1 and S2 every minute, S1's flagged extras, X of another park
        assert chunks[0] >= 6
