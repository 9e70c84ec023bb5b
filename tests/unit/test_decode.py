"""The decoder: what a valid message becomes, and why each bad one is refused."""

from __future__ import annotations

import json
import time
from zoneinfo import ZoneInfo

import pytest

from ingest.decode import Decoder, DecodeSettings
from ingest.errors import Rejected
from ingest.messages import Message
from ingest.models import AirReading
from tests.hostile import CASES, Case

TZ = ZoneInfo("Asia/Shanghai")
T0 = 1795737600  # 2026-11-27T00:00:00Z = 08:00 in Shanghai


def decoder(**overrides: object) -> Decoder:
    settings = DecodeSettings(park="demo", tz=TZ, **overrides)  # type: ignore[arg-type]
    return Decoder(settings, time.time_ns)


def msg(topic: str, payload: object) -> Message:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Message(f"park/demo/{topic}", data, time.time_ns())


class TestAirReading:
    def test_json_reading_becomes_an_air_quality_point(self) -> None:
        """A reading becomes one air_quality point tagged park and station, one float field per value."""
        d = decoder().decode(msg("air/ST01/reading", {"ts": "2026-11-27T08:00:00+08:00", "values": {"pm25": 35}}))
        assert d.point.measurement == "air_quality"
        assert d.point.tags == {"park": "demo", "station": "ST01"}
        assert d.point.fields == {"pm25": 35.0}
        assert isinstance(d.point.fields["pm25"], float)
        assert d.point.ts_ns == T0 * 10**9

    def test_time_without_offset_is_read_in_the_park_time_zone(self) -> None:
        """A ts with no offset is local time of the park (Asia/Shanghai: UTC+8)."""
        d = decoder().decode(msg("air/ST01/reading", {"ts": "2026-11-27T08:00:00", "values": {"pm25": 1}}))
        assert d.point.ts_ns == T0 * 10**9

    def test_integer_ts_is_epoch_milliseconds(self) -> None:
        """An integer ts counts milliseconds since the epoch."""
        d = decoder().decode(msg("air/ST01/reading", {"ts": T0 * 1000 + 123, "values": {"pm25": 1}}))
        assert d.point.ts_ns == (T0 * 1000 + 123) * 10**6

    def test_flags_other_than_n_are_stored_as_string_fields(self) -> None:
        """Flag N is the default and not stored; other flags become <name>_flag fields."""
        payload = {"ts": T0 * 1000, "values": {"pm25": 1, "o3": 80}, "flags": {"o3": "C", "pm25": "N"}}
        d = decoder().decode(msg("air/ST01/reading", payload))
        assert d.point.fields == {"pm25": 1.0, "o3": 80.0, "o3_flag": "C"}
        assert d.value is not None and not d.value.valid("o3") and d.value.valid("pm25")  # type: ignore[union-attr]

    def test_the_values_that_do_not_count_are_those_flagged_invalid(self) -> None:
        """F, M, D, C and B make a value not count (HJ 212 Table 8); N, S and a vendor letter do not."""
        flags = {"a": "F", "b": "M", "c": "D", "d": "C", "e": "B", "f": "N", "g": "S", "h": "T"}
        payload = {"ts": T0 * 1000, "values": dict.fromkeys(flags, 1.0), "flags": flags}
        reading = decoder().decode(msg("air/ST01/reading", payload)).value
        assert isinstance(reading, AirReading)
        assert reading.invalid == {"a", "b", "c", "d", "e"}
        assert [n for n in flags if reading.valid(n)] == ["f", "g", "h"]
        unflagged = decoder().decode(msg("air/ST01/reading", {"ts": T0 * 1000, "values": {"a": 1.0}})).value
        assert isinstance(unflagged, AirReading) and unflagged.invalid == frozenset()

    def test_same_station_and_ts_give_the_same_dedup_key(self) -> None:
        """The dedup key is (station, ts): a resend with other values is still the same reading."""
        a = decoder().decode(msg("air/ST01/reading", {"ts": T0 * 1000, "values": {"pm25": 1}}))
        b = decoder().decode(msg("air/ST01/reading", {"ts": T0 * 1000, "values": {"pm25": 2}}))
        assert a.key == b.key

    def test_unknown_station_is_refused_when_stations_are_listed(self) -> None:
        """With [park] stations configured, a station not in the list is dead-lettered."""
        with pytest.raises(Rejected) as exc:
            decoder(stations=frozenset({"ST02"})).decode(msg("air/ST01/reading", {"ts": T0 * 1000,
                                                                                 "values": {"a": 1}}))
        assert exc.value.reason == "unknown_station"


class TestGateEvent:
    def test_gate_event_tags_and_fields(self) -> None:
        """A gate event is tagged by park, gate, direction, subject and vehicle class; the rest are fields."""
        payload = {"ts": T0 * 1000, "event_id": "G2-1", "direction": "in", "subject": "vehicle",
                   "plate": "粤R·A1234", "vehicle_class": "hazmat",
                   "hazmat": {"un_number": "1203", "hazard_class": "3", "load_t": 18.5},
                   "credential": "plate", "granted": True}
        d = decoder().decode(msg("gate/G2/event", payload))
        assert d.point.tags == {"park": "demo", "gate": "G2", "direction": "in", "subject": "vehicle",
                                "vehicle_class": "hazmat"}
        assert d.point.fields["plate"] == "粤R·A1234"
        assert d.point.fields["granted"] is True
        assert d.key == "g|G2|G2-1"
        assert d.unique_slot == "gts|G2"


class TestHostileInput:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_each_bad_message_has_its_own_reason(self, case: Case) -> None:
        """Every kind of bad message is refused with the reason that names what is wrong."""
        message = Message(f"park/demo/{case.topic}", case.payload, time.time_ns())
        with pytest.raises(Rejected) as exc:
            decoder().decode(message)
        assert exc.value.reason == case.reason, str(exc.value)

    def test_catalogue_has_at_least_thirty_distinct_kinds(self) -> None:
        """The hostile catalogue covers at least 30 kinds of bad message."""
        assert len({c.name for c in CASES}) >= 30


class TestTopics:
    def test_a_topic_decodes_the_same_every_time(self) -> None:
        """The decoder remembers parsed topics; the second message of a topic is read as the first was."""
        d = decoder()
        first, again = (d.decode(msg("air/ST01/reading", {"ts": T0 * 1000 + i, "values": {"pm25": 1}}))
                        for i in (0, 1))
        assert first.point.tags == again.point.tags == {"park": "demo", "station": "ST01"}

    def test_a_bad_topic_is_refused_every_time(self) -> None:
        """A topic that breaks the contract is never remembered as good."""
        d = decoder()
        for _ in range(2):
            with pytest.raises(Rejected, match="bad_device_id"):
                d.decode(msg("air/ST 01/reading", {"ts": T0 * 1000, "values": {"pm25": 1}}))

    def test_a_flood_of_invented_devices_takes_bounded_memory(self) -> None:
        """Past 10,000 remembered topics the memory starts over: a device id per message costs no memory."""
        d = decoder()
        for i in range(10_050):
            d.decode(msg(f"air/X{i}/reading", {"ts": T0 * 1000, "values": {"pm25": 1}}))
        assert len(d._routes) <= 10_000
        assert d.decode(msg("air/X3/reading", {"ts": T0 * 1000, "values": {"pm25": 1}})).point.tags["station"] == "X3"


class TestHj212Frames:
    def test_real_time_frame_becomes_a_plain_reading(self) -> None:
        """A CN 2011 frame is a reading like a JSON one: no period tag, MN kept, flags kept."""
        from ingest import hj212  # noqa: PLC0415

        segment = ("QN=20261127080000000;ST=22;CN=2011;PW=123456;MN=LOGGER01;Flag=4;"
                   "CP=&&DataTime=20261127080000;a34004-Rtd=35.2,a34004-Flag=N;a21005-Rtd=0.6,a21005-Flag=C&&")
        d = decoder().decode(Message("park/demo/air/ST01/hj212", hj212.build_frame(segment), time.time_ns()))
        assert d.point.tags == {"park": "demo", "station": "ST01"}
        assert d.point.fields == {"pm25": 35.2, "co": 0.6, "co_flag": "C", "mn": "LOGGER01"}
        assert d.point.ts_ns == T0 * 10**9

    def test_a_frame_that_is_not_a_data_upload_is_kept_not_read(self) -> None:
        """A valid CN 2021 (equipment status) frame is kept as hj212_frame with its segment, not dead-lettered."""
        from ingest import hj212  # noqa: PLC0415

        segment = ("QN=20261127080000000;ST=22;CN=2021;PW=123456;MN=LOGGER01;Flag=4;"
                   "CP=&&DataTime=20261127080000;i12001-RS=1&&")
        d = decoder().decode(Message("park/demo/air/ST01/hj212", hj212.build_frame(segment), time.time_ns()))
        assert d.point.measurement == "hj212_frame" and d.point.tags["cn"] == "2021"
        assert d.point.fields["segment"] == segment and d.value is None
