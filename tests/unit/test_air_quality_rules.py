"""GB 3095 averages and HJ 633 AQI as rules: computed from readings, stored, and judged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ingest.models import AirReading
from ingest.points import Point
from rules.air_quality import AirQualityTracker, AqiConfig, AqiRule, AverageConfig, AverageRule
from rules.engine import RuleEngine
from rules.signals import RecordingSink

TZ = ZoneInfo("Asia/Shanghai")
H0 = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)  # 2026-11-27 00:00 in Shanghai


def run(hours: int, values: dict[str, float], *rules: object, per_hour: int = 60,
        start: datetime = H0) -> tuple[RecordingSink, list[Point]]:
    points: list[Point] = []
    tracker = AirQualityTracker("demo", TZ, on_points=points.extend)
    built = [r(tracker) for r in rules]  # type: ignore[operator]
    sink = RecordingSink()
    engine = RuleEngine([tracker, *built], sink, tz=TZ)
    for m in range(hours * per_hour + 11):  # 11 more minutes close the last hour (lateness 10 min)
        at = start + timedelta(minutes=m * 60 / per_hour)
        engine.process(AirReading(ts=at, values=values, station="ST01"), at)
    return sink, points


class TestDerivedPoints:
    def test_hourly_means_and_aqi_are_stored_at_the_end_of_the_hour(self) -> None:
        """A full hour of pm25 35 gives an hourly mean point and an hourly AQI point (IAQI 50) at 01:00."""
        _, points = run(1, {"pm25": 35.0})
        avg = [p for p in points if p.measurement == "air_quality_avg"]
        aqi = [p for p in points if p.measurement == "aqi"]
        assert avg[0].fields == {"pm25": 35.0, "pm25_valid": True} and avg[0].tags["averaging"] == "1h"
        assert avg[0].ts_ns == int((H0 + timedelta(hours=1)).timestamp()) * 10**9
        assert aqi[0].fields["aqi"] == 50 and aqi[0].fields["iaqi_pm25"] == 50
        assert aqi[0].tags["report"] == "hourly" and aqi[0].tags["edition"] == "2026"

    def test_an_hour_with_44_minutes_is_not_valid(self) -> None:
        """An hour needs 45 minutes of valid data: with 44 its mean is stored as not valid and no AQI."""
        points: list[Point] = []
        tracker = AirQualityTracker("demo", TZ, on_points=points.extend)
        engine = RuleEngine([tracker], RecordingSink(), tz=TZ)
        for m in [*range(44), 71]:
            at = H0 + timedelta(minutes=m)
            engine.process(AirReading(ts=at, values={"pm25": 35.0}, station="ST01"), at)
        assert [p.fields["pm25_valid"] for p in points if p.measurement == "air_quality_avg"] == [False]
        assert [p for p in points if p.measurement == "aqi"] == []


class TestAverageRule:
    def test_24h_mean_above_the_gb3095_limit_fires_only_when_the_day_is_valid(self) -> None:
        """PM2.5 24 h mean 61 > 60 (GB 3095-2026 transition grade II) fires once the day closes with 24 hours."""
        rule = AverageConfig(type="average", name="pm25_24h", pollutant="pm25", averaging="24h")
        sink, _ = run(24, {"pm25": 61.0}, lambda t: AverageRule(rule, t))
        assert sink.states() == [("pm25_24h", "ST01", "firing", "warning")]
        assert sink.signals[0].threshold == 60.0

    def test_24h_mean_at_the_limit_does_not_fire(self) -> None:
        """A 24 h mean of exactly 60 is not above the limit."""
        rule = AverageConfig(type="average", name="pm25_24h", pollutant="pm25", averaging="24h")
        sink, _ = run(24, {"pm25": 60.0}, lambda t: AverageRule(rule, t))
        assert sink.signals == []

    def test_hourly_mean_with_explicit_limit(self) -> None:
        """An explicit limit on the 1 h mean fires at the end of the first hour above it."""
        rule = AverageConfig(type="average", name="so2_1h", pollutant="so2", averaging="1h", limit=500)
        sink, _ = run(1, {"so2": 501.0}, lambda t: AverageRule(rule, t))
        assert sink.states() == [("so2_1h", "ST01", "firing", "warning")]


class TestAqiRule:
    def test_aqi_above_200_for_two_hours(self) -> None:
        """Hourly AQI above 200 fires when two consecutive hours are above it, not after one."""
        rule = AqiConfig(type="aqi", name="aqi_heavy", above=200, for_s=7200)
        sink, _ = run(1, {"pm25": 160.0}, lambda t: AqiRule(rule, t))
        assert sink.signals == []
        sink, _ = run(2, {"pm25": 160.0}, lambda t: AqiRule(rule, t))
        assert sink.states() == [("aqi_heavy", "ST01", "firing", "warning")]
        assert "首要污染物 pm25" in sink.signals[0].message_zh
