"""Rules judge readings in event time: at, just below and just above their limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from ingest.errors import ConfigError
from ingest.models import AirReading, DeviceStatus
from rules.config import Park, compile_rules, parse_rules
from rules.engine import RuleEngine
from rules.signals import RecordingSink

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)


def engine(*rules: dict[str, Any], park: Park | None = None, **top: Any) -> tuple[RuleEngine, RecordingSink]:
    parsed = parse_rules({"rule": list(rules), **top})
    sink = RecordingSink()
    eng = RuleEngine(compile_rules(parsed, park or Park(TZ, ("ST01", "ST02"))), sink, tz=TZ,
                     lateness=parsed.lateness, maintenance=parsed.maintenance)
    return eng, sink


def feed(eng: RuleEngine, series: list[tuple[float, float]], *, name: str = "pm25", station: str = "ST01",
         flag: str = "N") -> None:
    """Feed (seconds after T0, value) readings of one value."""
    for seconds, value in series:
        at = T0 + timedelta(seconds=seconds)
        reading = AirReading(ts=at, values={name: value}, flags={name: flag}, station=station)
        eng.process(reading, at)


PM25 = {"type": "threshold", "name": "pm25_high", "value": "pm25",
        "levels": [{"severity": "warning", "above": 75, "clear": 65},
                   {"severity": "critical", "above": 150, "clear": 130}]}


class TestThreshold:
    def test_a_value_exactly_at_the_limit_does_not_fire(self) -> None:
        """75 with a limit of 75 is not above it."""
        eng, sink = engine(PM25)
        feed(eng, [(0, 75.0)])
        assert sink.signals == []

    def test_just_above_the_limit_fires_at_once_without_for(self) -> None:
        """75.01 fires the warning level when no `for` is set."""
        eng, sink = engine(PM25)
        feed(eng, [(0, 75.01)])
        assert sink.states() == [("pm25_high", "ST01", "firing", "warning")]
        assert sink.signals[0].threshold == 75 and sink.signals[0].value == 75.01

    def test_hysteresis_keeps_firing_between_clear_and_limit(self) -> None:
        """Between clear (65) and limit (75) the alert stays; at 65 it resolves."""
        eng, sink = engine(PM25)
        feed(eng, [(0, 80), (60, 70), (120, 65.01), (180, 65)])
        assert [s[2] for s in sink.states()] == ["firing", "resolved"]
        assert sink.signals[1].at == T0 + timedelta(seconds=180)

    def test_for_duration_gives_pending_then_firing(self) -> None:
        """With for_s=300 a crossing is pending, and fires once 300 s of readings stayed above."""
        eng, sink = engine({**PM25, "for_s": 300})
        feed(eng, [(0, 80), (120, 90), (299, 85)])
        assert [s[2] for s in sink.states()] == ["pending"]
        feed(eng, [(300, 85)])
        assert [s[2] for s in sink.states()] == ["pending", "firing"]

    def test_a_crossing_that_does_not_last_resolves_its_pending(self) -> None:
        """Dropping back before `for` has passed ends the pending condition without firing."""
        eng, sink = engine({**PM25, "for_s": 300})
        feed(eng, [(0, 80), (100, 60), (400, 60)])
        assert [s[2] for s in sink.states()] == ["pending", "resolved"]

    def test_n_consecutive_readings(self) -> None:
        """count=3 fires on the third consecutive reading above, and a dip restarts the count."""
        eng, sink = engine({**PM25, "count": 3})
        feed(eng, [(0, 80), (1, 80), (2, 70), (3, 80), (4, 80)])
        assert "firing" not in [s[2] for s in sink.states()]
        feed(eng, [(5, 80)])
        assert sink.states()[-1] == ("pm25_high", "ST01", "firing", "warning")

    def test_severity_rises_and_falls_within_one_alert(self) -> None:
        """Crossing the critical level raises the severity; dropping under its clear lowers it again."""
        eng, sink = engine(PM25)
        feed(eng, [(0, 80), (60, 151), (120, 140), (180, 129), (240, 60)])
        assert [(s[2], s[3]) for s in sink.states()] == [
            ("firing", "warning"), ("firing", "critical"), ("firing", "warning"), ("resolved", "warning")]

    def test_clear_delay_holds_against_flapping(self) -> None:
        """With clear_for_s=120 a short dip below clear does not resolve."""
        eng, sink = engine({**PM25, "clear_for_s": 120})
        feed(eng, [(0, 80), (60, 60), (120, 80), (180, 60), (299, 60)])
        assert [s[2] for s in sink.states()] == ["firing"]
        feed(eng, [(300, 60)])
        assert [s[2] for s in sink.states()] == ["firing", "resolved"]

    def test_direction_below(self) -> None:
        """A `below` rule fires when the value falls under the limit (e.g. oxygen deficiency)."""
        rule = {"type": "threshold", "name": "o2_low", "value": "o2", "direction": "below",
                "levels": [{"severity": "critical", "above": 19.5, "clear": 20.0}]}
        eng, sink = engine(rule)
        feed(eng, [(0, 20.9), (1, 19.5), (2, 19.4), (3, 19.9), (4, 20.0)], name="o2")
        assert [s[2] for s in sink.states()] == ["firing", "resolved"]

    def test_values_flagged_invalid_count_for_nothing(self) -> None:
        """A reading flagged M, C, D, F or B neither fires nor clears."""
        eng, sink = engine(PM25)
        feed(eng, [(0, 500)], flag="C")
        assert sink.signals == []

    def test_stations_are_judged_separately(self) -> None:
        """Each station has its own alert."""
        eng, sink = engine(PM25)
        feed(eng, [(0, 80)], station="ST01")
        feed(eng, [(0, 80)], station="ST02")
        assert [s[1] for s in sink.states()] == ["ST01", "ST02"]

    def test_restart_in_the_middle_of_a_for_duration(self) -> None:
        """State survives a restart: the `for` that began before it completes after it, on time."""
        eng, sink = engine({**PM25, "for_s": 300})
        feed(eng, [(0, 80), (200, 80)])
        assert [s[2] for s in sink.states()] == ["pending"]
        saved = json.loads(json.dumps(eng.snapshot()))
        eng2, sink2 = engine({**PM25, "for_s": 300})
        eng2.restore(saved)
        feed(eng2, [(299, 80)])
        assert sink2.signals == []
        feed(eng2, [(300, 80)])
        assert sink2.states() == [("pm25_high", "ST01", "firing", "warning")]

    def test_the_saved_state_of_a_station_keeps_its_format(self) -> None:
        """Each station's saved track has the keys `restore` reads, as `dataclasses.asdict` wrote them
        before, so state files of earlier versions and of this one are read alike."""
        eng, _ = engine({**PM25, "for_s": 300})
        feed(eng, [(0, 80)])
        [track] = eng.snapshot()["rules"]["pm25_high"].values()
        assert set(track) == {"level", "since", "count", "announced", "clear_since"}
        assert track["level"] == -1 and len(track["since"]) == len(track["count"]) == len(PM25["levels"])


class TestRateOfChange:
    RULE: ClassVar[dict[str, Any]] = {
        "type": "rate_of_change", "name": "pm25_rising", "value": "pm25", "change": 50, "window_s": 600}

    def test_rise_of_exactly_the_change_does_not_fire(self) -> None:
        """A rise of 50 within 10 minutes is not more than 50."""
        eng, sink = engine(self.RULE)
        feed(eng, [(0, 10), (300, 60)])
        assert sink.signals == []

    def test_rise_beyond_change_within_the_window_fires_and_resolves(self) -> None:
        """A rise of 50.5 within the window fires; once the window no longer holds the rise, it resolves."""
        eng, sink = engine(self.RULE)
        feed(eng, [(0, 10), (300, 60.5), (1000, 61)])
        assert [s[2] for s in sink.states()] == ["firing", "resolved"]

    def test_rise_spread_over_more_than_the_window_does_not_fire(self) -> None:
        """The same rise over 11 minutes is too slow."""
        eng, sink = engine(self.RULE)
        feed(eng, [(0, 10), (660, 70)])
        assert sink.signals == []


class TestDevices:
    def test_a_listed_station_that_never_reported_goes_silent(self) -> None:
        """A station in the list that has sent nothing for timeout_s fires, counted from the first tick."""
        eng, sink = engine({"type": "silent", "name": "station_silent", "timeout_s": 300})
        eng.tick(T0)
        feed(eng, [(100, 1)], station="ST01")
        eng.tick(T0 + timedelta(seconds=300))
        assert sink.signals == []
        eng.tick(T0 + timedelta(seconds=301))
        assert sink.states() == [("station_silent", "ST02", "firing", "major")]
        feed(eng, [(400, 1)], station="ST02")
        assert sink.states()[-1][:3] == ("station_silent", "ST02", "resolved")

    def test_offline_status_fires_and_online_resolves(self) -> None:
        """A retained status (or will) saying offline fires; online again resolves."""
        eng, sink = engine({"type": "offline", "name": "device_offline"})
        eng.process(DeviceStatus(online=False, kind="gate", device="G1"), T0)
        eng.process(DeviceStatus(online=True, kind="gate", device="G1"), T0 + timedelta(seconds=5))
        assert [s[2] for s in sink.states()] == ["firing", "resolved"]


class TestSensorFaults:
    def test_flatline(self) -> None:
        """A value that does not move for duration_s fires; any movement resolves."""
        eng, sink = engine({"type": "flatline", "name": "pm25_stuck", "value": "pm25", "duration_s": 3600})
        feed(eng, [(0, 42), (1800, 42), (3599, 42)])
        assert sink.signals == []
        feed(eng, [(3600, 42), (3700, 43)])
        assert [s[2] for s in sink.states()] == ["firing", "resolved"]

    def test_physical_range(self) -> None:
        """rh 100 is in range, 100.5 is out of it; back in range resolves."""
        eng, sink = engine({"type": "range", "name": "rh_range", "value": "rh", "min": 0, "max": 100})
        feed(eng, [(0, 100), (1, 100.5), (2, 99)], name="rh")
        assert [s[2] for s in sink.states()] == ["firing", "resolved"]

    def test_fault_flag(self) -> None:
        """A value flagged D (instrument fault) fires; the same value flagged N resolves."""
        eng, sink = engine({"type": "flag", "name": "instrument_fault"})
        feed(eng, [(0, 1)], flag="D")
        feed(eng, [(60, 1)], flag="N")
        assert [s[2] for s in sink.states()] == ["firing", "resolved"]


class TestEngine:
    def test_late_readings_neither_fire_nor_clear(self) -> None:
        """A reading older than the lateness behind the station's newest is ignored by the rules."""
        eng, sink = engine(PM25, lateness_s=600)
        feed(eng, [(1000, 80)])
        feed(eng, [(399, 10)])
        assert [s[2] for s in sink.states()] == ["firing"] and eng.late == 1
        feed(eng, [(400, 10)])
        assert [s[2] for s in sink.states()] == ["firing", "resolved"]

    def test_maintenance_window_raises_only_a_notice(self) -> None:
        """Inside a maintenance window a station raises a notice, not an alert."""
        window = {"stations": ["ST01"], "start": T0.isoformat(), "end": (T0 + timedelta(hours=1)).isoformat()}
        eng, sink = engine(PM25, maintenance=[window])
        feed(eng, [(0, 500), (60, 500)])
        assert sink.states() == [("maintenance", "ST01", "notice", "info")]
        feed(eng, [(3600, 500)])
        assert [s[:3] for s in sink.states()[1:]] == [("maintenance", "ST01", "notice"),
                                                      ("pm25_high", "ST01", "firing")]

    def test_daily_maintenance_window_in_park_time(self) -> None:
        """daily = "08:00-09:00" is read in the park's time zone (00:00 UTC is 08:00 in Shanghai)."""
        eng, sink = engine(PM25, maintenance=[{"stations": ["*"], "daily": "08:00-09:00"}])
        feed(eng, [(0, 500)])
        assert [s[2] for s in sink.states()] == ["notice"]

    def test_a_failing_rule_does_not_stop_the_others(self) -> None:
        """A rule that raises is skipped; the rules after it still judge the event."""
        eng, sink = engine(PM25)

        class Broken:
            name = "broken"

            def observe(self, event: object, at: datetime) -> list[Any]:
                raise RuntimeError("bug")

        eng.rules.insert(0, Broken())  # type: ignore[arg-type]
        feed(eng, [(0, 80)])
        assert sink.states() == [("pm25_high", "ST01", "firing", "warning")] and eng.errors == 1


class TestRulesFile:
    def test_bad_rule_names_its_key(self) -> None:
        """A rule with levels out of order is refused naming rule[0]."""
        bad = {**PM25, "levels": [{"above": 150}, {"above": 75}]}
        with pytest.raises(ConfigError) as exc:
            parse_rules({"rule": [bad]})
        assert exc.value.key.startswith("rules: rule[0]")

    def test_unknown_rule_type(self) -> None:
        """A type that is not registered is refused."""
        with pytest.raises(ConfigError):
            parse_rules({"rule": [{"type": "magic", "name": "x"}]})

    def test_duplicate_names(self) -> None:
        """Two rules with one name are refused."""
        with pytest.raises(ConfigError, match="unique"):
            parse_rules({"rule": [PM25, PM25]})

    def test_clear_beyond_the_limit_is_refused(self) -> None:
        """A clear level above the limit (for `above`) would never end the alert: refused."""
        with pytest.raises(ConfigError, match="hysteresis"):
            parse_rules({"rule": [{**PM25, "levels": [{"above": 75, "clear": 80}]}]})


class TestMaintenanceAndTicks:
    WINDOW: ClassVar[dict[str, Any]] = {"stations": ["ST01"], "start": T0.isoformat(),
                                         "end": (T0 + timedelta(hours=1)).isoformat()}
    SILENT: ClassVar[dict[str, Any]] = {"type": "silent", "name": "silent", "devices": ["ST01"], "timeout_s": 300}

    def test_silence_that_ends_inside_the_window_is_never_heard_of(self) -> None:
        """A station silent during its maintenance and back before the end raises nothing."""
        eng, sink = engine(self.SILENT, maintenance=[self.WINDOW])
        eng.tick(T0)
        eng.tick(T0 + timedelta(minutes=10))
        feed(eng, [(1800, 1.0), (3500, 1.0), (3700, 1.0)])
        eng.tick(T0 + timedelta(seconds=3800))
        assert [s for s in sink.states() if s[0] == "silent"] == []

    def test_silence_that_outlasts_the_window_is_raised_when_it_ends(self) -> None:
        """A station that falls silent in maintenance and stays silent alerts once the window is over."""
        eng, sink = engine(self.SILENT, maintenance=[self.WINDOW])
        eng.tick(T0)
        eng.tick(T0 + timedelta(minutes=10))
        assert sink.signals == []
        eng.tick(T0 + timedelta(hours=1, seconds=5))
        assert [(s.rule, s.state, s.at) for s in sink.signals] == [
            ("silent", "firing", T0 + timedelta(hours=1, seconds=5))]
