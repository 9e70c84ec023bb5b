"""StationAverages: hourly, daily, 8 h and daily max 8 h statistics with their validity, in event time."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.averages import (
    DailyMax8h,
    DailyMean,
    EightHourMean,
    Emitted,
    HourlyMean,
    LateReading,
    StationAverages,
    ValidityPolicy,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 3, 2, tzinfo=SHANGHAI)  # local midnight
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def averages(**policy: Any) -> StationAverages:
    return StationAverages("S1", SHANGHAI, ValidityPolicy(**policy))


def feed_hour(avg: StationAverages, start: datetime, name: str, value: float, minutes: int = 60) -> list[Emitted]:
    """One reading per minute in the first `minutes` minutes of the hour starting at `start`."""
    out: list[Emitted] = []
    for m in range(minutes):
        out += avg.add(start + m * MINUTE, name, value)
    return out


def feed_hours(avg: StationAverages, hours: Iterable[int], name: str, value: float = 10.0) -> list[Emitted]:
    """Full hours of data at the given hour offsets from DAY."""
    out: list[Emitted] = []
    for h in hours:
        out += feed_hour(avg, DAY + h * HOUR, name, value)
    return out


def of(kind: type, items: Sequence[Emitted]) -> list[Any]:
    """The items of one kind, in order."""
    return [item for item in items if isinstance(item, kind)]


class TestHourlyMean:
    @pytest.mark.parametrize(("minutes", "valid"), [(44, False), (45, True), (60, True)])
    def test_an_hour_needs_45_minutes(self, minutes: int, valid: bool) -> None:
        """An hourly mean is valid with readings in at least 45 distinct minutes of the hour."""
        avg = averages()
        out = feed_hour(avg, DAY, "pm25", 30.0, minutes) + list(avg.advance(DAY + 2 * HOUR))
        [mean] = of(HourlyMean, out)
        assert (mean.minutes, mean.valid, mean.mean, mean.start) == (minutes, valid, 30.0, DAY)

    def test_minimum_minutes_is_a_parameter(self) -> None:
        """The minimum coverage of an hour is configurable."""
        avg = averages(min_minutes_per_hour=30)
        out = feed_hour(avg, DAY, "pm25", 30.0, 30) + list(avg.advance(DAY + 2 * HOUR))
        assert of(HourlyMean, out)[0].valid

    def test_minutes_are_counted_distinct(self) -> None:
        """Many readings within the same 30 minutes cover 30 minutes, not more."""
        avg = averages()
        for m in range(90):
            avg.add(DAY + (m % 30) * MINUTE + timedelta(seconds=10 * (m // 30)), "pm25", 10.0)
        [mean] = of(HourlyMean, avg.advance(DAY + 2 * HOUR))
        assert (mean.minutes, mean.valid) == (30, False)

    def test_the_mean_is_of_the_readings(self) -> None:
        """The hourly mean is the arithmetic mean of the valid readings of the hour."""
        avg = averages()
        for m in range(60):
            avg.add(DAY + m * MINUTE, "so2", 10.0 if m % 2 else 20.0)
        assert of(HourlyMean, avg.advance(DAY + 2 * HOUR))[0].mean == 15.0

    def test_invalid_readings_do_not_count(self) -> None:
        """Readings flagged invalid count neither in the mean nor in the minutes."""
        avg = averages()
        for m in range(60):
            avg.add(DAY + m * MINUTE, "pm25", 30.0 if m < 44 else 9999.0, valid=m < 44)
        [mean] = of(HourlyMean, avg.advance(DAY + 2 * HOUR))
        assert (mean.mean, mean.minutes, mean.valid) == (30.0, 44, False)

    def test_untracked_names_are_ignored(self) -> None:
        """Values that are not tracked pollutants (wind_dir) give no statistics but move event time on."""
        avg = averages()
        avg.add(DAY, "pm25", 1.0)
        out = avg.add(DAY + 2 * HOUR, "wind_dir", 270.0)
        assert [type(i) for i in out] == [HourlyMean]

    def test_out_of_order_within_the_open_hour(self) -> None:
        """Readings of the open hour may come in any order."""
        avg = averages()
        for m in reversed(range(50)):
            avg.add(DAY + m * MINUTE, "no2", float(m))
        [mean] = of(HourlyMean, avg.advance(DAY + 2 * HOUR))
        assert (mean.minutes, mean.mean) == (50, 24.5)

    def test_an_hour_closes_after_the_lateness(self) -> None:
        """An hour is emitted once event time passes its end by the lateness (default 10 minutes)."""
        avg = averages()
        feed_hour(avg, DAY, "pm25", 30.0)
        assert avg.advance(DAY + HOUR + 9 * MINUTE) == ()
        assert of(HourlyMean, avg.advance(DAY + HOUR + 10 * MINUTE))

    def test_naive_timestamps_are_refused(self) -> None:
        """A timestamp without a time zone is a ValueError."""
        with pytest.raises(ValueError, match="timezone-aware"):
            averages().add(datetime(2026, 3, 2, 8), "pm25", 1.0)


class TestLateReadings:
    def test_a_reading_for_a_closed_hour_is_late(self) -> None:
        """A reading for an hour already closed is returned as late and not counted."""
        avg = averages()
        feed_hour(avg, DAY, "pm25", 30.0)
        avg.add(DAY + HOUR + 30 * MINUTE, "pm25", 30.0)
        late = avg.add(DAY + 59 * MINUTE + timedelta(seconds=30), "pm25", 9999.0)
        assert late == (LateReading("S1", "pm25", DAY + 59 * MINUTE + timedelta(seconds=30), 9999.0, DAY + HOUR),)
        hour_two = of(HourlyMean, avg.advance(DAY + 3 * HOUR))
        assert [m.mean for m in hour_two] == [30.0]

    def test_a_reading_within_the_lateness_counts(self) -> None:
        """A reading for the previous hour that arrives within the lateness still counts."""
        avg = averages(lateness=timedelta(minutes=10))
        feed_hour(avg, DAY, "pm25", 30.0, minutes=44)
        avg.add(DAY + HOUR + 5 * MINUTE, "pm25", 30.0)
        assert avg.add(DAY + 50 * MINUTE, "pm25", 30.0) == ()
        first = of(HourlyMean, avg.advance(DAY + 3 * HOUR))[0]
        assert (first.start, first.minutes, first.valid) == (DAY, 45, True)

    def test_zero_lateness_closes_at_the_hour(self) -> None:
        """With no lateness, an hour closes as soon as a reading of the next hour arrives."""
        avg = averages(lateness=timedelta(0))
        feed_hour(avg, DAY, "pm25", 30.0)
        assert of(HourlyMean, avg.add(DAY + HOUR, "pm25", 1.0))
        assert isinstance(avg.add(DAY + 59 * MINUTE, "pm25", 1.0)[0], LateReading)


class TestDailyMean:
    @pytest.mark.parametrize(("hours", "valid"), [(19, False), (20, True), (24, True)])
    def test_a_day_needs_20_valid_hours(self, hours: int, valid: bool) -> None:
        """A daily mean is valid with at least 20 valid hourly means in the day."""
        avg = averages()
        out = feed_hours(avg, range(hours), "pm25", 40.0) + list(avg.advance(DAY + 25 * HOUR))
        [day] = of(DailyMean, out)
        assert (day.day, day.hours, day.valid, day.mean) == (date(2026, 3, 2), hours, valid, 40.0)

    def test_the_daily_mean_is_of_the_hourly_means(self) -> None:
        """The daily mean is the mean of the valid hourly means, each hour weighing the same."""
        avg = averages()
        feed_hours(avg, range(12), "so2", 10.0)
        feed_hour(avg, DAY + 12 * HOUR, "so2", 1000.0, minutes=30)  # invalid hour: left out
        feed_hours(avg, range(13, 24), "so2", 20.0)
        [day] = of(DailyMean, avg.advance(DAY + 25 * HOUR))
        assert (day.hours, day.mean) == (23, (12 * 10.0 + 11 * 20.0) / 23)

    def test_days_are_calendar_days_in_the_park_time_zone(self) -> None:
        """23:30 and 00:30 Asia/Shanghai fall on two days, though both are 15:xx and 16:xx UTC of one day."""
        avg = averages(min_hours_per_day=1)
        feed_hour(avg, DAY - HOUR, "pm25", 10.0)  # 2026-03-01 23:00 local = 15:00 UTC
        feed_hour(avg, DAY, "pm25", 50.0)  # 2026-03-02 00:00 local = 16:00 UTC
        out = avg.advance(DAY + 2 * 24 * HOUR)
        assert [(d.day, d.mean) for d in of(DailyMean, out)] == [(date(2026, 3, 2), 50.0)]
        days = of(DailyMean, feed_hour(averages(min_hours_per_day=1), DAY - HOUR, "pm25", 10.0))
        assert days == []

    def test_the_day_closes_after_its_last_hour(self) -> None:
        """A day's mean is emitted when its 23:00 hour closes, at 00:10 local by default."""
        avg = averages()
        feed_hours(avg, range(24), "co", 1.0)
        assert of(DailyMean, avg.advance(DAY + 24 * HOUR + 9 * MINUTE)) == []
        assert of(DailyMean, avg.advance(DAY + 24 * HOUR + 10 * MINUTE))[0].day == date(2026, 3, 2)

    def test_a_silent_day_emits_nothing(self) -> None:
        """A day without any reading has no daily mean; the station may resume days later."""
        avg = averages()
        feed_hours(avg, range(24), "co", 1.0)
        out = feed_hours(avg, range(72, 96), "co", 2.0) + list(avg.advance(DAY + 100 * HOUR))
        assert [(d.day, d.mean) for d in of(DailyMean, out)] == [(date(2026, 3, 2), 1.0), (date(2026, 3, 5), 2.0)]


class TestEightHourMean:
    @pytest.mark.parametrize(("hours", "valid"), [(5, False), (6, True), (8, True)])
    def test_an_8h_window_needs_6_valid_hours(self, hours: int, valid: bool) -> None:
        """An O3 8 h mean is valid with at least 6 valid hourly means in the window."""
        avg = averages()
        out = feed_hours(avg, range(hours), "o3", 100.0) + list(avg.advance(DAY + 9 * HOUR))
        window = next(w for w in of(EightHourMean, out) if w.start == DAY)
        assert (window.hours, window.valid, window.mean, window.end) == (hours, valid, 100.0, DAY + 8 * HOUR)

    def test_the_window_mean_is_of_its_hourly_means(self) -> None:
        """The 8 h mean is the mean of the valid hourly means of the 8 hours up to the one that closed."""
        avg = averages()
        out = feed_hours(avg, range(8), "o3", 0.0)
        for h in range(8):
            out += feed_hour(avg, DAY + (8 + h) * HOUR, "o3", 80.0)
        out += avg.advance(DAY + 17 * HOUR)
        window = next(w for w in of(EightHourMean, out) if w.start == DAY + 4 * HOUR)
        assert (window.mean, window.hours) == (40.0, 8)

    def test_only_ozone_has_8h_means(self) -> None:
        """8 h means are computed for O3 only."""
        avg = averages()
        out = feed_hours(avg, range(8), "pm25") + list(avg.advance(DAY + 9 * HOUR))
        assert of(EightHourMean, out) == []


class TestDailyMax8h:
    def o3_hours(self, last_hour: int, **policy: Any) -> DailyMax8h:
        """O3 from 08:00 until `last_hour` (hours after midnight, may pass 24), rising by 1 each hour."""
        avg = averages(**policy)
        out: list[Emitted] = []
        for h in range(8, last_hour + 1):
            out += feed_hour(avg, DAY + h * HOUR, "o3", float(h))
        out += avg.advance(DAY + 3 * 24 * HOUR)
        [mda8] = of(DailyMax8h, out)
        return mda8

    def test_14_valid_windows_make_a_valid_day(self) -> None:
        """Windows starting 08:00-23:00: data from 08:00 to 02:59 next day gives 14 valid windows: valid."""
        mda8 = self.o3_hours(26, mda8_window_starts=range(8, 24))
        assert (mda8.day, mda8.windows, mda8.valid) == (date(2026, 3, 2), 14, True)
        assert mda8.value == (21 + 22 + 23 + 24 + 25 + 26) / 6  # window 21:00-05:00: hours 21..26 valid

    def test_13_valid_windows_do_not(self) -> None:
        """Windows starting 08:00-23:00: data until 01:59 gives 13 valid windows: not valid, maximum still given."""
        mda8 = self.o3_hours(25, mda8_window_starts=range(8, 24))
        assert (mda8.windows, mda8.valid) == (13, False)
        assert mda8.value == (20 + 21 + 22 + 23 + 24 + 25) / 6  # window 20:00-04:00: hours 20..25 valid

    def test_default_windows_end_by_midnight(self) -> None:
        """By default (HJ 663: 8 h means ending 08:00..24:00) the 17 windows start 00:00-16:00 within the day."""
        avg = averages(min_windows_per_day=17)
        out = feed_hours(avg, range(24), "o3", 50.0)
        [mda8] = of(DailyMax8h, out + list(avg.advance(DAY + 24 * HOUR + 10 * MINUTE)))
        assert (mda8.day, mda8.windows, mda8.valid, mda8.value) == (date(2026, 3, 2), 17, True, 50.0)

    def test_other_window_reading_completes_next_morning(self) -> None:
        """With windows starting 08:00-23:00 the day's maximum is emitted when 06:00-07:00 next day closes."""
        avg = averages(mda8_window_starts=range(8, 24))
        feed_hours(avg, range(8, 31), "o3", 50.0)
        assert of(DailyMax8h, avg.advance(DAY + 31 * HOUR + 9 * MINUTE)) == []
        [mda8] = of(DailyMax8h, avg.advance(DAY + 31 * HOUR + 10 * MINUTE))
        assert (mda8.windows, mda8.valid) == (16, True)


class TestMemory:
    def test_state_stays_bounded(self) -> None:
        """After three days of minute data the state holds at most 8 hourly means and 2 open hours per pollutant."""
        avg = averages()
        for h in range(72):
            feed_hour(avg, DAY + h * HOUR, "o3", 60.0)
            feed_hour(avg, DAY + h * HOUR, "pm25", 30.0)
        for series in avg.snapshot()["series"].values():
            assert len(series["means"]) <= 8
            assert len(series["open"]) <= 2


class TestSnapshot:
    def test_restore_refuses_another_station(self) -> None:
        """A snapshot of another station is refused."""
        snapshot = averages().snapshot()
        with pytest.raises(ValueError, match="S1"):
            StationAverages("S2").restore(snapshot)

    def test_new_pollutants_start_empty(self) -> None:
        """A pollutant added after the snapshot starts empty; one no longer tracked is dropped."""
        old = StationAverages("S1", pollutants=("pm25", "so2"))
        feed_hour(old, DAY, "so2", 5.0, 30)
        new = StationAverages("S1", pollutants=("pm25", "o3"))
        new.restore(json.loads(json.dumps(old.snapshot())))
        assert set(new.snapshot()["series"]) == {"pm25", "o3"}

    def test_restore_mid_hour_continues_the_hour(self) -> None:
        """A snapshot taken mid-hour and restored gives the same hourly mean as an uninterrupted run."""
        first = averages()
        feed_hour(first, DAY, "pm25", 30.0, 30)
        second = averages()
        second.restore(json.loads(json.dumps(first.snapshot())))
        for m in range(30, 60):
            second.add(DAY + m * MINUTE, "pm25", 60.0)
        [mean] = of(HourlyMean, second.advance(DAY + 2 * HOUR))
        assert (mean.minutes, mean.mean, mean.valid) == (60, 45.0, True)

    @settings(max_examples=60, deadline=None)
    @given(
        readings=st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=3 * 24 * 60),  # minute offset from DAY
                st.sampled_from(["o3", "pm25", "temp"]),
                st.floats(min_value=0, max_value=500, allow_nan=False),
                st.booleans(),  # valid
            ),
            max_size=400,
        ),
        split=st.floats(min_value=0, max_value=1),
        sort=st.booleans(),
    )
    def test_snapshot_restore_equals_uninterrupted_run(
        self, readings: list[tuple[int, str, float, bool]], split: float, sort: bool
    ) -> None:
        """Feeding readings with a snapshot and restore in between gives exactly the uninterrupted output."""
        if sort:
            readings = sorted(readings)
        policy = ValidityPolicy(min_minutes_per_hour=3, min_hours_per_day=2, min_hours_per_8h=2, min_windows_per_day=2)
        end = DAY + 4 * 24 * HOUR

        def run(chunk: list[tuple[int, str, float, bool]], avg: StationAverages) -> list[Emitted]:
            out: list[Emitted] = []
            for minute, name, value, valid in chunk:
                out += avg.add(DAY + minute * MINUTE, name, value, valid)
            return out

        whole = StationAverages("S1", SHANGHAI, policy)
        expected = run(readings, whole) + list(whole.advance(end))

        cut = int(len(readings) * split)
        before = StationAverages("S1", SHANGHAI, policy)
        got = run(readings[:cut], before)
        after = StationAverages("S1", SHANGHAI, policy)
        after.restore(json.loads(json.dumps(before.snapshot())))
        got += run(readings[cut:], after) + list(after.advance(end))

        assert got == expected
        assert after.snapshot() == whole.snapshot()


class TestWholeReadings:
    def test_add_reading_gives_what_add_gives_per_value(self) -> None:
        """Adding a reading's values at once completes the same statistics as adding them one by one, in
        local time or in UTC (the service's readings, which take a shorter way)."""
        one, many, utc = averages(), averages(), averages()
        out_one: list[Emitted] = []
        out_many: list[Emitted] = []
        out_utc: list[Emitted] = []
        for m in range(0, 150):
            ts = DAY + m * MINUTE
            values = {"pm25": 30.0 + m % 7, "o3": 60.0, "so2": 5.0, "rh": 50.0}
            for name, value in values.items():
                out_one += one.add(ts, name, value, valid=name != "so2")
            out_many += many.add_reading(ts, values, {"so2"})
            out_utc += utc.add_reading(ts.astimezone(UTC), values, {"so2"})
        assert out_one == out_many == out_utc
        assert one.snapshot() == many.snapshot() == utc.snapshot()
