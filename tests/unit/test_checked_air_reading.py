"""`checked_air_reading` builds an AirReading without pydantic (for HJ 212 uploads and plain JSON readings):
whenever it gives a reading, that reading is the one `AirReading.model_validate` gives; whenever validation
would refuse, it gives None (and the decoder validates in full, which names the fault)."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import decode, hj212
from ingest.decode import Decoder, DecodeSettings
from ingest.errors import Rejected
from ingest.messages import Message
from ingest.models import AirReading, checked_air_reading
from ingest.points import epoch_ns

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
NOW_NS = epoch_ns(NOW)
SKEW = timedelta(minutes=10)
LATEST_NS = NOW_NS + epoch_ns(datetime(1970, 1, 1, tzinfo=UTC) + SKEW)


def validated(ts: datetime, values: Any, flags: Any, *, station: str, period: str, mn: str) -> AirReading:
    """What the decoder's full path makes of the same parts (Decoder._validate)."""
    latest = datetime.fromtimestamp(NOW_NS / 1e9, UTC) + SKEW
    raw = {"ts": ts, "values": values, "flags": flags, "station": station, "period": period, "mn": mn}
    return AirReading.model_validate(raw, context={"tz": TZ, "latest": latest})


def fast(ts: datetime, values: Any, flags: Any, *, station: str = "ST01", period: str = "",
         mn: str = "88888880000001") -> AirReading | None:
    return checked_air_reading(ts, epoch_ns(ts), dict(values), dict(flags), latest_ns=LATEST_NS,
                               station=station, period=period, mn=mn)


def assert_same(reading: AirReading, expected: AirReading) -> None:
    assert type(reading) is AirReading
    assert reading == expected
    assert list(reading.__dict__) == list(expected.__dict__)
    assert reading.model_fields_set == expected.model_fields_set
    assert reading.model_dump() == expected.model_dump()
    assert type(reading.ts.tzinfo) is type(expected.ts.tzinfo) and reading.ts.tzinfo == expected.ts.tzinfo
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        reading.station = "other"


class TestWhatItBuilds:
    def test_a_plain_upload_is_built_as_validation_builds_it(self) -> None:
        ts = datetime(2026, 12, 4, 19, 0, tzinfo=TZ)
        values, flags = {"pm25": 35.5, "so2": 8.0, "pm25_min": 30.0}, {"pm25": "N", "so2": "C"}

        reading = fast(ts, values, flags, period="hour")

        assert reading is not None
        assert_same(reading, validated(ts, values, flags, station="ST01", period="hour", mn="88888880000001"))

    def test_a_reading_without_flags_is_built_too(self) -> None:
        ts = datetime(2026, 12, 4, 19, 0, tzinfo=TZ)

        reading = fast(ts, {"co": 0.6}, {})

        assert reading is not None
        assert_same(reading, validated(ts, {"co": 0.6}, {}, station="ST01", period="", mn="88888880000001"))


class TestWhatItLeavesToValidation:
    """None for each fault validation refuses, and for what it cannot be certain of."""

    TS = datetime(2026, 12, 4, 19, 0, tzinfo=TZ)

    @pytest.mark.parametrize(("values", "flags"), [
        ({}, {}),  # no_values
        ({f"v{i}": 1.0 for i in range(65)}, {}),  # too_many_values
        ({"pm25": 1e7}, {}),  # value_out_of_range
        ({"wind_dir": -1.0}, {}),
        ({"pm25": math.nan}, {}),  # not_finite
        ({"pm25": math.inf}, {}),
        ({"2pm": 1.0}, {}),  # bad_value_name
        ({"pm25_flag": 1.0}, {}),
        ({"pm25": 1.0}, {"pm25": "NN"}),  # bad_flag
        ({"pm25": 1.0}, {"pm25": ""}),
        ({"pm25": 1.0}, {"pm25": "\x7f"}),
        ({"pm25": 1.0}, {"so2": "N"}),  # flag_without_value
        ({"pm25": 1}, {}),  # an int: validation makes it a float
    ])
    def test_a_fault_in_values_or_flags(self, values: dict[str, Any], flags: dict[str, Any]) -> None:
        assert fast(self.TS, values, flags) is None

    def test_a_time_before_2000(self) -> None:
        assert fast(datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), {"pm25": 1.0}, {}) is None

    def test_a_time_beyond_the_allowed_skew(self) -> None:
        assert fast(NOW + SKEW + timedelta(seconds=1), {"pm25": 1.0}, {}) is None

    def test_a_time_within_a_microsecond_of_the_skew_limit(self) -> None:
        assert fast(NOW + SKEW, {"pm25": 1.0}, {}) is None
        assert fast(NOW + SKEW - timedelta(microseconds=1), {"pm25": 1.0}, {}) is not None

    def test_a_time_without_a_zone(self) -> None:
        naive = datetime(2026, 12, 4, 11, 0)
        ts_ns = epoch_ns(naive.replace(tzinfo=UTC))
        assert checked_air_reading(naive, ts_ns, {"pm25": 1.0}, {}, latest_ns=LATEST_NS, station="ST01", period="",
                                   mn="") is None

    def test_a_period_the_model_does_not_know(self) -> None:
        assert fast(self.TS, {"pm25": 1.0}, {}, period="week") is None


# Mostly what validation accepts, so that both outcomes are common; then each kind of fault.
GOOD_NAMES = ["pm25", "so2", "wind_dir", "temp", "x", "v_1"]
NAMES = st.sampled_from(GOOD_NAMES * 4 + ["2pm", "pm25_flag", "a" * 65, ""])
NUMBERS = st.one_of(st.floats(-50, 300), st.floats(-50, 300), st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-10, 10), st.sampled_from([-100.0, 100_000.0, 360.0, -0.0, 1e9, -1e9, 1e9 + 1]))
FLAGS = st.one_of(st.sampled_from(["N", "F", "C", "!", "~"]), st.sampled_from([" ", "\x7f", "NN", "", "中"]),
                  st.text(max_size=2))
TIMES = st.one_of(
    st.datetimes(min_value=datetime(1999, 12, 31), max_value=datetime(2027, 1, 1), timezones=st.just(TZ)),
    st.integers(-3, 3).map(lambda us: NOW + SKEW + timedelta(microseconds=us)),
    st.integers(-3, 3).map(lambda us: datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)),
)


@settings(max_examples=400, deadline=None)
@given(ts=TIMES, values=st.dictionaries(NAMES, NUMBERS, min_size=1, max_size=5),
       flags=st.dictionaries(st.sampled_from(GOOD_NAMES), FLAGS, max_size=2),
       period=st.sampled_from(["", "minute", "hour", "day", "rtd"]))
def test_it_never_disagrees_with_validation(
    ts: datetime, values: dict[str, Any], flags: dict[str, Any], period: str
) -> None:
    reading = fast(ts, values, flags, period=period)
    try:
        expected = validated(ts, values, flags, station="ST01", period=period, mn="88888880000001")
    except pydantic.ValidationError:
        assert reading is None
        return
    if reading is not None:
        assert_same(reading, expected)


class TestTheDecoder:
    """The decoder takes this path for HJ 212 uploads; the full validation decides the same."""

    def frames(self) -> list[bytes]:
        now = datetime.now(TZ).replace(microsecond=0)
        ok = hj212.encode_readings("88888880000001", "2011", now, {"pm25": 35.5, "so2": 8.0}, tz=TZ)
        flagged = hj212.encode_readings("88888880000001", "2061", now - timedelta(hours=1), {"pm25": 35.5}, tz=TZ,
                                        flags={"pm25": "C"})
        future = hj212.encode_readings("88888880000001", "2011", now + timedelta(hours=1), {"pm25": 1.0}, tz=TZ)
        too_high = hj212.encode_readings("88888880000001", "2011", now, {"wind_dir": 400.0}, tz=TZ)
        return [ok, flagged, future, too_high]

    def outcome(self, decoder: Decoder, payload: bytes) -> object:
        try:
            return decoder.decode(Message("park/demo/air/ST01/hj212", payload, time.time_ns()))
        except Rejected as exc:
            return exc.reason

    def test_it_decodes_every_frame_as_full_validation_does(self, monkeypatch: pytest.MonkeyPatch) -> None:
        decoder = Decoder(DecodeSettings(park="demo", tz=TZ), time.time_ns)
        frames = self.frames()
        fast_outcomes = [self.outcome(decoder, f) for f in frames]
        monkeypatch.setattr(decode, "checked_air_reading", lambda *a, **k: None)
        full_outcomes = [self.outcome(decoder, f) for f in frames]

        assert fast_outcomes == full_outcomes
        assert fast_outcomes[2:] == ["timestamp_out_of_range", "value_out_of_range"]

    def test_it_takes_the_fast_path_for_a_plain_upload(self, monkeypatch: pytest.MonkeyPatch) -> None:
        decoder = Decoder(DecodeSettings(park="demo", tz=TZ), time.time_ns)
        monkeypatch.setattr(AirReading, "model_validate", None)  # would fail if called

        decoded = self.outcome(decoder, self.frames()[0])

        assert not isinstance(decoded, str)


# JSON readings: mostly of the plain shape, then with keys besides the four, or with parts missing.
JSON_PARTS = {
    "ts": st.one_of(TIMES.map(lambda t: t.isoformat()), TIMES.map(lambda t: t.isoformat()),
                    TIMES.map(lambda t: t.replace(tzinfo=None).isoformat()),
                    TIMES.map(lambda t: int(t.timestamp() * 1000)), st.sampled_from(["", "2026-13-01", True])),
    "values": st.one_of(st.dictionaries(st.sampled_from(GOOD_NAMES), st.floats(-50, 300), min_size=1, max_size=5),
                        st.dictionaries(NAMES, NUMBERS, min_size=1, max_size=5), st.just([1.0])),
    "flags": st.dictionaries(st.sampled_from(GOOD_NAMES), FLAGS, max_size=2),
    "seq": st.one_of(st.integers(-2, 2**70), st.integers(-2, 2**70), st.none(), st.booleans(), st.just(1.5)),
}
JSON_OTHER_KEYS = {"station": st.just("ST99"), "period": st.sampled_from(["", "hour"]), "mn": st.just("1"),
                   "note": st.just("x")}
JSON_READINGS = st.fixed_dictionaries({"ts": JSON_PARTS["ts"], "values": JSON_PARTS["values"]},
                                      optional={"flags": JSON_PARTS["flags"], "seq": JSON_PARTS["seq"]})


class TestJsonReadings:
    """A device's JSON reading of the plain shape takes the same path; anything else goes to pydantic, and
    the decoder's outcome is the same either way."""

    def decoder(self) -> Decoder:
        return Decoder(DecodeSettings(park="demo", tz=TZ, max_clock_skew=SKEW), lambda: NOW_NS)

    def outcome(self, payload: bytes) -> object:
        try:
            decoded = self.decoder().decode(Message("park/demo/air/ST01/reading", payload, NOW_NS))
        except Rejected as exc:
            return (exc.reason, str(exc))
        return decoded

    def both(self, payload: bytes) -> tuple[object, object]:
        """The outcome with the fast path, then without it (no fixture: hypothesis's examples call it too)."""
        fast_outcome = self.outcome(payload)
        with pytest.MonkeyPatch.context() as m:
            m.setattr(decode, "checked_air_reading", lambda *a, **k: None)
            return fast_outcome, self.outcome(payload)

    def test_a_plain_reading_never_meets_pydantic(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(AirReading, "model_validate", None)  # would fail if called
        payload = b'{"ts":"2026-12-04T19:59:00+08:00","values":{"pm25":35.5,"so2":8.0},"flags":{"so2":"C"},"seq":7}'

        decoded = self.outcome(payload)

        assert isinstance(decoded, decode.Decoded) and isinstance(decoded.value, AirReading)
        assert decoded.value.seq == 7 and decoded.value.flags == {"so2": "C"}
        assert decoded.point.ts_ns == epoch_ns(datetime(2026, 12, 4, 11, 59, tzinfo=UTC))

    @pytest.mark.parametrize("payload", [
        b'{"ts":"2026-12-04T19:59:00","values":{"pm25":35.5}}',  # park time zone
        b'{"ts":1764849540000,"values":{"pm25":35.5},"seq":0}',  # epoch milliseconds
        b'{"ts":"2026-12-04T11:59:00Z","values":{"pm25":35.5},"flags":{},"seq":null}',
    ])
    def test_other_plain_readings_come_out_as_validation_makes_them(self, payload: bytes) -> None:
        fast_outcome, full_outcome = self.both(payload)

        assert isinstance(fast_outcome, decode.Decoded) and isinstance(full_outcome, decode.Decoded)
        assert_same_decoded(fast_outcome, full_outcome)

    @pytest.mark.parametrize("payload", [
        b'{"ts":"2026-12-04T19:59:00+08:00","values":{"pm25":35}}',  # an int: validation makes it a float
        b'{"ts":"2026-12-04T19:59:00+08:00","values":{"pm25":35.5},"station":"X"}',  # a key besides the four
        b'{"ts":"2026-12-04T19:59:00+08:00","values":{"pm25":35.5},"period":"hour"}',
        b'{"ts":"2026-12-04T19:59:00+08:00","values":{"pm25":35.5},"seq":true}',
        b'{"ts":"2026-12-04T19:59:00+08:00","values":{"pm25":35.5},"seq":-1}',
        b'{"ts":"yesterday","values":{"pm25":35.5}}',
        b'{"values":{"pm25":35.5}}',
    ])
    def test_the_rest_is_left_to_validation(self, payload: bytes) -> None:
        decoder = self.decoder()
        raw = json.loads(payload)

        assert decoder._plain_air(raw, "ST01") is None
        assert_same_outcome(*self.both(payload))

    @settings(max_examples=400, deadline=None)
    @given(raw=st.one_of(
        JSON_READINGS,
        st.tuples(JSON_READINGS, st.fixed_dictionaries({}, optional=JSON_OTHER_KEYS)).map(lambda p: {**p[0], **p[1]}),
        st.fixed_dictionaries({}, optional={**JSON_PARTS, **JSON_OTHER_KEYS}),
    ))
    def test_the_decoder_never_decides_otherwise(self, raw: dict[str, Any]) -> None:
        assert_same_outcome(*self.both(json.dumps(raw).encode()))


def assert_same_outcome(fast_outcome: object, full_outcome: object) -> None:
    """The same reading decoded, or the same refusal (reason and message)."""
    if isinstance(full_outcome, decode.Decoded):
        assert isinstance(fast_outcome, decode.Decoded)
        assert_same_decoded(fast_outcome, full_outcome)
    else:
        assert fast_outcome == full_outcome


def assert_same_decoded(decoded: decode.Decoded, expected: decode.Decoded) -> None:
    assert (decoded.point, decoded.key, decoded.unique_slot) == (expected.point, expected.key, expected.unique_slot)
    assert isinstance(decoded.value, AirReading) and isinstance(expected.value, AirReading)
    assert_same(decoded.value, expected.value)
