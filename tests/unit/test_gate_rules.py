"""Enclosed-management rules judge gate events against bookings, gate classes, blacklists and limits."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from ingest.decode import NewValue
from ingest.errors import ConfigError
from ingest.models import Appointment, AppointmentCancelled, GateEvent
from rules.config import Park, compile_rules, fingerprints, load_rules, parse_rules
from rules.engine import RuleEngine
from rules.interfaces import Event
from rules.park_state import ParkState
from rules.runner import RulesRunner
from rules.signals import RecordingSink
from tests.unit.test_drain import eventually

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 27, 6, 0, tzinfo=TZ)  # 06:00 park time
HOUR = 3600
PLATE = "粤R·A1234"
UN = {"hazmat": "1203", "hazwaste": "3077"}

APPOINTMENT = {"type": "hazmat_appointment", "name": "hazmat_booking"}
GATE_CLASS = {"type": "gate_class", "name": "gate_class",
              "gates": {"G1": ["hazmat", "hazwaste"], "G2": ["truck", "car", "bus"], "G3": ["car"]}}
BLACKLIST = {"type": "blacklist", "name": "blacklist", "plates": ["粤R·X9999"], "persons": ["P-666"]}
DENIED = {"type": "denied_repeat", "name": "denied", "count": 3, "window_s": 600}
OVERSTAY = {"type": "overstay", "name": "overstay", "max_dwell_s": {"hazmat": 8 * HOUR, "hazwaste": 8 * HOUR}}
CAP = {"type": "hazmat_cap", "name": "hazmat_cap", "cap": 2}
EXIT = {"type": "exit_without_entry", "name": "exit_without_entry"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def vehicle(seconds: float, plate: str = PLATE, *, way: str = "in", cls: str = "hazmat", gate: str = "G1",
            granted: bool = True, un: str | None = None, person: str | None = None) -> GateEvent:
    hazmat = {"un_number": un or UN[cls], "hazard_class": "3"} if cls in UN else None
    return GateEvent.model_validate({
        "ts": at(seconds), "event_id": f"{gate}-{seconds}-{plate}", "direction": way, "subject": "vehicle",
        "plate": plate, "vehicle_class": cls, "hazmat": hazmat, "person_id": person, "credential": "plate",
        "granted": granted, "gate": gate})


def walker(seconds: float, person: str, *, way: str = "in", gate: str = "G1", granted: bool = True) -> GateEvent:
    return GateEvent(ts=at(seconds), event_id=f"{gate}-{seconds}-{person}", direction=way,  # type: ignore[arg-type]
                     subject="person", person_id=person, credential="face", granted=granted, gate=gate)


def booking(from_s: float, to_s: float, plate: str = PLATE, *, gates: Sequence[str] = (),
            un: str | None = "1203") -> Appointment:
    return Appointment(plate=plate, company="华南危运", valid_from=at(from_s), valid_to=at(to_s), un_number=un,
                       gates=tuple(gates))


def engine(*rules: dict[str, Any], **top: Any) -> tuple[RuleEngine, RecordingSink]:
    parsed = parse_rules({"rule": list(rules), **top})
    sink = RecordingSink()
    return RuleEngine(compile_rules(parsed, Park(TZ, gates=("G1", "G2", "G3"))), sink, tz=TZ), sink


def play(eng: RuleEngine, *events: Event) -> None:
    """Feed events in their own time; bookings and cancellations at T0."""
    for event in events:
        eng.process(event, event.ts if isinstance(event, GateEvent) else T0)


def states(sink: RecordingSink, rule: str | None = None) -> list[tuple[str, str, str]]:
    return [(r, source, state) for r, source, state, _ in sink.states(rule) if r != "park_state"]


def park_state(eng: RuleEngine) -> ParkState:
    (state,) = [r for r in eng.rules if isinstance(r, ParkState)]
    return state


class TestHazmatAppointment:
    def test_no_booking_fires_with_the_reason(self) -> None:
        """A hazmat vehicle entering with no booking fires critical, reason no_appointment, in both languages."""
        eng, sink = engine(APPOINTMENT)
        play(eng, vehicle(0, gate="G2"))
        assert sink.states() == [("hazmat_booking", PLATE, "firing", "critical")]
        signal = sink.signals[0]
        assert signal.details["reason"] == "no_appointment" and signal.details["gate"] == "G2"
        assert signal.message_zh == "粤R·A1234 危化品车辆无有效预约入园 (G2)"

    def test_entering_exactly_at_valid_to_is_within_the_booking(self) -> None:
        """The validity window includes its end: an entry at valid_to raises nothing."""
        eng, sink = engine(APPOINTMENT)
        play(eng, booking(-HOUR, 0), vehicle(0))
        assert sink.signals == []

    def test_one_second_before_valid_to_is_within_the_booking(self) -> None:
        """An entry one second before valid_to raises nothing."""
        eng, sink = engine(APPOINTMENT)
        play(eng, booking(-HOUR, 1), vehicle(0))
        assert sink.signals == []

    def test_one_second_after_valid_to_is_outside(self) -> None:
        """An entry one second after valid_to fires, reason outside_validity."""
        eng, sink = engine(APPOINTMENT)
        play(eng, booking(-HOUR, -1), vehicle(0))
        assert states(sink) == [("hazmat_booking", PLATE, "firing")]
        assert sink.signals[0].details["reason"] == "outside_validity"

    def test_valid_from_is_inclusive_too(self) -> None:
        """An entry exactly at valid_from is fine, one second before it is outside the booking."""
        eng, sink = engine(APPOINTMENT)
        play(eng, booking(0, HOUR), vehicle(0))
        assert sink.signals == []
        eng, sink = engine(APPOINTMENT)
        play(eng, booking(1, HOUR), vehicle(0))
        assert sink.signals[0].details["reason"] == "outside_validity"

    def test_a_gate_the_booking_does_not_list(self) -> None:
        """Booked for G1, entering at G2: reason wrong_gate."""
        eng, sink = engine(APPOINTMENT)
        play(eng, booking(-HOUR, HOUR, gates=["G1"]), vehicle(0, gate="G2"))
        assert sink.signals[0].details["reason"] == "wrong_gate"
        assert sink.signals[0].details["booked_gates"] == "G1"

    def test_a_booking_without_gates_admits_any_gate(self) -> None:
        """An empty gates list in the booking means any gate."""
        eng, sink = engine(APPOINTMENT)
        play(eng, booking(-HOUR, HOUR), vehicle(0, gate="G2"))
        assert sink.signals == []

    def test_another_un_number_than_booked(self) -> None:
        """Booked for UN1203, carrying UN1830: reason un_number_mismatch."""
        eng, sink = engine(APPOINTMENT)
        play(eng, booking(-HOUR, HOUR), vehicle(0, un="1830"))
        assert sink.signals[0].details["reason"] == "un_number_mismatch"

    def test_a_denied_attempt_counts(self) -> None:
        """The barrier staying shut does not excuse the attempt: a denied entry fires too."""
        eng, sink = engine(APPOINTMENT)
        play(eng, vehicle(0, granted=False))
        assert states(sink) == [("hazmat_booking", PLATE, "firing")]
        assert sink.signals[0].details["granted"] == 0

    def test_hazwaste_is_judged_and_other_classes_are_not(self) -> None:
        """A hazwaste vehicle needs a booking (危废 wording); a truck or a car does not."""
        eng, sink = engine(APPOINTMENT)
        play(eng, vehicle(0, "粤R·W1111", cls="hazwaste"), vehicle(1, "粤R·T1111", cls="truck"),
             vehicle(2, "粤R·C1111", cls="car"))
        assert states(sink) == [("hazmat_booking", "粤R·W1111", "firing")]
        assert "危废车辆" in sink.signals[0].message_zh

    def test_plates_are_compared_without_the_middle_dot(self) -> None:
        """A booking for 粤R·A1234 covers a camera reading 粤ra1234."""
        eng, sink = engine(APPOINTMENT)
        play(eng, booking(-HOUR, HOUR), vehicle(0, plate="粤ra1234"))
        assert sink.signals == []

    def test_resolves_when_the_vehicle_leaves(self) -> None:
        """A granted exit of the vehicle resolves its alert."""
        eng, sink = engine(APPOINTMENT)
        play(eng, vehicle(0), vehicle(600, way="out"))
        assert states(sink) == [("hazmat_booking", PLATE, "firing"), ("hazmat_booking", PLATE, "resolved")]

    def test_resolves_after_resolve_after_s(self) -> None:
        """With no exit, the alert resolves on the first tick at or after resolve_after_s."""
        eng, sink = engine({**APPOINTMENT, "resolve_after_s": 600})
        play(eng, vehicle(0, granted=False))
        eng.tick(at(599))
        assert len(sink.signals) == 1
        eng.tick(at(600))
        assert states(sink)[-1] == ("hazmat_booking", PLATE, "resolved")

    def test_a_second_attempt_while_firing_pushes_the_end_back(self) -> None:
        """A repeat raises nothing new but keeps the alert open resolve_after_s past the repeat."""
        eng, sink = engine({**APPOINTMENT, "resolve_after_s": 600})
        play(eng, vehicle(0, granted=False), vehicle(300, granted=False))
        eng.tick(at(600))
        assert len(sink.signals) == 1
        eng.tick(at(900))
        assert [s[2] for s in states(sink)] == ["firing", "resolved"]


class TestGateClass:
    def test_a_class_the_gate_does_not_admit(self) -> None:
        """A hazmat truck at the car-only gate G3 fires with the gate and the class."""
        eng, sink = engine(GATE_CLASS)
        play(eng, vehicle(0, gate="G3"))
        assert sink.states() == [("gate_class", PLATE, "firing", "major")]
        assert sink.signals[0].details["gate"] == "G3" and sink.signals[0].details["vehicle_class"] == "hazmat"
        assert "G3" in sink.signals[0].message_zh

    def test_an_admitted_class(self) -> None:
        """A car at G3 and a hazmat truck at G1 raise nothing."""
        eng, sink = engine(GATE_CLASS)
        play(eng, vehicle(0, "粤R·C1111", cls="car", gate="G3"), vehicle(1, gate="G1"))
        assert sink.signals == []

    def test_emergency_vehicles_pass_everywhere_by_default(self) -> None:
        """An emergency vehicle is admitted at every listed gate unless always_allowed is emptied."""
        eng, sink = engine(GATE_CLASS)
        play(eng, vehicle(0, "粤R·119", cls="emergency", gate="G3"))
        assert sink.signals == []
        eng, sink = engine({**GATE_CLASS, "always_allowed": []})
        play(eng, vehicle(0, "粤R·119", cls="emergency", gate="G3"))
        assert states(sink) == [("gate_class", "粤R·119", "firing")]

    def test_a_gate_not_listed_admits_any_class(self) -> None:
        """Gates missing from the config are not judged."""
        eng, sink = engine(GATE_CLASS)
        play(eng, vehicle(0, gate="G9"))
        assert sink.signals == []

    def test_exits_and_denied_attempts_count(self) -> None:
        """A hazmat truck leaving by G2, or refused at G3, is at a gate that does not admit it."""
        eng, sink = engine(GATE_CLASS)
        play(eng, vehicle(0, way="out", gate="G2"), vehicle(1, "粤R·B2345", gate="G3", granted=False))
        assert [s[1] for s in states(sink)] == [PLATE, "粤R·B2345"]

    def test_resolves_after_resolve_after_s(self) -> None:
        """The alert resolves by itself resolve_after_s after the event."""
        eng, sink = engine(GATE_CLASS)
        play(eng, vehicle(0, gate="G3"))
        eng.tick(at(HOUR - 1))
        eng.tick(at(HOUR))
        assert [s[2] for s in states(sink)] == ["firing", "resolved"]


class TestBlacklist:
    def test_a_listed_plate_at_any_gate(self) -> None:
        """A blacklisted plate, written with or without the middle dot, fires critical even when denied."""
        eng, sink = engine(BLACKLIST)
        play(eng, vehicle(0, "粤RX9999", cls="truck", gate="G2", granted=False))
        assert sink.states() == [("blacklist", "粤RX9999", "firing", "critical")]
        assert sink.signals[0].message_zh == "黑名单车辆 粤RX9999 出现在卡口 G2"

    def test_a_listed_person(self) -> None:
        """A blacklisted person id fires, on foot or as a vehicle's driver."""
        eng, sink = engine(BLACKLIST)
        play(eng, walker(0, "P-666"))
        assert states(sink) == [("blacklist", "P-666", "firing")]
        eng, sink = engine(BLACKLIST)
        play(eng, vehicle(0, "粤R·T1111", cls="truck", person="P-666"))
        assert states(sink) == [("blacklist", "P-666", "firing")]

    def test_others_pass(self) -> None:
        """Plates and persons not listed raise nothing."""
        eng, sink = engine(BLACKLIST)
        play(eng, vehicle(0), walker(1, "P-001"))
        assert sink.signals == []

    def test_resolves_after_resolve_after_s_from_the_last_sighting(self) -> None:
        """Seen again while firing: no new signal, and the alert lasts resolve_after_s from then."""
        eng, sink = engine({**BLACKLIST, "resolve_after_s": 600})
        play(eng, walker(0, "P-666", granted=False), walker(500, "P-666", granted=False))
        eng.tick(at(1099))
        assert len(sink.signals) == 1
        eng.tick(at(1100))
        assert states(sink) == [("blacklist", "P-666", "firing"), ("blacklist", "P-666", "resolved")]

    def test_an_empty_blacklist_is_refused(self) -> None:
        """A blacklist listing neither plates nor persons is a config error."""
        with pytest.raises(ConfigError, match="plates or persons"):
            parse_rules({"rule": [{"type": "blacklist", "name": "blacklist"}]})


class TestDeniedRepeat:
    def test_one_denial_short_of_count_raises_nothing(self) -> None:
        """count - 1 denials within the window raise nothing."""
        eng, sink = engine(DENIED)
        play(eng, *(vehicle(s, cls="truck", granted=False) for s in (0, 60)))
        assert sink.signals == []

    def test_the_count_th_denial_fires(self) -> None:
        """The third denial within 600 s fires, with the count and the limit."""
        eng, sink = engine(DENIED)
        play(eng, *(vehicle(s, cls="truck", granted=False) for s in (0, 60, 120)))
        assert sink.states() == [("denied", PLATE, "firing", "major")]
        assert sink.signals[0].value == 3 and sink.signals[0].threshold == 3

    def test_the_window_is_inclusive(self) -> None:
        """Denials exactly window_s apart (first to last) count; one second more does not."""
        eng, sink = engine(DENIED)
        play(eng, *(vehicle(s, cls="truck", granted=False) for s in (0, 300, 600)))
        assert len(sink.signals) == 1
        eng, sink = engine(DENIED)
        play(eng, *(vehicle(s, cls="truck", granted=False) for s in (0, 300, 601)))
        assert sink.signals == []

    def test_granted_passages_and_other_subjects_do_not_count(self) -> None:
        """Only denials of the same plate or person count."""
        eng, sink = engine(DENIED)
        play(eng, vehicle(0, cls="truck", granted=False), vehicle(10, cls="truck"),
             vehicle(20, "粤R·B2345", cls="truck", granted=False), walker(30, "P-1", granted=False),
             walker(40, "P-1", granted=False))
        assert sink.signals == []
        play(eng, walker(50, "P-1", granted=False))
        assert states(sink) == [("denied", "P-1", "firing")]

    def test_resolves_after_resolve_after_s(self) -> None:
        """The alert resolves resolve_after_s after the last denial."""
        eng, sink = engine({**DENIED, "resolve_after_s": 900})
        play(eng, *(vehicle(s, cls="truck", granted=False) for s in (0, 60, 120)))
        eng.tick(at(1019))
        eng.tick(at(1020))
        assert [s[2] for s in states(sink)] == ["firing", "resolved"]


class TestOverstay:
    def test_a_dwell_exactly_at_the_limit_is_no_overstay(self) -> None:
        """Inside for exactly max_dwell_s: nothing; one second more: firing."""
        eng, sink = engine(OVERSTAY)
        play(eng, vehicle(0))
        eng.tick(at(8 * HOUR))
        assert sink.signals == []
        eng.tick(at(8 * HOUR + 1))
        assert sink.states() == [("overstay", PLATE, "firing", "major")]
        signal = sink.signals[0]
        assert signal.details["reason"] == "max_dwell" and signal.threshold == 8 * HOUR
        assert signal.value == 8 * HOUR + 1

    def test_it_resolves_when_the_vehicle_leaves(self) -> None:
        """The exit resolves the overstay at the exit's time; it fires once in between."""
        eng, sink = engine(OVERSTAY)
        play(eng, vehicle(0))
        eng.tick(at(9 * HOUR))
        eng.tick(at(9 * HOUR + 5))
        play(eng, vehicle(10 * HOUR, way="out"))
        assert states(sink) == [("overstay", PLATE, "firing"), ("overstay", PLATE, "resolved")]
        assert sink.signals[1].at == at(10 * HOUR)

    def test_the_booking_end_counts_when_it_comes_first(self) -> None:
        """Booked until 10:00 and still inside at 10:00:01: reason past_appointment."""
        eng, sink = engine(OVERSTAY)
        play(eng, booking(-HOUR, 4 * HOUR), vehicle(0))
        eng.tick(at(4 * HOUR))
        assert sink.signals == []
        eng.tick(at(4 * HOUR + 1))
        assert sink.signals[0].details["reason"] == "past_appointment"
        assert "仍在园内" in sink.signals[0].message_zh

    def test_a_late_entry_is_not_judged_against_its_past_booking(self) -> None:
        """A vehicle that came in after its booking ended is held to max_dwell_s only."""
        eng, sink = engine(OVERSTAY)
        play(eng, booking(-2 * HOUR, -HOUR), vehicle(0))
        eng.tick(at(HOUR))
        assert sink.signals == []

    def test_the_booking_can_be_switched_off(self) -> None:
        """appointment = false: only the dwell limit counts."""
        eng, sink = engine({**OVERSTAY, "appointment": False})
        play(eng, booking(-HOUR, HOUR), vehicle(0))
        eng.tick(at(2 * HOUR))
        assert sink.signals == []

    def test_a_class_without_a_limit_never_overstays(self) -> None:
        """A car with no booking and no dwell limit for its class stays as long as it likes."""
        eng, sink = engine(OVERSTAY)
        play(eng, vehicle(0, cls="car"))
        eng.tick(at(72 * HOUR))
        assert sink.signals == []

    def test_gate_events_check_in_their_own_time(self) -> None:
        """Another vehicle's event after the limit reveals the overstay, at that event's time."""
        eng, sink = engine(OVERSTAY)
        play(eng, vehicle(0), vehicle(8 * HOUR + 10, "粤R·C1111", cls="car", gate="G3"))
        assert states(sink) == [("overstay", PLATE, "firing")]
        assert sink.signals[0].at == at(8 * HOUR + 10)

    def test_a_bad_limit_names_its_key(self) -> None:
        """A dwell limit of 0, or for an unknown class, is refused naming the key."""
        with pytest.raises(ConfigError) as exc:
            parse_rules({"rule": [{**OVERSTAY, "max_dwell_s": {"hazmat": 0}}]})
        assert exc.value.key == "rules: rule[0].max_dwell_s.hazmat"
        with pytest.raises(ConfigError) as exc:
            parse_rules({"rule": [{**OVERSTAY, "max_dwell_s": {"tanker": 60}}]})
        assert exc.value.key.startswith("rules: rule[0].max_dwell_s.tanker")


class TestHazmatCap:
    def test_exactly_at_the_cap_raises_nothing(self) -> None:
        """Two hazmat vehicles inside with a cap of 2: nothing."""
        eng, sink = engine(CAP)
        play(eng, vehicle(0, "粤R·A0001"), vehicle(1, "粤R·A0002", cls="hazwaste"))
        assert sink.signals == []

    def test_one_over_the_cap_fires_and_leaving_resolves(self) -> None:
        """A third one fires (value 3, threshold 2) for the park; one leaving resolves."""
        eng, sink = engine(CAP)
        play(eng, vehicle(0, "粤R·A0001"), vehicle(1, "粤R·A0002"), vehicle(2, "粤R·A0003"))
        assert sink.states() == [("hazmat_cap", "park", "firing", "major")]
        assert sink.signals[0].value == 3 and sink.signals[0].threshold == 2
        assert sink.signals[0].message_zh == "园内危化品车辆 3 辆，超过上限 2 辆"
        play(eng, vehicle(3, "粤R·A0001", way="out"))
        assert states(sink)[-1] == ("hazmat_cap", "park", "resolved")

    def test_clear_gives_hysteresis(self) -> None:
        """With clear = 1, two inside keep it firing; one inside resolves."""
        eng, sink = engine({**CAP, "clear": 1, "source": "demo"})
        play(eng, *(vehicle(i, f"粤R·A000{i}") for i in range(3)), vehicle(10, "粤R·A0000", way="out"))
        assert states(sink) == [("hazmat_cap", "demo", "firing")]
        play(eng, vehicle(11, "粤R·A0001", way="out"))
        assert states(sink)[-1] == ("hazmat_cap", "demo", "resolved")

    def test_denied_entries_and_other_classes_do_not_count(self) -> None:
        """Only hazmat and hazwaste vehicles let in count."""
        eng, sink = engine(CAP)
        play(eng, vehicle(0, "粤R·A0001"), vehicle(1, "粤R·A0002"), vehicle(2, "粤R·A0003", granted=False),
             vehicle(3, "粤R·T0001", cls="truck"))
        assert sink.signals == []

    def test_clear_above_cap_is_refused(self) -> None:
        """clear must not lie above cap."""
        with pytest.raises(ConfigError, match="clear 3 is above cap 2"):
            parse_rules({"rule": [{**CAP, "clear": 3}]})


class TestExitWithoutEntry:
    def test_an_exit_of_a_vehicle_never_seen_coming_in(self) -> None:
        """A granted exit of an unknown vehicle fires (warning); an exit after an entry does not."""
        eng, sink = engine(EXIT)
        play(eng, vehicle(0, "粤R·A0001", cls="truck", gate="G2"), vehicle(60, "粤R·A0001", cls="truck", way="out"),
             vehicle(120, "粤R·A0002", cls="truck", way="out", gate="G2"))
        assert sink.states() == [("exit_without_entry", "粤R·A0002", "firing", "warning")]
        assert sink.signals[0].message_zh == "车辆 粤R·A0002 无入园记录即出园 (G2)"

    def test_a_second_exit_is_one_too_many(self) -> None:
        """In once, out twice: the second exit fires."""
        eng, sink = engine(EXIT)
        play(eng, vehicle(0), vehicle(60, way="out"), vehicle(120, way="out"))
        assert [s.at for s in sink.signals] == [at(120)]

    def test_denied_exits_and_entries_without_passage_do_not_count(self) -> None:
        """A denied entry does not put the vehicle inside; a denied exit is not an exit."""
        eng, sink = engine(EXIT)
        play(eng, vehicle(0, granted=False), vehicle(60, way="out", granted=False))
        assert sink.signals == []

    def test_persons_only_when_asked(self) -> None:
        """A person leaving unseen fires only with subjects including person."""
        eng, sink = engine(EXIT)
        play(eng, walker(0, "P-1", way="out"))
        assert sink.signals == []
        eng, sink = engine({**EXIT, "subjects": ["vehicle", "person"]})
        play(eng, walker(0, "P-1", way="out"))
        assert states(sink) == [("exit_without_entry", "P-1", "firing")]

    def test_warmup_after_the_first_gate_event(self) -> None:
        """Within warmup_s of the first gate event ever seen nothing is judged; at warmup_s it is."""
        eng, sink = engine({**EXIT, "warmup_s": 600})
        play(eng, vehicle(0, "粤R·A0001", way="out"), vehicle(599, "粤R·A0002", way="out"))
        assert sink.signals == []
        play(eng, vehicle(600, "粤R·A0003", way="out"))
        assert states(sink) == [("exit_without_entry", "粤R·A0003", "firing")]

    def test_resolves_after_resolve_after_s(self) -> None:
        """The alert resolves by itself resolve_after_s after the exit."""
        eng, sink = engine({**EXIT, "resolve_after_s": 60})
        play(eng, vehicle(0, way="out"))
        eng.tick(at(60))
        assert [s[2] for s in states(sink)] == ["firing", "resolved"]


class TestParkState:
    def test_granted_passages_decide_who_is_inside(self) -> None:
        """Granted in puts a vehicle or person inside, granted out takes it out, denied changes nothing."""
        eng, _ = engine(EXIT)
        play(eng, vehicle(0, gate="G1"), vehicle(10, "粤R·T0001", cls="truck", gate="G2", granted=False),
             walker(20, "P-1"), walker(30, "P-2"), walker(40, "P-2", way="out"))
        state = park_state(eng)
        assert [(p.shown, p.gate, p.vehicle_class, p.hazmat) for p in state.vehicles()] == [
            (PLATE, "G1", "hazmat", True)]
        assert state.vehicle("粤RA1234") is not None and state.vehicle(PLATE).since == at(0)  # type: ignore[union-attr]
        assert [p.shown for p in state.persons()] == ["P-1"]
        assert state.hazmat_inside() == 1

    def test_one_shared_state_goes_first(self) -> None:
        """compile_rules puts one ParkState (after the air-quality tracker) before the gate rules and hands the
        same one to each."""
        parsed = parse_rules({"rule": [{"type": "threshold", "name": "pm25", "value": "pm25",
                                        "levels": [{"above": 75}]}, APPOINTMENT, OVERSTAY, CAP]})
        rules = compile_rules(parsed, Park(TZ))
        assert [r.name for r in rules] == ["air_quality", "park_state", "pm25", "hazmat_booking", "overstay",
                                           "hazmat_cap"]
        assert all(getattr(r, "state", rules[1]) is rules[1] for r in rules[2:])

    def test_no_state_without_gate_rules(self) -> None:
        """A rules file without gate rules compiles as before: no park_state."""
        parsed = parse_rules({"rule": [{"type": "offline", "name": "offline"}]})
        assert [r.name for r in compile_rules(parsed, Park(TZ))] == ["air_quality", "offline"]
        assert "park_state" not in fingerprints(parsed)

    def test_park_state_is_a_reserved_rule_name(self) -> None:
        """A rule may not be called park_state."""
        with pytest.raises(ConfigError, match="reserved"):
            parse_rules({"rule": [{**EXIT, "name": "park_state"}]})

    def test_mqtt_bookings_can_be_withdrawn(self) -> None:
        """An AppointmentCancelled removes the plate's MQTT booking."""
        eng, sink = engine(APPOINTMENT)
        play(eng, booking(-HOUR, HOUR), AppointmentCancelled(plate=PLATE), vehicle(0))
        assert sink.signals[0].details["reason"] == "no_appointment"


def write_bookings(path: Path, bookings: list[Appointment] | str, mtime_s: int) -> None:
    """Write the bookings file and give it a distinct modification time."""
    text = bookings if isinstance(bookings, str) else json.dumps(
        [b.model_dump(mode="json") for b in bookings], ensure_ascii=False)
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime_s * 10**9, mtime_s * 10**9))


class TestBookingsFile:
    def test_file_bookings_admit_a_vehicle(self, tmp_path: Path) -> None:
        """A booking in the file counts from the first event, before any tick."""
        path = tmp_path / "bookings.json"
        write_bookings(path, [booking(-HOUR, HOUR, gates=["G1"])], 1)
        eng, sink = engine(APPOINTMENT, bookings={"file": str(path)})
        play(eng, vehicle(0))
        assert sink.signals == []

    def test_a_changed_file_is_reloaded_on_tick(self, tmp_path: Path) -> None:
        """Changing the file (its modification time) replaces the file bookings at the next tick."""
        path = tmp_path / "bookings.json"
        write_bookings(path, [booking(-HOUR, HOUR, gates=["G1"])], 1)
        eng, sink = engine(APPOINTMENT, bookings={"file": str(path)})
        eng.tick(at(0))
        write_bookings(path, [booking(-HOUR, HOUR, gates=["G2"])], 2)
        eng.tick(at(1))
        play(eng, vehicle(2, gate="G1"))
        assert sink.signals[0].details["reason"] == "wrong_gate"

    def test_a_bad_file_keeps_the_previous_bookings(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """Broken JSON or one invalid entry: the old bookings stay, the reason is logged and noticed once."""
        path = tmp_path / "bookings.json"
        write_bookings(path, [booking(-HOUR, HOUR)], 1)
        eng, sink = engine(APPOINTMENT, bookings={"file": str(path)})
        eng.tick(at(0))
        write_bookings(path, '[{"plate": "粤R·A1234", "valid_from": ', 2)
        with caplog.at_level(logging.ERROR, logger="rules.park_state"):
            eng.tick(at(1))
            eng.tick(at(2))
        assert "not JSON" in caplog.text
        notices = [s for s in sink.signals if s.state == "notice"]
        assert [(s.rule, s.source) for s in notices] == [("park_state", "bookings")]
        write_bookings(path, '[{"plate": "粤R·B2345", "valid_from": "2026-11-27T09:00:00+08:00", '
                             '"valid_to": "2026-11-27T08:00:00+08:00"}]', 3)
        eng.tick(at(3))
        assert "[0]" in sink.signals[-1].message
        play(eng, vehicle(10))
        assert states(sink) == []

    def test_a_plate_booked_twice_refuses_the_file(self, tmp_path: Path) -> None:
        """Two bookings of one plate in the file are ambiguous: the file is refused."""
        path = tmp_path / "bookings.json"
        write_bookings(path, [booking(-HOUR, HOUR), booking(HOUR, 2 * HOUR, plate="粤RA1234")], 1)
        eng, sink = engine(APPOINTMENT, bookings={"file": str(path)})
        play(eng, vehicle(0))
        assert "booked twice" in sink.signals[0].message
        assert states(sink) == [("hazmat_booking", PLATE, "firing")]

    def test_mqtt_wins_over_the_file_and_withdrawing_it_restores_the_file(self, tmp_path: Path) -> None:
        """For one plate the MQTT booking applies; once it is withdrawn, the file's applies again."""
        path = tmp_path / "bookings.json"
        write_bookings(path, [booking(-HOUR, HOUR, gates=["G1"])], 1)
        eng, sink = engine(APPOINTMENT, bookings={"file": str(path)})
        play(eng, booking(-HOUR, HOUR, gates=["G2"]), vehicle(0, gate="G1"))
        assert sink.signals[0].details["reason"] == "wrong_gate"
        play(eng, AppointmentCancelled(plate=PLATE), vehicle(10, "粤R·A1234", way="out"), vehicle(20, gate="G1"))
        assert states(sink) == [("hazmat_booking", PLATE, "firing"), ("hazmat_booking", PLATE, "resolved")]

    def test_a_relative_path_is_found_beside_the_rules_file(self, tmp_path: Path) -> None:
        """[bookings] file = "bookings.json" in a rules file means the file next to it."""
        rules = tmp_path / "rules.toml"
        rules.write_text('[[rule]]\ntype = "hazmat_appointment"\nname = "b"\n[bookings]\nfile = "bookings.json"\n')
        assert load_rules(rules).bookings.file == str(tmp_path / "bookings.json")


class TestRestart:
    RULES: ClassVar[list[dict[str, Any]]] = [APPOINTMENT, OVERSTAY, CAP, EXIT]

    def test_a_stay_survives_a_restart(self) -> None:
        """Snapshot → JSON → fresh engine: the overstay fires on time, the exit resolves it, no exit alarm."""
        eng, _ = engine(*self.RULES)
        play(eng, booking(-HOUR, 10 * HOUR), vehicle(0), vehicle(60, "粤R·B2345", un="1203"))
        eng.tick(at(2 * HOUR))
        saved = json.loads(json.dumps(eng.snapshot(), ensure_ascii=False))

        eng2, sink = engine(*self.RULES)
        eng2.restore(saved)
        assert park_state(eng2).hazmat_inside() == 2
        eng2.tick(at(8 * HOUR))
        assert sink.signals == []
        eng2.tick(at(8 * HOUR + 1))
        assert states(sink) == [("overstay", PLATE, "firing")]
        play(eng2, vehicle(8 * HOUR + 30, way="out"))
        assert states(sink) == [("overstay", PLATE, "firing"), ("overstay", PLATE, "resolved")]
        assert park_state(eng2).hazmat_inside() == 1

    def test_mqtt_bookings_survive_a_restart(self) -> None:
        """A booking received before the restart still admits the vehicle after it."""
        eng, _ = engine(APPOINTMENT)
        play(eng, booking(-HOUR, HOUR, gates=["G1"]))
        eng2, sink = engine(APPOINTMENT)
        eng2.restore(json.loads(json.dumps(eng.snapshot(), ensure_ascii=False)))
        play(eng2, vehicle(0))
        assert sink.signals == []

    def test_the_state_is_kept_when_the_gate_rules_change(self) -> None:
        """A reload that changes a gate rule keeps who is inside: park_state's fingerprint does not change."""
        before = parse_rules({"rule": [OVERSTAY]})
        after = parse_rules({"rule": [{**OVERSTAY, "max_dwell_s": {"hazmat": 4 * HOUR}}, EXIT]})
        unchanged = {n for n, f in fingerprints(after).items() if fingerprints(before).get(n) == f}
        assert unchanged == {"park_state", "air_quality"}
        eng, _ = engine(OVERSTAY)
        play(eng, vehicle(0))
        eng2, sink = engine(*after.model_dump()["rule"])
        eng2.restore(json.loads(json.dumps(eng.snapshot())), unchanged)
        play(eng2, vehicle(4 * HOUR + 1, way="out"))
        assert states(sink) == []


    def test_who_is_inside_survives_a_service_restart(self, tmp_path: Path) -> None:
        """Through the rules thread's state file: a vehicle let in before a stop may leave after a start."""
        rules = tmp_path / "rules.toml"
        rules.write_text('[[rule]]\ntype = "exit_without_entry"\nname = "exit_without_entry"\n')

        def runner(sink: RecordingSink) -> RulesRunner:
            return RulesRunner(rules, Park(TZ), sink, state_path=tmp_path / "state.json", tick_s=0.02,
                               save_every_s=0.05)

        def decoded(event: GateEvent) -> NewValue:
            return int(event.ts.timestamp() * 1e9), event

        first = runner(RecordingSink())
        first.start()
        first.feed([decoded(vehicle(0))])
        assert eventually(lambda: park_state(first.engine).vehicle(PLATE) is not None)
        first.stop()
        sink = RecordingSink()
        second = runner(sink)
        second.start()
        assert park_state(second.engine).vehicle(PLATE) is not None
        second.feed([decoded(vehicle(60, way="out"))])
        assert eventually(lambda: park_state(second.engine).vehicles() == [])
        second.stop()
        assert states(sink) == []


class TestSimulatedDay:
    RULES: ClassVar[list[dict[str, Any]]] = [
        {**APPOINTMENT}, GATE_CLASS, BLACKLIST, DENIED,
        {**OVERSTAY, "max_dwell_s": {"hazmat": 8 * HOUR, "hazwaste": 8 * HOUR, "truck": 12 * HOUR}},
        CAP, EXIT]

    def test_a_day_of_gate_traffic(self, tmp_path: Path) -> None:
        """One day at three gates gives exactly the alerts an operator should see, in order."""
        path = tmp_path / "bookings.json"
        write_bookings(path, [booking(0, 14 * HOUR, "粤R·D4567", gates=["G1"], un="1005")], 1)
        eng, sink = engine(*self.RULES, bookings={"file": str(path)})
        h = HOUR
        play(eng,
             booking(0, 12 * h, "粤R·A1234", gates=["G1"], un="1203"),
             booking(0, 12 * h, "粤R·B2345", un="1830"),
             booking(-24 * h, -12 * h, "粤R·C3456", gates=["G1"]),            # yesterday's booking
             vehicle(1 * h, "粤R·A1234", gate="G1"),                           # 07:00 booked, in
             vehicle(1 * h + 600, "粤R·B2345", gate="G1", un="1830"),          # 07:10 booked, in
             vehicle(1 * h + 1200, "粤R·D4567", gate="G1", un="1005"),         # 07:20 file booking: 3 inside
             vehicle(1 * h + 1800, "粤R·E1111", cls="car", gate="G3"),         # 07:30 a car at the car gate
             vehicle(1 * h + 2400, "粤R·C3456", gate="G1", granted=False),     # 07:40 booking expired, refused
             vehicle(1 * h + 2700, "粤R·F2222", gate="G2", granted=False),     # 07:45 no booking, car gate
             vehicle(2 * h, "粤R·X9999", cls="truck", gate="G2", granted=False),        # 08:00 blacklisted
             vehicle(2 * h + 120, "粤R·X9999", cls="truck", gate="G2", granted=False),  # 08:02
             vehicle(2 * h + 240, "粤R·X9999", cls="truck", gate="G2", granted=False),  # 08:04 third denial
             vehicle(3 * h, "粤R·A1234", way="out", gate="G1"))                # 09:00 two inside again
        eng.tick(at(3 * h + 1800))                                             # 09:30
        play(eng,
             vehicle(4 * h, "粤R·G3333", cls="truck", way="out", gate="G2"),   # 10:00 never came in
             walker(6 * h, "P-666", granted=False))                            # 12:00 blacklisted person
        eng.tick(at(9 * h + 600))                                              # 15:10: B2345 exactly 8 h inside
        eng.tick(at(9 * h + 601))                                              # 15:10:01
        play(eng,
             vehicle(9 * h + 1800, "粤R·B2345", way="out", gate="G1", un="1830"),  # 15:30, D4567 now over 8 h
             vehicle(10 * h, "粤R·D4567", way="out", gate="G1", un="1005"),        # 16:00
             vehicle(11 * h, "粤R·E1111", cls="car", way="out", gate="G3"))        # 17:00
        eng.tick(at(12 * h))

        assert states(sink) == [
            ("hazmat_cap", "park", "firing"),                 # 07:20
            ("hazmat_booking", "粤R·C3456", "firing"),        # 07:40
            ("hazmat_booking", "粤R·F2222", "firing"),        # 07:45
            ("gate_class", "粤R·F2222", "firing"),
            ("blacklist", "粤R·X9999", "firing"),             # 08:00
            ("denied", "粤R·X9999", "firing"),                # 08:04
            ("hazmat_cap", "park", "resolved"),               # 09:00
            ("hazmat_booking", "粤R·C3456", "resolved"),      # 09:30 tick: an hour after each
            ("hazmat_booking", "粤R·F2222", "resolved"),
            ("gate_class", "粤R·F2222", "resolved"),
            ("blacklist", "粤R·X9999", "resolved"),
            ("denied", "粤R·X9999", "resolved"),
            ("exit_without_entry", "粤R·G3333", "firing"),    # 10:00
            ("blacklist", "P-666", "firing"),                 # 12:00
            ("blacklist", "P-666", "resolved"),               # 15:10 tick
            ("exit_without_entry", "粤R·G3333", "resolved"),
            ("overstay", "粤R·B2345", "firing"),              # 15:10:01
            ("overstay", "粤R·B2345", "resolved"),            # 15:30
            ("overstay", "粤R·D4567", "firing"),
            ("overstay", "粤R·D4567", "resolved"),            # 16:00
        ]
        assert sink.signals[1].details["reason"] == "outside_validity"
        assert sink.signals[2].message_zh == "粤R·F2222 危化品车辆无有效预约入园 (G2)"
        assert park_state(eng).vehicles() == [] and park_state(eng).hazmat_inside() == 0


class TestRulesFileErrors:
    @pytest.mark.parametrize(("rule", "key"), [
        ({"type": "gate_class", "name": "g", "gates": {"G1": ["tanker"]}}, "rules: rule[0].gates.G1[0]"),
        ({"type": "gate_class", "name": "g", "gates": {}}, "rules: rule[0].gates"),
        ({"type": "hazmat_cap", "name": "c"}, "rules: rule[0].cap"),
        ({"type": "hazmat_cap", "name": "c", "cap": -1}, "rules: rule[0].cap"),
        ({"type": "denied_repeat", "name": "d", "count": 1}, "rules: rule[0].count"),
        ({"type": "denied_repeat", "name": "d", "window_s": 0}, "rules: rule[0].window_s"),
        ({"type": "hazmat_appointment", "name": "a", "resolve_after_s": 0}, "rules: rule[0].resolve_after_s"),
        ({"type": "hazmat_appointment", "name": "a", "severity": "urgent"}, "rules: rule[0].severity"),
        ({"type": "exit_without_entry", "name": "e", "subjects": ["animal"]}, "rules: rule[0].subjects[0]"),
        ({"type": "exit_without_entry", "name": "e", "subject": ["person"]}, "rules: rule[0].subject"),
        ({"type": "blacklist", "name": "b", "plates": ["粤R·X9999"], "stations": ["ST01"]},
         "rules: rule[0].stations"),
    ])
    def test_a_bad_gate_rule_names_its_key(self, rule: dict[str, Any], key: str) -> None:
        """Each bad setting is refused naming rule[i].key."""
        with pytest.raises(ConfigError) as exc:
            parse_rules({"rule": [rule]})
        assert exc.value.key == key

    def test_a_misspelt_bookings_key(self) -> None:
        """An unknown key in [bookings], such as path, is refused by name."""
        with pytest.raises(ConfigError) as exc:
            parse_rules({"bookings": {"path": "b.json"}})
        assert exc.value.key == "rules: bookings.path" and exc.value.reason == "unknown key"
