"""The daily report: tables computed from a SQLite store holding one known day of two stations and gates."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from config.cli import main
from ingest.errors import ConfigError, StoreError
from ingest.points import FieldValue, Point
from ingest.stores.readers import InfluxDB1Reader, SqliteReader, reader_from_url
from ingest.stores.sqlite import SqliteStore
from rules.averages import DailyMax8h, DailyMean, StationAverages
from rules.report import DailyReport, daily_report, render_html, write_csv
from rules.report.daily import TABLES

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 26)  # HJ 633-2026, GB 3095-2026 transition stage
MIDNIGHT = datetime(2026, 11, 26, tzinfo=SHANGHAI)
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)
PARK = "p1"

# Station S1 (every minute of every hour unless said otherwise):
#   pm25 30 + hour             daily mean 41.5, IAQI 63
#   pm10 60                    IAQI 58; in hour 3, ten extra minutes of 999 flagged M (not counted)
#   o3   250 in hours 12-15, 100 otherwise: 4 hours over the 1 h limit (200); max 8 h (175) over 160, IAQI 114
#   no2  flagged D in hours 0-3, 230 in hour 20, 50 otherwise: 20 valid hours, mean 59, IAQI 74
#   so2  10, co 0.8 (mg/m³)
# Station S2: pm25 20; pm10 40 with only 44 minutes in hour 10; o3 60; no2 30 flagged M in hours 0-4 (19 valid
# hours: no valid daily mean, so the AQI of 40 is "NA"). Station X of another park is left out.


def s1(hour: int, minute: int) -> dict[str, FieldValue]:
    no2 = 230.0 if hour == 20 else 50.0
    fields: dict[str, FieldValue] = {"pm25": 30.0 + hour, "pm10": 60.0, "o3": 250.0 if 12 <= hour <= 15 else 100.0,
                                     "no2": no2, "so2": 10.0, "co": 0.8}
    if hour <= 3:
        fields["no2_flag"] = "D"
    return fields


def s2(hour: int, minute: int) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {"pm25": 20.0, "o3": 60.0, "no2": 30.0}
    if hour != 10 or minute < 44:
        fields["pm10"] = 40.0
    if hour <= 4:
        fields["no2_flag"] = "M"
    return fields


def air(station: str, at: datetime, fields: dict[str, FieldValue], park: str = PARK, **tags: str) -> Point:
    return Point("air_quality", {"park": park, "station": station, **tags}, fields, ns(at))


def ns(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1000


def day_of_readings(station: str, values: Callable[[int, int], dict[str, FieldValue]]) -> list[Point]:
    return [air(station, MIDNIGHT + h * HOUR + m * MINUTE, values(h, m)) for h in range(24) for m in range(60)]


def gate(at: datetime, direction: str, plate: str, vehicle_class: str, *, gate_id: str = "G1",
         granted: bool = True, **hazmat: FieldValue) -> Point:
    tags = {"park": PARK, "gate": gate_id, "direction": direction, "subject": "vehicle", "vehicle_class": vehicle_class}
    fields: dict[str, FieldValue] = {"event_id": f"{plate}-{direction}-{ns(at)}", "plate": plate,
                                     "credential": "plate", "granted": granted, **hazmat}
    return Point("gate_event", tags, fields, ns(at))


def person(at: datetime, direction: str) -> Point:
    tags = {"park": PARK, "gate": "G1", "direction": direction, "subject": "person"}
    fields: dict[str, FieldValue] = {"event_id": f"p-{direction}", "person_id": "E007", "credential": "card",
                                     "granted": True}
    return Point("gate_event", tags, fields, ns(at))


def alert(at: datetime, alert_id: str, state: str, severity: str, **fields: FieldValue) -> Point:
    tags = {"park": PARK, "rule": "o3_high", "state": state, "severity": severity}
    base: dict[str, FieldValue] = {"alert_id": alert_id, "source": "S1", "started_at": "2026-11-26T12:05:00+08:00",
                                   "message": "O3 above 200", "message_zh": "臭氧超过 200"}
    return Point("alert", tags, {**base, **fields}, ns(at))


UN = {"un_number": "UN1203", "hazard_class": "3", "load_t": 20.0}


def gate_events() -> list[Point]:
    at = MIDNIGHT
    return [
        gate(at - 14 * HOUR, "in", "苏D00001", "hazmat", **UN),  # in and out the day before: not in the day
        gate(at - 12 * HOUR, "out", "苏D00001", "hazmat", **UN),
        gate(at - 2 * HOUR, "in", "苏B00001", "hazwaste", **UN),  # entered the day before, left at 02:00
        gate(at + 2 * HOUR, "out", "苏B 00001", "hazwaste", gate_id="G2", **UN),
        gate(at + 8 * HOUR, "in", "苏A12345", "hazmat", **UN),  # 08:00 to 17:30: 9.5 h, an overstay
        gate(at + 17.5 * HOUR, "out", "苏A12345", "hazmat", gate_id="G2", **UN),
        gate(at + 20 * HOUR, "in", "苏C55555", "hazmat", **UN),  # still inside at midnight: 4 h
        gate(at + 9 * HOUR, "in", "苏E11111", "truck"),
        gate(at + 10 * HOUR, "out", "苏E11111", "truck"),
        gate(at + 9.5 * HOUR, "in", "苏F1", "car"),
        gate(at + 9.6 * HOUR, "in", "苏F2", "car"),
        gate(at + 11 * HOUR, "out", "苏F1", "car"),
        gate(at + 11.5 * HOUR, "in", "苏F3", "car", granted=False),
        person(at + 7 * HOUR, "in"),
        person(at + 19 * HOUR, "out"),
    ]


def alerts() -> list[Point]:
    return [
        alert(MIDNIGHT + 12 * HOUR + 5 * MINUTE, "A1", "firing", "warning", value=250.0, threshold=200.0),
        alert(MIDNIGHT + 13 * HOUR, "A1", "firing", "major", value=260.0, threshold=200.0),
        alert(MIDNIGHT + 16 * HOUR + 10 * MINUTE, "A1", "resolved", "major", value=100.0, threshold=200.0),
        alert(MIDNIGHT - 3 * HOUR, "A0", "resolved", "critical"),  # the day before: not in the report
    ]


def readings() -> list[Point]:
    points = day_of_readings("S1", s1) + day_of_readings("S2", s2)
    points += [air("S1", MIDNIGHT + 3 * HOUR + m * MINUTE + timedelta(seconds=30), {"pm10": 999.0, "pm10_flag": "M"})
               for m in range(10)]
    points.append(air("X", MIDNIGHT + HOUR, {"pm25": 500.0}, park="other"))
    return points


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("report") / "store.db"
    store = SqliteStore(path)
    store.write(readings() + gate_events() + alerts())
    store.close()
    yield path


@pytest.fixture(scope="module")
def report(store_path: Path) -> DailyReport:
    return daily_report(SqliteReader(store_path), PARK, DAY, SHANGHAI)


def row(table: pd.DataFrame, **match: object) -> pd.Series:
    """The one row of `table` whose columns equal `match`."""
    mask = pd.Series(True, index=table.index)
    for name, value in match.items():
        mask &= table[name] == value
    found = table[mask]
    assert len(found) == 1, f"{len(found)} rows match {match}"
    return found.iloc[0]


class TestDailyMeans:
    def test_daily_means_of_the_hourly_means(self, report: DailyReport) -> None:
        """A daily mean is the mean of the valid hourly means; flagged readings count in none."""
        assert row(report.daily, station="S1", pollutant="pm25")["mean"] == 41.5
        assert row(report.daily, station="S1", pollutant="pm10")["mean"] == 60.0  # the 999s flagged M left out
        assert row(report.daily, station="S1", pollutant="no2")["mean"] == 59.0  # (19 x 50 + 230) / 20
        assert row(report.daily, station="S1", pollutant="co")["mean"] == pytest.approx(0.8)
        assert row(report.daily, station="S1", pollutant="co")["unit"] == "mg/m³"

    def test_twenty_valid_hours_make_a_valid_day_and_nineteen_do_not(self, report: DailyReport) -> None:
        """GB 3095: a daily mean needs 20 valid hours; 19 give a mean that is not valid."""
        s1_no2, s2_no2 = row(report.daily, station="S1", pollutant="no2"), row(report.daily, station="S2",
                                                                                pollutant="no2")
        assert (s1_no2["valid_hours"], bool(s1_no2["valid"])) == (20, True)
        assert (s2_no2["valid_hours"], bool(s2_no2["valid"]), s2_no2["mean"]) == (19, False, 30.0)

    def test_data_capture_is_valid_hours_of_24(self, report: DailyReport) -> None:
        """Capture rate = valid hourly means / 24; an hour with 44 minutes of data is not valid."""
        assert row(report.daily, station="S1", pollutant="pm25")["capture"] == 1.0
        assert row(report.daily, station="S1", pollutant="no2")["capture"] == 20 / 24
        assert row(report.daily, station="S2", pollutant="pm10")["valid_hours"] == 23
        assert row(report.daily, station="S2", pollutant="no2")["capture"] == 19 / 24

    def test_only_the_park_and_the_pollutants_reported(self, report: DailyReport) -> None:
        """Another park's station is left out; a station's rows are the pollutants it sent."""
        assert report.stations == ["S1", "S2"]
        assert sorted(report.daily.loc[report.daily["station"] == "S2", "pollutant"]) == ["no2", "o3", "pm10", "pm25"]

    def test_the_report_agrees_with_the_live_averages(self, store_path: Path, report: DailyReport) -> None:
        """The daily means and the O3 daily max 8 h equal what StationAverages emits for the same readings."""
        live = StationAverages("S1", SHANGHAI)
        emitted = []
        for point in sorted((p for p in readings() if p.tags["station"] == "S1"), key=lambda p: p.ts_ns):
            at = datetime.fromtimestamp(point.ts_ns / 1e9, SHANGHAI)
            values = {k: float(v) for k, v in point.fields.items() if not k.endswith("_flag")}
            emitted += live.add_reading(at, values, {n for n in values if f"{n}_flag" in point.fields})
        emitted += live.advance(MIDNIGHT + 2 * HOUR + timedelta(days=1))
        days = [s for s in emitted if isinstance(s, DailyMean) and s.day == DAY]
        assert sorted(s.pollutant for s in days) == sorted(["pm25", "pm10", "so2", "no2", "co", "o3"])
        for stat in days:
            mine = row(report.daily, station="S1", pollutant=stat.pollutant)
            assert (mine["mean"], mine["valid_hours"], bool(mine["valid"])) == pytest.approx(
                (stat.mean, stat.hours, stat.valid))
        [mda8] = [s for s in emitted if isinstance(s, DailyMax8h) and s.day == DAY]
        assert row(report.aqi, station="S1")["o3_8h"] == pytest.approx(mda8.value)
        assert row(report.aqi, station="S1")["o3_8h_windows"] == mda8.windows


class TestAqi:
    def test_daily_aqi_and_primary_pollutant(self, report: DailyReport) -> None:
        """The daily AQI (HJ 633-2026 on this day) is the largest IAQI; O3 by its daily max 8 h."""
        s1 = row(report.aqi, station="S1")
        assert s1["edition"] == "HJ 633-2026"
        assert (s1["aqi"], s1["category"], s1["colour"], s1["primary"]) == (114, "轻度污染", "#FF7E00", "o3")
        assert (s1["iaqi_pm25"], s1["iaqi_pm10"], s1["iaqi_no2"], s1["iaqi_o3"]) == (63, 58, 74, 114)
        assert (s1["iaqi_so2"], s1["iaqi_co"]) == (10, 20)  # CO 0.8 mg/m³: 20, float noise does not make it 21
        assert s1["o3_8h"] == 175.0

    def test_a_pollutant_without_a_valid_day_makes_a_low_aqi_na(self, report: DailyReport) -> None:
        """With NO2 short of 20 hours and the other IAQI at most 100, S2's AQI is NA (HJ 633 §5.3.1)."""
        s2 = row(report.aqi, station="S2")
        assert pd.isna(s2["aqi"])
        assert (s2["missing"], s2["primary"], s2["iaqi_pm10"]) == ("no2", "", 40)

    def test_hourly_aqi_of_each_hour(self, report: DailyReport) -> None:
        """Each hour has its hourly AQI (实时报) from the valid hourly means; O3 250 gives 125."""
        hour = row(report.hourly, station="S1", hour=pd.Timestamp(MIDNIGHT + 12 * HOUR))
        assert (hour["aqi"], hour["primary"], hour["colour"]) == (125, "o3", "#FF7E00")
        assert len(report.hourly) == 48

    def test_hj633_2012_days_use_the_daily_max_one_hour_o3(self, store_path: Path) -> None:
        """Before 2026-03-01 the 2012 edition applies, whose daily report also takes O3's max 1 h mean."""
        old = date(2025, 11, 26)
        path = store_path.parent / "old.db"
        store = SqliteStore(path)
        start = datetime(2025, 11, 26, tzinfo=SHANGHAI)
        store.write([air("S1", start + h * HOUR + m * MINUTE, {"o3": 250.0 if h == 12 else 100.0})
                     for h in range(24) for m in range(60)])
        store.close()
        aqi = row(daily_report(SqliteReader(path), PARK, old, SHANGHAI).aqi, station="S1")
        assert aqi["edition"] == "HJ 633-2012"
        assert (aqi["o3_1h"], aqi["aqi"]) == (250.0, 125)  # 1 h IAQI 125 beats the 8 h mean's (118.75: 66)


class TestLimits:
    def test_hours_over_the_one_hour_limit(self, report: DailyReport) -> None:
        """Hours whose valid mean is strictly above the GB 3095 1 h limit are counted."""
        o3 = row(report.limits, station="S1", pollutant="o3", averaging="1h")
        assert (o3["limit"], o3["hours_over"], o3["value"]) == (200.0, 4, 250.0)
        assert row(report.limits, station="S1", pollutant="no2", averaging="1h")["hours_over"] == 1
        assert row(report.limits, station="S1", pollutant="so2", averaging="1h")["hours_over"] == 0

    def test_daily_limits(self, report: DailyReport) -> None:
        """24 h means and O3's daily max 8 h are judged only when valid (2026 transition: PM2.5 60)."""
        assert bool(row(report.limits, station="S1", pollutant="o3", averaging="8h")["exceeded"]) is True
        pm25 = row(report.limits, station="S1", pollutant="pm25", averaging="24h")
        assert (pm25["limit"], bool(pm25["exceeded"])) == (60.0, False)
        assert pd.isna(row(report.limits, station="S2", pollutant="no2", averaging="24h")["exceeded"])
        assert "1h" not in set(report.limits.loc[report.limits["pollutant"] == "pm25", "averaging"])


class TestAlertsAndGates:
    def test_alerts_of_the_day(self, report: DailyReport) -> None:
        """One row per alert changed during the day, with its highest severity and last state."""
        assert list(report.alerts["alert_id"]) == ["A1"]
        a1 = report.alerts.iloc[0]
        assert (a1["severity"], a1["state"], a1["changes"]) == ("major", "resolved", 3)
        assert (a1["message_zh"], a1["value"]) == ("臭氧超过 200", 260.0)  # its last change before it resolved
        assert a1["started_at"] == pd.Timestamp(MIDNIGHT + 12 * HOUR + 5 * MINUTE)

    def test_traffic_by_vehicle_class(self, report: DailyReport) -> None:
        """Granted entries and exits per class; a refused car counts as denied only."""
        table = report.traffic.set_index("vehicle_class")
        assert list(table.index) == ["hazmat", "hazwaste", "truck", "car", "person"]
        assert table.loc["hazmat", ["entries", "exits", "denied"]].tolist() == [2, 1, 0]
        assert table.loc["hazwaste", ["entries", "exits"]].tolist() == [0, 1]
        assert table.loc["car", ["entries", "exits", "denied"]].tolist() == [2, 1, 1]
        assert (table.loc["person", "class_zh"], table.loc["person", "entries"]) == ("人员", 1)

    def test_hazmat_stays(self, report: DailyReport) -> None:
        """Stays pair a plate's entry with its next exit, also across midnight; over 8 h is an overstay."""
        stays = report.stays.set_index("plate")
        assert list(stays.index) == ["苏B00001", "苏A12345", "苏C55555"]
        assert stays.loc["苏B00001", "stay_h"] == 4.0
        assert stays.loc["苏B00001", "entry"] == pd.Timestamp(MIDNIGHT - 2 * HOUR)
        assert (stays.loc["苏A12345", "stay_h"], stays.loc["苏A12345", "gate_out"]) == (9.5, "G2")
        assert bool(stays.loc["苏A12345", "overstay"]) is True
        assert (stays.loc["苏C55555", "stay_h"], bool(stays.loc["苏C55555", "inside"])) == (4.0, True)
        assert stays.loc["苏C55555", "un_number"] == "UN1203"


class TestHj212HourlyData:
    def test_hourly_frames_fill_hours_without_real_time_data(self, tmp_path: Path) -> None:
        """HJ 212 hourly values (period=hour) are hourly means; daily values are not used."""
        store = SqliteStore(tmp_path / "s.db")
        points = [air("S3", MIDNIGHT + h * HOUR, {"pm25": 10.0 + h}, period="hour") for h in range(20)]
        points.append(air("S3", MIDNIGHT, {"pm25": 999.0}, period="day"))
        store.write(points)
        store.close()
        daily = daily_report(SqliteReader(tmp_path / "s.db"), PARK, DAY, SHANGHAI).daily
        assert row(daily, station="S3", pollutant="pm25")[["mean", "valid_hours"]].tolist() == [19.5, 20]


class TestOutput:
    def test_one_csv_per_table(self, report: DailyReport, tmp_path: Path) -> None:
        """write_csv writes every table; the CSV reads back with its Chinese text."""
        paths = write_csv(report, tmp_path)
        assert [p.name for p in paths] == [f"p1_2026-11-26_{name}.csv" for name in TABLES]
        alerts = pd.read_csv(tmp_path / "p1_2026-11-26_alerts.csv", encoding="utf-8-sig")
        assert alerts.loc[0, "message_zh"] == "臭氧超过 200"
        daily = pd.read_csv(tmp_path / "p1_2026-11-26_daily.csv", encoding="utf-8-sig")
        assert math.isclose(daily.loc[(daily.station == "S1") & (daily.pollutant == "no2"), "capture"].item(), 0.833)

    def test_the_page_is_one_self_contained_file(self, report: DailyReport) -> None:
        """The HTML has its plots inline (SVG) and loads nothing from elsewhere."""
        page = render_html(report)
        assert page.startswith("<!DOCTYPE html>")
        assert page.count("<svg") >= 2 * 6 + 2
        for external in ("<script", "src=", "<link", "url(", "@import", "http://", "https://"):
            assert external not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
        for text in ("p1", "2026-11-26", "#FF7E00", "轻度污染", "苏A12345", "臭氧超过 200"):
            assert text in page

    def test_text_from_the_store_is_escaped(self, tmp_path: Path) -> None:
        """Messages and plates are shown as text, never as markup."""
        store = SqliteStore(tmp_path / "h.db")
        store.write([alert(MIDNIGHT + HOUR, "A9", "firing", "info", message="<script>x()</script>"),
                     gate(MIDNIGHT + HOUR, "in", '苏<b>"1', "hazmat", **UN)])
        page = render_html(daily_report(SqliteReader(tmp_path / "h.db"), PARK, DAY, SHANGHAI))
        assert "<script" not in page and "<b>\"1" not in page
        assert "&lt;script&gt;x()&lt;/script&gt;" in page and "苏&lt;b&gt;&quot;1" in page

    def test_an_empty_day_still_renders(self, tmp_path: Path) -> None:
        """A day with nothing in the store gives empty tables and a page that says so."""
        SqliteStore(tmp_path / "e.db").write([air("S1", MIDNIGHT - timedelta(days=3), {"pm25": 1.0})])
        report = daily_report(SqliteReader(tmp_path / "e.db"), PARK, DAY, SHANGHAI)
        assert report.stations == [] and report.stays.empty and report.alerts.empty
        assert "<!DOCTYPE html>" in render_html(report)


class TestReaders:
    def test_a_missing_table_reads_as_no_rows(self, store_path: Path) -> None:
        """A measurement the store never had gives an empty frame with a time column."""
        frame = SqliteReader(store_path).read_frame("device_status", MIDNIGHT, MIDNIGHT + HOUR)
        assert frame.empty and list(frame.columns) == ["time"]

    def test_a_missing_store_file_is_a_store_error(self, tmp_path: Path) -> None:
        """A report does not create a store: a missing file is a permanent StoreError."""
        with pytest.raises(StoreError) as caught:
            SqliteReader(tmp_path / "none.db").read_frame("air_quality", MIDNIGHT, MIDNIGHT + HOUR)
        assert not caught.value.retryable
        assert not (tmp_path / "none.db").exists()

    def test_urls(self, tmp_path: Path) -> None:
        """sqlite:// and influxdb1(s):// give readers; influxdb:// (v2) is refused naming store.url."""
        assert isinstance(reader_from_url(f"sqlite://{tmp_path}/x.db"), SqliteReader)
        influx = reader_from_url("influxdb1://u:p%40w@127.0.0.1:8087/my%20db")
        assert isinstance(influx, InfluxDB1Reader)
        assert (influx.base_url, influx.database) == ("http://127.0.0.1:8087", "my db")
        https = reader_from_url("influxdb1s://127.0.0.1:8087/db")
        assert isinstance(https, InfluxDB1Reader) and https.base_url == "https://127.0.0.1:8087"
        with pytest.raises(ConfigError, match="not supported for reports") as caught:
            reader_from_url("influxdb://127.0.0.1:8086?org=o&bucket=b")
        assert caught.value.key == "store.url"

    def test_an_unreachable_influxdb_is_a_retryable_store_error(self) -> None:
        """A server that does not answer is a transient failure."""
        from tests.servers import free_port  # noqa: PLC0415

        reader = InfluxDB1Reader("127.0.0.1", free_port(), "db", timeout_s=2)
        with pytest.raises(StoreError) as caught:
            reader.read_frame("air_quality", MIDNIGHT, MIDNIGHT + HOUR)
        assert caught.value.retryable


class TestCommand:
    def test_parkwatch_report_writes_html_and_csv(self, store_path: Path, tmp_path: Path) -> None:
        """`parkwatch report --date` reads [store] url from the configuration and writes the files."""
        config = tmp_path / "parkwatch.toml"
        config.write_text(f'[park]\nid = "{PARK}"\n\n[store]\nurl = "sqlite://{store_path}"\n', encoding="utf-8")
        out = tmp_path / "out"
        assert main(["report", "--date", "2026-11-26", "--config", str(config), "--out", str(out)]) == 0
        assert (out / "p1_2026-11-26.html").is_file()
        assert len(list(out.glob("*.csv"))) == len(TABLES)

    def test_format_html_only(self, store_path: Path, tmp_path: Path) -> None:
        """--format html writes only the page."""
        config = tmp_path / "parkwatch.toml"
        config.write_text(f'[park]\nid = "{PARK}"\n\n[store]\nurl = "sqlite://{store_path}"\n', encoding="utf-8")
        assert main(["report", "--date", "2026-11-26", "--config", str(config), "--out", str(tmp_path / "o"),
                     "--format", "html"]) == 0
        assert [p.name for p in (tmp_path / "o").iterdir()] == ["p1_2026-11-26.html"]

    def test_a_missing_store_exits_1(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A store that cannot be read is reported on stderr with exit code 1."""
        config = tmp_path / "parkwatch.toml"
        config.write_text(f'[store]\nurl = "sqlite://{tmp_path}/none.db"\n', encoding="utf-8")
        assert main(["report", "--date", "2026-11-26", "--config", str(config), "--out", str(tmp_path)]) == 1
        assert "no store file" in capsys.readouterr().err
