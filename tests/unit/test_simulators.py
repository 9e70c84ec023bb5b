"""The simulators, scenarios, clock, recording and replay: what they publish, without a broker."""

from __future__ import annotations

import itertools
import json
import re
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from config.cli import main
from ingest import hj212
from ingest.decode import Decoded, Decoder, DecodeSettings
from ingest.errors import ConfigError, Rejected
from ingest.messages import Message
from ingest.models import AirReading
from simulators.clock import ScaledClock, VirtualClock, derive_seed, parse_duration, parse_speed
from simulators.gates import PLATE_PATTERN
from simulators.publish import MemorySink, Outgoing, SharedConnector
from simulators.recording import (
    Record,
    RecordingError,
    csv_records,
    offset_to,
    read_records,
    replay,
    shift_records,
    write_records,
)
from simulators.scenario import (
    SCENARIO_DIR,
    VIRTUAL_START,
    Scenario,
    Simulation,
    default_scenario,
    load_scenario,
    scenario_from_dict,
    scenario_records,
    shipped_scenarios,
)
from simulators.stations import CORRUPTIONS, POLLUTANTS, VALUE_NAMES, Format

TZ = ZoneInfo("Asia/Shanghai")
REQUIRED_SCENARIOS = {"baseline", "plume", "gas_leak", "gate_day", "sensor_faults"}


# --------------------------------------------------------------------------------------------- helpers


def run(scenario: Scenario, *, fmt: Format | None = None, start: datetime = VIRTUAL_START) -> list[Outgoing]:
    sink = MemorySink()
    Simulation(scenario, park="demo", tz=TZ, start=start, fmt=fmt).run(VirtualClock(start), SharedConnector(sink))
    return sink.messages


@cache
def run_file(name: str, *, without_episodes: bool = False) -> tuple[Outgoing, ...]:
    scenario = load_scenario(SCENARIO_DIR / f"{name}.toml")
    if without_episodes:
        scenario = scenario.model_copy(update={"episodes": ()})
    return tuple(run(scenario))


def decoder() -> Decoder:
    return Decoder(DecodeSettings(park="demo", tz=TZ), time.time_ns)


def decode(m: Outgoing | Record) -> Decoded:
    return decoder().decode(Message(m.topic, m.payload, time.time_ns()))


def one_station(faults: Sequence[dict[str, Any]] = (), *, fmt: str = "json", hours: float = 3,
                **extra: Any) -> Scenario:
    raw = {"seed": 4, "duration": hours * 3600, "interval": 60, "format": fmt,
           "stations": [{"id": "ST01"}], "faults": list(faults), **extra}
    return scenario_from_dict(raw)


def readings(messages: Sequence[Outgoing], station: str = "ST01") -> list[dict[str, Any]]:
    """The JSON readings of one station, in order, with their offset from the start in seconds."""
    out = []
    for m in messages:
        if m.topic == f"park/demo/air/{station}/reading":
            body = json.loads(m.payload)
            body["offset"] = (datetime.fromisoformat(body["ts"]) - VIRTUAL_START).total_seconds()
            out.append(body)
    return out


def window(rows: list[dict[str, Any]], start_s: float, end_s: float) -> list[dict[str, Any]]:
    return [r for r in rows if start_s <= r["offset"] < end_s]


def outside(rows: list[dict[str, Any]], start_s: float, end_s: float) -> list[dict[str, Any]]:
    return [r for r in rows if not start_s <= r["offset"] < end_s]


def events(messages: Sequence[Outgoing]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        if m.topic.endswith("/event"):
            body = json.loads(m.payload)
            body["gate"] = m.topic.split("/")[3]
            out.append(body)
    return out


# ---------------------------------------------------------------------------------------- determinism


class TestDeterminism:
    def test_same_seed_gives_identical_bytes(self) -> None:
        """Two runs of a scenario with one seed and start publish the same messages, byte for byte."""
        scenario = load_scenario(SCENARIO_DIR / "baseline.toml").model_copy(update={"duration": 10 * 3600.0})
        assert run(scenario) == run(scenario)
        assert run(scenario, fmt="hj212") == run(scenario, fmt="hj212")

    def test_different_seed_gives_different_messages(self) -> None:
        """Another seed gives other values and other traffic."""
        scenario = load_scenario(SCENARIO_DIR / "baseline.toml").model_copy(update={"duration": 10 * 3600.0})
        other = scenario.model_copy(update={"seed": scenario.seed + 1})
        a, b = run(scenario), run(other)
        assert [m.payload for m in a if m.topic.endswith("/reading")] != [
            m.payload for m in b if m.topic.endswith("/reading")]
        assert [m.payload for m in a if m.topic.endswith("/event")] != [
            m.payload for m in b if m.topic.endswith("/event")]

    def test_adding_a_station_leaves_the_others_unchanged(self) -> None:
        """Each device has its own random stream derived from the seed: a new station changes no other."""
        two = default_scenario(stations=2, gates=0, duration=3600)
        three = default_scenario(stations=3, gates=0, duration=3600)
        st01 = [m for m in run(two) if "/ST01/" in m.topic]
        assert st01 == [m for m in run(three) if "/ST01/" in m.topic]

    def test_device_seeds_are_stable_across_processes(self) -> None:
        """Seeds come from SHA-256, not from hash(), which Python salts per process."""
        assert derive_seed(1, "station", "ST01") == 16951540919226764078
        assert derive_seed(1, "station", "ST01") != derive_seed(1, "station", "ST02")


# -------------------------------------------------------------------------------------- the decoder


class TestDecoderAcceptsEverything:
    @pytest.mark.parametrize("name", ["baseline", "gate_day", "plume", "gas_leak"])
    def test_every_message_of_a_scenario_is_accepted(self, name: str) -> None:
        """Every reading, frame, event, status and appointment passes ingest.decode.Decoder."""
        messages = run_file(name)
        assert messages
        for m in messages:
            decode(m)

    def test_every_hj212_frame_is_accepted_with_its_period(self) -> None:
        """HJ 212 stations send CN 2011 every tick, 2051 per minute and 2061 per hour, all with a good CRC."""
        scenario = one_station(fmt="hj212", hours=2.5, interval=30)
        frames = [m for m in run(scenario) if m.topic.endswith("/hj212")]
        periods = Counter()
        for m in frames:
            value = decode(m).value
            assert isinstance(value, AirReading)
            periods[value.period] += 1
            assert m.payload.endswith(b"\r\n")
            assert len(m.payload) <= hj212.MAX_FRAME
        assert periods == {"": 300, "minute": 149, "hour": 2}

    def test_minute_frames_carry_average_minimum_and_maximum(self) -> None:
        """A CN 2051 frame holds -Avg, -Min and -Max of each value (wind direction: the average only)."""
        scenario = one_station(fmt="hj212", hours=0.1, interval=20, hj212_cns=["2051"])
        frame = hj212.decode_frame(run(scenario)[1].payload)
        keys = {item.key for item in frame.items()}
        assert {"a34004-Avg", "a34004-Min", "a34004-Max", "a34004-Flag", "a01008-Avg"} <= keys
        assert "a01008-Min" not in keys
        assert frame.cn == "2051" and frame.data_time == "20260601000000"

    def test_json_readings_carry_every_value_in_contract_units(self) -> None:
        """A reading has the 9 pollutants and 5 weather values, within physical ranges, seq increasing."""
        rows = readings(run_file("baseline"))
        assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
        for r in rows:
            v = r["values"]
            assert set(v) == set(VALUE_NAMES)
            assert all(v[name] >= 0 for name in POLLUTANTS)
            assert 0 <= v["wind_dir"] < 360 and 0 <= v["rh"] <= 100 and 98 < v["pressure"] < 104.5
            assert v["co"] < 5 and v["tvoc"] < 5  # mg/m³


# ---------------------------------------------------------------------------------------- behaviour


def hourly_means(rows: list[dict[str, Any]], name: str) -> dict[int, float]:
    by_hour: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        by_hour[datetime.fromisoformat(r["ts"]).hour].append(r["values"][name])
    return {h: statistics.fmean(v) for h, v in by_hour.items()}


class TestDailyCycles:
    @pytest.mark.parametrize("station", ["ST01", "ST02", "ST04"])
    def test_ozone_peaks_in_the_afternoon(self, station: str) -> None:
        """The hourly O3 mean is highest between 13 and 17 h local time, and low at night."""
        means = hourly_means(readings(run_file("baseline"), station), "o3")
        assert 13 <= max(means, key=means.__getitem__) <= 17
        assert means[3] < 0.4 * max(means.values())

    def test_no2_follows_the_traffic_hours(self) -> None:
        """NO2 is higher in the morning rush hour (7-9 h) than in the early afternoon (12-15 h)."""
        means = hourly_means(readings(run_file("baseline")), "no2")
        assert statistics.fmean(means[h] for h in (7, 8)) > 1.5 * statistics.fmean(means[h] for h in (12, 13, 14))

    def test_particles_and_traffic_gases_are_correlated(self) -> None:
        """PM2.5, NO2 and CO move together (one air mass, one mixing layer)."""
        rows = readings(run_file("baseline"))
        pm, no2, co = ([r["values"][n] for r in rows] for n in ("pm25", "no2", "co"))
        assert statistics.correlation(pm, no2) > 0.3
        assert statistics.correlation(no2, co) > 0.7

    def test_wind_shifts_slowly(self) -> None:
        """From one minute to the next the wind direction changes by a few degrees, not at random."""
        dirs = [r["values"]["wind_dir"] for r in readings(run_file("baseline"))]
        turns = [abs((b - a + 180) % 360 - 180) for a, b in itertools.pairwise(dirs)]
        assert statistics.median(turns) < 10


# ----------------------------------------------------------------------------------------- episodes


class TestEpisodes:
    def test_plume_reaches_the_downwind_stations(self) -> None:
        """With a west wind, the stations east of the reactor see SO2 far above the same run without plume."""
        with_plume, without = run_file("plume"), run_file("plume", without_episodes=True)
        for station, at_least in (("ST02", 300.0), ("ST03", 60.0)):
            peak = max(r["values"]["so2"] for r in readings(with_plume, station))
            quiet = max(r["values"]["so2"] for r in readings(without, station))
            assert peak > quiet + at_least, station

    def test_plume_never_reaches_the_upwind_or_crosswind_station(self) -> None:
        """The station west of the reactor (upwind) and the one 1.2 km north publish exactly as without it."""
        with_plume, without = run_file("plume"), run_file("plume", without_episodes=True)
        for station in ("ST01", "ST04"):
            assert readings(with_plume, station) == readings(without, station)

    def test_plume_arrives_after_the_travel_time(self) -> None:
        """1.5 km downwind at about 3 m/s, the plume arrives some 8 minutes after the release, not at once."""
        with_plume, without = run_file("plume"), run_file("plume", without_episodes=True)
        release = 9 * 3600
        diffs = [(a["offset"], a["values"]["so2"] - b["values"]["so2"])
                 for a, b in zip(readings(with_plume, "ST03"), readings(without, "ST03"), strict=True)]
        first = min(offset for offset, d in diffs if d > 0)
        assert release + 4 * 60 <= first <= release + 15 * 60

    def test_gas_leak_is_a_spike_at_one_station(self) -> None:
        """H2S at ST03 jumps above 20 mg/m³ within two minutes; the other stations are untouched."""
        leak, quiet = run_file("gas_leak"), run_file("gas_leak", without_episodes=True)
        rows = readings(leak, "ST03")
        start = 3 * 3600
        assert max(r["values"]["h2s"] for r in window(rows, start, start + 120)) > 20000
        assert max(r["values"]["h2s"] for r in window(rows, 0, start)) < 50
        for station in ("ST01", "ST02"):
            assert readings(leak, station) == readings(quiet, station)

    def test_buildup_crosses_the_24_hour_pm25_limit(self) -> None:
        """The haze build-up takes the day's PM2.5 mean above 75 µg/m³ at every station; without it, below."""
        haze, quiet = run_file("haze_buildup"), run_file("haze_buildup", without_episodes=True)
        for station in ("ST01", "ST02"):
            assert statistics.fmean(r["values"]["pm25"] for r in readings(haze, station)) > 75
            assert statistics.fmean(r["values"]["pm25"] for r in readings(quiet, station)) < 75


# ------------------------------------------------------------------------------------------- faults


HOUR = 3600.0


def fault(fault_type: str, **params: Any) -> dict[str, Any]:
    return {"type": fault_type, "station": "ST01", "at": "1h", "duration": "30m", **params}


class TestSensorFaults:
    def test_flatline_repeats_one_value(self) -> None:
        """During a flatline PM2.5 never changes; before it, it does."""
        rows = readings(run(one_station([fault("flatline", values=["pm25"])])))
        assert len({r["values"]["pm25"] for r in window(rows, HOUR, 1.5 * HOUR)}) == 1
        assert len({r["values"]["pm25"] for r in window(rows, 0, HOUR)}) > 10

    def test_spikes_are_isolated_outliers(self) -> None:
        """A spike fault puts values at several times the normal level, at its start and then now and then."""
        rows = readings(run(one_station([fault("spike", factor=8.0, rate=0.1)])))
        normal = statistics.median(r["values"]["pm25"] for r in outside(rows, HOUR, 1.5 * HOUR))
        spikes = [r for r in window(rows, HOUR, 1.5 * HOUR) if r["values"]["pm25"] > 4 * normal]
        assert spikes and spikes[0]["offset"] == HOUR
        assert len(spikes) < 15

    def test_dropout_sends_nothing(self) -> None:
        """No reading has a time inside a dropout; readings come before and after it."""
        rows = readings(run(one_station([fault("dropout")])))
        assert not window(rows, HOUR, 1.5 * HOUR)
        assert window(rows, HOUR - 60, HOUR) and window(rows, 1.5 * HOUR, 1.5 * HOUR + 60)

    def test_negative_values_are_sent_and_accepted(self) -> None:
        """SO2 reads below zero during the fault (and the decoder still takes it: a rule's job)."""
        messages = run(one_station([fault("negative")]))
        rows = readings(messages)
        assert all(r["values"]["so2"] < 0 for r in window(rows, HOUR, 1.5 * HOUR))
        assert all(r["values"]["so2"] >= 0 for r in outside(rows, HOUR, 1.5 * HOUR))
        for m in messages:
            decode(m)

    def test_drift_grows_with_time(self) -> None:
        """O3 drifts away from the fault-free run by rate_per_h per hour."""
        faulty = readings(run(one_station([fault("drift", rate_per_h=40.0)])))
        clean = readings(run(one_station()))
        gap = [a["values"]["o3"] - b["values"]["o3"] for a, b in zip(faulty, clean, strict=True)
               if HOUR <= a["offset"] < 1.5 * HOUR]
        assert gap[0] == pytest.approx(0, abs=0.11)
        assert gap[-1] == pytest.approx(40.0 * 29 / 60, abs=0.2)
        assert gap == sorted(gap)

    @pytest.mark.parametrize(("kind", "letter"), [("maintenance", "M"), ("calibration", "C"), ("fault", "D")])
    def test_flags_mark_maintenance_calibration_and_faults(self, kind: str, letter: str) -> None:
        """The named values carry the flag during the window; the decoded reading counts them as invalid."""
        messages = run(one_station([fault(kind, values=["o3", "so2"])]))
        flagged = [m for m in messages if m.topic.endswith("/reading") and b'"flags"' in m.payload]
        assert len(flagged) == 30
        for m in flagged:
            body = json.loads(m.payload)
            assert body["flags"] == {"o3": letter, "so2": letter}
            value = decode(m).value
            assert isinstance(value, AirReading) and not value.valid("o3") and value.valid("pm25")

    def test_flags_reach_hj212_frames(self) -> None:
        """An HJ 212 station sends the fault's letter as -Flag, and N for the rest."""
        messages = run(one_station([fault("maintenance", values=["pm25"])], fmt="hj212", hj212_cns=["2011"]))
        frame = hj212.decode_frame(messages[61].payload)
        assert frame.get("a34004-Flag") == "M" and frame.get("a21026-Flag") == "N"

    @pytest.mark.parametrize(("kind", "reason"), sorted(CORRUPTIONS.items()))
    def test_corrupted_frames_are_rejected_for_the_right_reason(self, kind: str, reason: str) -> None:
        """Each kind of damaged HJ 212 frame is refused by the decoder with its reason; the others pass."""
        messages = run(one_station([fault("corrupt", kind=kind)], fmt="hj212"))
        reasons = Counter()
        for m in messages:
            try:
                decode(m)
            except Rejected as exc:
                reasons[exc.reason] += 1
        assert set(reasons) == {reason}
        assert reasons[reason] == 61  # what went out in the half hour: 30 real-time, 30 minute and 1 hour frames

    def test_corrupted_json_is_rejected_as_invalid_json(self) -> None:
        """On a JSON station a corrupt fault cuts the reading in half."""
        messages = run(one_station([fault("corrupt", every=2)]))
        rejected = Counter()
        for m in messages:
            try:
                decode(m)
            except Rejected as exc:
                rejected[exc.reason] += 1
        assert rejected == {"invalid_json": 15}

    def test_sensor_faults_scenario_shows_every_fault(self) -> None:
        """The shipped sensor_faults scenario has flat, spiky, missing, negative, drifting and flagged data."""
        messages = run_file("sensor_faults")
        st01, st02 = readings(messages, "ST01"), readings(messages, "ST02")
        assert len({r["values"]["pm25"] for r in window(st01, HOUR, 2.5 * HOUR)}) == 1
        assert not window(st02, 3 * HOUR, 3 * HOUR + 1200)
        assert any(r["values"]["so2"] < 0 for r in st01)
        assert {r.get("flags", {}).get("pm25") for r in st01} >= {"M", "D"}
        assert {r.get("flags", {}).get("o3") for r in st02} >= {"C"}


# -------------------------------------------------------------------------------------------- gates


def passages(evs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Granted passages per subject, each event once, in time order."""
    seen: set[tuple[str, str]] = set()
    by_who: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in sorted(evs, key=lambda e: e["ts"]):
        if (e["gate"], e["event_id"]) in seen or not e["granted"]:
            continue
        seen.add((e["gate"], e["event_id"]))
        by_who[e.get("plate") or e["person_id"]].append(e)
    return by_who


class TestGates:
    def test_plates_look_chinese(self) -> None:
        """Plates are a province character, a letter, a middle dot and five letters or digits: 粤R·A1234."""
        plates = {e["plate"] for e in events(run_file("gate_day")) if "plate" in e}
        assert len(plates) > 100
        assert all(re.fullmatch(PLATE_PATTERN, p) for p in plates)

    def test_every_exit_matches_an_entry(self) -> None:
        """For every vehicle and person, granted passages alternate in, out, in...; only the scenario's
        exit-without-entry plate starts with an exit."""
        for who, seq in passages(events(run_file("gate_day"))).items():
            directions = [e["direction"] for e in seq]
            if who == "粤R·T7007":
                assert directions == ["out"]
                continue
            assert directions == ["in", "out"] * (len(directions) // 2) + ["in"] * (len(directions) % 2), who

    def test_repeated_event_ids_when_asked(self) -> None:
        """The repeat episode sends five G1 events twice, same event_id and same bytes, seconds apart."""
        messages = [m for m in run_file("gate_day") if m.topic == "park/demo/gate/G1/event"]
        counts = Counter(m.payload for m in messages)
        repeated = [json.loads(p) for p, n in counts.items() if n == 2]
        assert len(repeated) >= 5
        assert all(n <= 2 for n in counts.values())

    def test_no_repeats_unless_asked(self) -> None:
        """Without repeat episodes or repeat_rate, every event_id is sent once."""
        scenario = load_scenario(SCENARIO_DIR / "baseline.toml")
        evs = events(run(scenario))
        assert len({(e["gate"], e["event_id"]) for e in evs}) == len(evs)

    def test_gates_admit_only_their_vehicle_classes(self) -> None:
        """Granted hazmat and hazwaste vehicles pass the hazmat gate only; cars never use the hazmat gate."""
        for e in events(run_file("gate_day")):
            if e["granted"] and e.get("vehicle_class") in ("hazmat", "hazwaste"):
                assert e["gate"] == "G2" and "hazmat" in e
            if e.get("vehicle_class") in ("car", "truck", "bus"):
                assert e["gate"] != "G2"
            if e["subject"] == "person":
                assert e["gate"] in ("G1", "G5") and e["credential"] in ("face", "card")

    def test_booked_hazmat_vehicles_have_a_retained_appointment_first(self) -> None:
        """Each granted hazmat entry comes after a retained appointment whose validity covers it."""
        messages = run_file("gate_day")
        booked: dict[str, dict[str, Any]] = {}
        entries = 0
        for m in messages:
            if "/registry/appointment/" in m.topic:
                assert m.retain
                plate = m.topic.rsplit("/", 1)[1]
                if m.payload:
                    booked[plate] = json.loads(m.payload)
                    assert booked[plate]["plate"] == plate and booked[plate]["gates"] == ["G2"]
                else:
                    booked.pop(plate, None)
            elif m.topic.endswith("/event"):
                e = json.loads(m.payload)
                if e["granted"] and e["direction"] == "in" and e.get("vehicle_class") in ("hazmat", "hazwaste"):
                    entries += 1
                    a = booked[e["plate"]]
                    assert a["valid_from"] <= e["ts"] < a["valid_to"]
        assert entries >= 20

    def test_violations_of_the_gate_day(self) -> None:
        """Unbooked, expired, cancelled, wrong-gate, blacklisted and overstaying vehicles appear as asked."""
        messages = run_file("gate_day")
        evs = events(messages)
        by_plate: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in evs:
            by_plate[e.get("plate", "")].append(e)
        appointments = {m.topic.rsplit("/", 1)[1]: m.payload for m in messages if "/appointment/" in m.topic}
        for plate in ("粤R·H1001", "粤L·H2002", "赣B·H3003", "粤R·B6666"):
            assert [(e["direction"], e["granted"]) for e in by_plate[plate]] == [("in", False)], plate
        assert "粤R·H1001" not in appointments
        assert appointments["赣B·H3003"] == b""  # cancelled
        assert json.loads(appointments["粤L·H2002"])["valid_to"] == "2026-06-01T00:00:00+08:00"
        wrong = by_plate["粤R·H4004"]
        assert [(e["gate"], e["direction"], e["granted"]) for e in wrong[:2]] == [("G1", "in", False),
                                                                                    ("G2", "in", True)]
        overstay = by_plate["粤R·H5005"]
        valid_to = json.loads(appointments["粤R·H5005"])["valid_to"]
        assert [e["direction"] for e in overstay] == ["in", "out"] and overstay[1]["ts"] > valid_to

    def test_a_gate_offline_goes_silent_then_forwards_what_it_kept(self) -> None:
        """G3 says offline, publishes nothing until it says online, then sends the passages of the outage."""
        g3 = [m for m in run_file("gate_day") if "/gate/G3/" in m.topic]
        statuses = [i for i, m in enumerate(g3) if m.topic.endswith("/status")]
        down = next(i for i in statuses if b'"online":false' in g3[i].payload)
        up = next(i for i in statuses if i > down)
        assert up == down + 1 and b'"online":true' in g3[up].payload
        kept = [json.loads(m.payload) for m in g3[up + 1:] if m.topic.endswith("/event")]
        assert any("12:00:00" <= e["ts"][11:19] < "12:30:00" for e in kept)

    def test_staff_come_and_go_by_shift(self) -> None:
        """People on foot enter around 8 h (day shift) or 19:45 (night shift)."""
        for e in events(run_file("gate_day")):
            if e["subject"] == "person" and e["direction"] == "in":
                hour = datetime.fromisoformat(e["ts"]).hour + datetime.fromisoformat(e["ts"]).minute / 60
                assert 7.25 <= hour <= 9.0 or 19.25 <= hour <= 20.25

    def test_devices_say_online_first_and_offline_last(self) -> None:
        """Every station and gate publishes a retained online status first and a retained offline one last."""
        messages = run_file("baseline")
        by_device: dict[str, list[Outgoing]] = defaultdict(list)
        for m in messages:
            if m.topic.endswith("/status"):
                by_device[m.topic].append(m)
        assert len(by_device) == 8
        for statuses in by_device.values():
            assert all(m.retain for m in statuses)
            assert json.loads(statuses[0].payload)["online"] is True
            assert json.loads(statuses[-1].payload)["online"] is False


# ----------------------------------------------------------------------------------------- scenarios


def base(**extra: Any) -> dict[str, Any]:
    return {"stations": [{"id": "ST01"}], "sources": [{"name": "R1", "x": 0, "y": 0}], **extra}


class TestScenarioFiles:
    def test_the_required_scenarios_are_shipped(self) -> None:
        """baseline, plume, gas_leak, gate_day and sensor_faults are in simulators/scenarios/."""
        assert {p.stem for p in shipped_scenarios()} >= REQUIRED_SCENARIOS

    @pytest.mark.parametrize("path", shipped_scenarios(), ids=lambda p: p.stem)
    def test_every_shipped_scenario_loads_and_runs(self, path: Path) -> None:
        """Each file validates, and what it publishes is accepted except the frames it corrupts on purpose."""
        scenario = load_scenario(path)
        assert scenario.name == path.stem and scenario.description
        for m in run_file(path.stem):
            try:
                decode(m)
            except Rejected as exc:
                assert exc.reason in CORRUPTIONS.values() and m.topic.endswith("/hj212")

    def test_expectations_are_data(self) -> None:
        """[[expect]] entries keep rule, source, severity and within_s for the rules to check against."""
        expect = load_scenario(SCENARIO_DIR / "gas_leak.toml").expect
        assert [(e.rule, e.source, e.severity, e.within_s) for e in expect] == [
            ("h2s_leak", "ST03", "major", 120.0), ("h2s_leak", "ST03", "critical", 300.0)]

    @pytest.mark.parametrize(
        ("raw", "key"),
        [
            (base(faults=[{"type": "flatline", "station": "ST01", "at": "1h", "duration": "soon"}]),
             "faults.0.duration"),
            (base(faults=[{"type": "flatline", "station": "ST09", "at": 0, "duration": 60}]), "faults.0.station"),
            (base(faults=[{"type": "spike", "station": "ST01", "at": 0, "duration": 60, "values": ["rh"]}]),
             "faults.0.values"),
            (base(episodes=[{"type": "plume", "source": "R1", "at": 0, "duration": 60, "species": {"so2": 1},
                             "speices": 1}]), "episodes.0.speices"),
            (base(episodes=[{"type": "plum", "at": 0}]), "episodes.0.type"),
            (base(episodes=[{"type": "plume", "source": "R9", "at": 0, "duration": 60, "species": {"so2": 1}}]),
             "episodes.0.source"),
            (base(episodes=[{"type": "gas_leak", "station": "ST01", "at": 0, "duration": 60,
                             "species": {"h2x": 1}}]), "episodes.0.species"),
            (base(episodes=[{"type": "unbooked_hazmat", "at": 0}]), "episodes.0.type"),
            ({"stations": [{"id": "ST01"}, {"id": "ST01"}]}, "stations.1.id"),
            ({"stations": [{"id": "ST 1"}]}, "stations.0.id"),
            (base(start=datetime(2026, 6, 1)), "start"),  # no UTC offset
            (base(interval=0.5), "interval"),
            (base(gates=[{"id": "G1", "kind": "tollbooth"}]), "gates.0.kind"),
            (base(traffic={"trucks": -1}), "traffic.trucks"),
            (base(expect=[{"rule": "x"}]), "expect.0.source"),
            ({}, "stations"),
        ],
    )
    def test_a_bad_scenario_names_the_key(self, raw: dict[str, Any], key: str) -> None:
        """A mistake stops the load with ConfigError naming the dotted key."""
        with pytest.raises(ConfigError) as info:
            scenario_from_dict(raw)
        assert info.value.key == key, info.value

    def test_a_file_that_is_not_toml_is_named(self, tmp_path: Path) -> None:
        """A file that does not parse names the file."""
        bad = tmp_path / "bad.toml"
        bad.write_text("stations = [\n")
        with pytest.raises(ConfigError, match=r"bad\.toml"):
            load_scenario(bad)

    def test_simulate_with_a_bad_scenario_exits_2_naming_the_key(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`parkwatch simulate --scenario BAD` exits 2 and names the key, without touching a broker."""
        bad = tmp_path / "bad.toml"
        bad.write_text('[[stations]]\nid = "ST01"\n[[faults]]\ntype = "dropout"\nstation = "ST02"\nat = 0\n'
                       "duration = 60\n")
        assert main(["simulate", "--scenario", str(bad), "--speed", "max"]) == 2
        assert "faults.0.station" in capsys.readouterr().err

    def test_a_station_may_keep_its_own_interval(self) -> None:
        """A station's own interval wins over the scenario's: ST02 every 30 s, ST01 every minute."""
        scenario = scenario_from_dict({"duration": 600, "interval": 60,
                                       "stations": [{"id": "ST01"}, {"id": "ST02", "interval": "30s"}]})
        messages = run(scenario)
        assert (len(readings(messages, "ST01")), len(readings(messages, "ST02"))) == (10, 20)

    def test_replay_of_a_bad_file_exits_2_naming_the_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`parkwatch replay` of a file that is not a recording exits 2 naming file and line, before any I/O."""
        bad = tmp_path / "rec.jsonl"
        bad.write_text("not json\n", encoding="utf-8")
        assert main(["replay", str(bad), "--speed", "max"]) == 2
        assert "rec.jsonl:1" in capsys.readouterr().err

    def test_scenario_records_are_stamped_with_simulated_time(self) -> None:
        """scenario_records (for `parkwatch rules test`) gives each message with the time it went out."""
        records = scenario_records(load_scenario(SCENARIO_DIR / "gas_leak.toml"), park="demo")
        assert records[0].time == VIRTUAL_START
        assert [r.time for r in records] == sorted(r.time for r in records)
        body = json.loads(records[-1].payload)
        assert records[-1].time == VIRTUAL_START + timedelta(hours=6)
        assert body == {"online": False, "ts": "2026-06-01T06:00:00+08:00"}


# -------------------------------------------------------------------------------------------- clock


class FakeTime:
    """A monotonic clock that only moves when something waits on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


class TestClock:
    @pytest.mark.parametrize(("text", "speed"), [("max", None), ("MAX", None), ("0", None), ("1", 1.0),
                                                 ("10", 10.0), ("0.5", 0.5)])
    def test_speed_is_a_factor_or_max(self, text: str, speed: float | None) -> None:
        """--speed takes a factor above 0, or max / 0 for a virtual clock."""
        assert parse_speed(text) == speed

    @pytest.mark.parametrize("text", ["-1", "fast", "inf", ""])
    def test_a_bad_speed_is_refused(self, text: str) -> None:
        """A negative, infinite or non-numeric speed is an error."""
        with pytest.raises(ValueError):
            parse_speed(text)

    @pytest.mark.parametrize(("raw", "seconds"), [(90, 90.0), ("90", 90.0), ("90s", 90.0), ("15m", 900.0),
                                                  ("2h30m", 9000.0), ("1d", 86400.0), ("1.5h", 5400.0)])
    def test_durations_are_seconds_or_text(self, raw: object, seconds: float) -> None:
        """Scenario offsets are seconds or text such as 2h30m."""
        assert parse_duration(raw) == seconds

    @pytest.mark.parametrize("raw", ["soon", "1h 30m", True, None, ""])
    def test_a_bad_duration_is_refused(self, raw: object) -> None:
        """Anything else is an error."""
        with pytest.raises(ValueError):
            parse_duration(raw)

    def test_virtual_clock_jumps_and_never_goes_back(self) -> None:
        """The virtual clock moves to each time asked at once, never backwards; a set stop ends it."""
        stop = threading.Event()
        clock = VirtualClock(VIRTUAL_START, stop=stop)
        assert clock.sleep_until(VIRTUAL_START + timedelta(hours=5))
        assert clock.sleep_until(VIRTUAL_START)
        assert clock.now() == VIRTUAL_START + timedelta(hours=5)
        stop.set()
        assert not clock.sleep_until(VIRTUAL_START + timedelta(hours=6))

    def test_scaled_clock_waits_the_gap_divided_by_the_speed(self) -> None:
        """At 4x, one simulated minute is 15 real seconds, waited in slices of at most half a second."""
        fake = FakeTime()
        clock = ScaledClock(VIRTUAL_START, 4.0, monotonic=fake.monotonic, wait=fake.wait)
        assert clock.sleep_until(VIRTUAL_START + timedelta(minutes=1))
        assert sum(fake.waits) == pytest.approx(15.0)
        assert max(fake.waits) <= 0.5
        assert clock.now() == VIRTUAL_START + timedelta(minutes=1)

    def test_the_clock_decides_when_not_what(self) -> None:
        """A run on a (fake) real-time clock publishes the same bytes as one on the virtual clock."""
        scenario = default_scenario(stations=1, gates=1, duration=900)
        fake = FakeTime()
        sink = MemorySink()
        Simulation(scenario, park="demo", tz=TZ, start=VIRTUAL_START).run(
            ScaledClock(VIRTUAL_START, 1.0, monotonic=fake.monotonic, wait=fake.wait), SharedConnector(sink))
        assert sink.messages == run(scenario)
        assert sum(fake.waits) == pytest.approx(900.0)


# --------------------------------------------------------------------------------- record and replay


T0 = datetime(2026, 11, 27, 0, 0, 0, tzinfo=UTC)


def sample_records() -> list[Record]:
    return [
        Record(T0, "park/demo/air/ST01/reading", b'{"ts":"2026-11-27T08:00:00+08:00","values":{"pm25":1.0}}'),
        Record(T0 + timedelta(seconds=10), "park/demo/gate/G1/event", "粤R·A1234".encode(), 1, False),
        Record(T0 + timedelta(seconds=10), "park/demo/air/ST01/status", b'{"online":true}', 1, True),
        Record(T0 + timedelta(seconds=40), "park/demo/air/ST02/hj212", b"\xff\x00##", 0, False),
    ]


class TestRecordingFile:
    def test_records_round_trip_as_json_lines(self, tmp_path: Path) -> None:
        """Topic, payload (text or base64), qos, retain and time survive a write and a read."""
        path = tmp_path / "rec.jsonl"
        with path.open("w", encoding="utf-8") as f:
            assert write_records(f, sample_records()) == 4
        assert read_records(path) == sample_records()
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert lines[1]["payload"] == "粤R·A1234" and "encoding" not in lines[1]
        assert lines[3]["encoding"] == "base64" and lines[2]["retain"] is True

    def test_a_bad_line_is_named(self, tmp_path: Path) -> None:
        """A line that is not a record names the file and the line."""
        path = tmp_path / "rec.jsonl"
        path.write_text(sample_records()[0].to_json() + "\n\n{\"topic\": 1}\n", encoding="utf-8")
        with pytest.raises(RecordingError) as info:
            read_records(path)
        assert info.value.line == 3


class TestReplay:
    def test_replay_keeps_order_and_content(self) -> None:
        """Every record goes out once, in file order, with its topic, payload, qos and retain."""
        sink = MemorySink()
        assert replay(sample_records(), sink, VirtualClock(T0)) == 4
        assert sink.messages == [Outgoing(r.topic, r.payload, r.qos, r.retain) for r in sample_records()]

    def test_replay_keeps_the_recorded_gaps_divided_by_the_speed(self) -> None:
        """At 2x, records 0, 10, 10 and 40 s apart go out after 0, 5, 5 and 20 s of (fake) waiting."""
        fake = FakeTime()
        clock = ScaledClock(T0, 2.0, monotonic=fake.monotonic, wait=fake.wait)
        sent_at: list[float] = []
        replay(sample_records(), MemorySink(), clock, on_publish=lambda r: sent_at.append(fake.now - 100.0))
        assert sent_at == pytest.approx([0.0, 5.0, 5.0, 20.0])

    def test_as_fast_as_possible_does_not_wait(self) -> None:
        """On the virtual clock the whole recording goes out at once, stamped with its recorded times."""
        clock = VirtualClock(T0)
        sink = MemorySink(clock.now)
        started = time.monotonic()
        replay(sample_records(), sink, clock)
        assert time.monotonic() - started < 0.5
        assert sink.times == [r.time for r in sample_records()]

    def test_a_stopped_replay_sends_no_more(self) -> None:
        """Once stopped, a replay publishes nothing further."""
        stop = threading.Event()
        sink = MemorySink()
        replay(sample_records(), sink, VirtualClock(T0, stop=stop), on_publish=lambda r: stop.set())
        assert len(sink.messages) == 1

    def test_shift_to_now_moves_times_and_payload_timestamps(self) -> None:
        """Shifting moves every record's time and the ts, validity and DataTime inside, by one offset;
        HJ 212 frames are re-framed with a good CRC and still decode."""
        scenario = load_scenario(SCENARIO_DIR / "gate_day.toml").model_copy(update={"duration": 10 * 3600.0})
        original = scenario_records(scenario, park="demo", fmt="hj212")
        now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=11)  # all of it in the past
        delta = offset_to(original, now)
        shifted = shift_records(original, delta, TZ)
        assert shifted[0].time == now
        assert all(b.time - a.time == delta for a, b in zip(original, shifted, strict=True))
        for a, b in zip(original, shifted, strict=True):
            if not a.payload:
                assert b.payload == b""
                continue
            before, after = decode(a), decode(b)
            if a.topic.endswith(("/reading", "/hj212", "/event")):
                assert after.point.ts_ns - before.point.ts_ns == delta // timedelta(microseconds=1) * 1000
                assert after.point.fields == before.point.fields
            if "/appointment/" in a.topic:
                va, vb = json.loads(a.payload), json.loads(b.payload)
                moved = datetime.fromisoformat(vb["valid_from"]) - datetime.fromisoformat(va["valid_from"])
                assert moved == delta

    def test_shift_leaves_a_corrupted_frame_as_it_was(self) -> None:
        """A frame that does not decode is replayed unchanged (still corrupted)."""
        record = sample_records()[3]
        assert shift_records([record], timedelta(days=3), TZ)[0].payload == record.payload


class TestCsvReplay:
    def write(self, tmp_path: Path, text: str) -> Path:
        path = tmp_path / "history.csv"
        path.write_text(text, encoding="utf-8")
        return path

    def test_csv_rows_become_json_readings_in_time_order(self, tmp_path: Path) -> None:
        """Each row is a reading of its station at ts (no offset: park time), ordered by ts; empty cells
        are values not measured; *_flag columns become flags."""
        path = self.write(tmp_path, "ts,station,pm25,so2,o3,o3_flag\n"
                                    "2026-01-15T08:05:00,ST02,40.5,,80,C\n"
                                    "2026-01-15T08:00:00,ST01,35.2,8.0,75,\n"
                                    "2026-01-15T08:00:00+00:00,ST01,12.0,3.0,,\n")
        records = csv_records(path, park="demo", tz=TZ)
        assert [r.topic for r in records] == ["park/demo/air/ST01/reading", "park/demo/air/ST02/reading",
                                              "park/demo/air/ST01/reading"]
        assert records[0].time == datetime(2026, 1, 15, 8, tzinfo=TZ)
        assert json.loads(records[1].payload) == {"ts": "2026-01-15T08:05:00+08:00",
                                                  "values": {"pm25": 40.5, "o3": 80.0}, "flags": {"o3": "C"}}
        for r in records:
            decode(r)

    def test_a_station_argument_names_the_station(self, tmp_path: Path) -> None:
        """Without a station column, --station names it; epoch milliseconds are accepted as ts."""
        path = self.write(tmp_path, "ts,pm25,wind_dir\n1768435200000,30.1,90\n1768435260000,31.0,95\n")
        records = csv_records(path, park="demo", tz=TZ, station="ST07")
        assert [r.topic for r in records] == ["park/demo/air/ST07/reading"] * 2
        assert records[1].time - records[0].time == timedelta(minutes=1)

    def test_a_csv_without_a_station_is_refused(self, tmp_path: Path) -> None:
        """No station column and no --station: RecordingError naming the header line."""
        path = self.write(tmp_path, "ts,pm25\n2026-01-15T08:00:00,1\n")
        with pytest.raises(RecordingError) as info:
            csv_records(path, park="demo", tz=TZ)
        assert info.value.line == 1

    def test_a_bad_cell_names_its_line(self, tmp_path: Path) -> None:
        """A timestamp or number that does not parse names the line of the file."""
        path = self.write(tmp_path, "ts,station,pm25\n2026-01-15T08:00:00,ST01,1\nyesterday,ST01,2\n")
        with pytest.raises(RecordingError) as info:
            csv_records(path, park="demo", tz=TZ)
        assert info.value.line == 3

    def test_csv_replays_like_a_recording(self, tmp_path: Path) -> None:
        """CSV records replay in order, keeping their gaps (here an hour at 3600x: one second)."""
        path = self.write(tmp_path, "ts,station,pm25\n2026-01-15T08:00:00,ST01,1\n2026-01-15T09:00:00,ST01,2\n")
        records = csv_records(path, park="demo", tz=TZ)
        fake = FakeTime()
        sink = MemorySink()
        replay(records, sink, ScaledClock(records[0].time, 3600.0, monotonic=fake.monotonic, wait=fake.wait))
        assert [json.loads(m.payload)["values"]["pm25"] for m in sink.messages] == [1.0, 2.0]
        assert sum(fake.waits) == pytest.approx(1.0)

