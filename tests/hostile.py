"""A catalogue of hostile and broken messages, each with the reason it must be dead-lettered with.

Shared by the decoder's unit tests and the integration test that sends them through a real broker.
Topics are relative to `park/{park}/`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ingest import hj212

NOW = datetime.now(UTC).replace(microsecond=0)
TS = NOW.isoformat()


@dataclass(frozen=True)
class Case:
    name: str
    topic: str
    payload: bytes
    reason: str


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _reading(**overrides: object) -> bytes:
    body: dict[str, object] = {"ts": TS, "values": {"pm25": 35.2}}
    body.update(overrides)
    return _j(body)


def _gate(**overrides: object) -> bytes:
    body: dict[str, object] = {
        "ts": TS, "event_id": "G1-1", "direction": "in", "subject": "vehicle", "plate": "粤R·A1234",
        "vehicle_class": "hazmat", "hazmat": {"un_number": "1203", "hazard_class": "3", "load_t": 18.5},
        "credential": "plate", "granted": True,
    }
    body.update(overrides)
    return _j({k: v for k, v in body.items() if v is not None})


def _frame(segment: str) -> bytes:
    return hj212.build_frame(segment)


_SEGMENT = (
    "QN=20261127080000000;ST=22;CN=2011;PW=123456;MN=ST01MN;Flag=4;"
    "CP=&&DataTime=20261127080000;a34004-Rtd=35.2,a34004-Flag=N&&"
)
_GOOD_FRAME = _frame(_SEGMENT)

AIR = "air/ST01/reading"
GATE = "gate/G1/event"

CASES: tuple[Case, ...] = (
    Case("not json", AIR, b"{not json", "invalid_json"),
    Case("truncated json", AIR, b'{"ts": "2026-', "invalid_json"),
    Case("empty payload", AIR, b"", "invalid_json"),
    Case("not utf-8", AIR, b'\xff\xfe{"ts": 1}', "not_utf8"),
    Case("json array", AIR, b"[1, 2, 3]", "not_an_object"),
    Case("json string", AIR, b'"reading"', "not_an_object"),
    Case("json number", AIR, b"42", "not_an_object"),
    Case("missing ts", AIR, _j({"values": {"pm25": 1}}), "missing_field"),
    Case("missing values", AIR, _j({"ts": TS}), "missing_field"),
    Case("number as text", AIR, _reading(values={"pm25": "35.2"}), "wrong_type"),
    Case("number as bool", AIR, _reading(values={"pm25": True}), "wrong_type"),
    Case("ts as float", AIR, _reading(ts=1.5), "wrong_type"),
    Case("values as list", AIR, _reading(values=[35.2]), "wrong_type"),
    Case("seq as text", AIR, _reading(seq="7"), "wrong_type"),
    Case("NaN", AIR, b'{"ts": "%s", "values": {"pm25": NaN}}' % TS.encode(), "not_finite"),
    Case("Infinity", AIR, b'{"ts": "%s", "values": {"pm25": -Infinity}}' % TS.encode(), "not_finite"),
    Case("overflow to inf", AIR, b'{"ts": "%s", "values": {"pm25": 1e999}}' % TS.encode(), "not_finite"),
    Case("no values", AIR, _reading(values={}), "no_values"),
    Case("value name with space", AIR, _reading(values={"pm 2.5": 1.0}), "bad_value_name"),
    Case("value name like a flag field", AIR, _reading(values={"pm25_flag": 1.0}), "bad_value_name"),
    Case("too many values", AIR, _reading(values={f"v{i}": 1.0 for i in range(100)}), "too_many_values"),
    Case("absurd negative", AIR, _reading(values={"pm25": -5000.0}), "value_out_of_range"),
    Case("humidity over 100", AIR, _reading(values={"rh": 250.0}), "value_out_of_range"),
    Case("absurd unknown value", AIR, _reading(values={"benzene": 1e12}), "value_out_of_range"),
    Case("ts not a date", AIR, _reading(ts="yesterday"), "bad_timestamp"),
    Case("ts before 2000", AIR, _reading(ts="1999-12-31T00:00:00+00:00"), "timestamp_out_of_range"),
    Case("ts in the future", AIR, _reading(ts=(NOW + timedelta(days=1)).isoformat()), "timestamp_out_of_range"),
    Case("epoch ms overflow", AIR, _reading(ts=10**20), "timestamp_out_of_range"),
    Case("flag without value", AIR, _reading(flags={"so2": "M"}), "flag_without_value"),
    Case("flag of two letters", AIR, _reading(flags={"pm25": "NN"}), "bad_flag"),
    Case("duplicate key", AIR, b'{"ts": "%s", "ts": "%s", "values": {"pm25": 1}}' % (TS.encode(), TS.encode()),
         "duplicate_key"),
    Case("oversized payload", AIR, _reading(pad="x" * 70_000), "payload_too_large"),
    Case("nested too deeply", AIR, b"[" * 30_000 + b"]" * 30_000, "invalid_json"),
    Case("integer with 5000 digits", AIR, b'{"ts": ' + b"1" * 5000 + b"}", "invalid_json"),
    Case("station id with a dot", "air/ST.01/reading", _reading(), "bad_device_id"),
    Case("station id of 65 chars", f"air/{'S' * 65}/reading", _reading(), "bad_device_id"),
    Case("station id in Chinese", "air/站点1/reading", _reading(), "bad_device_id"),
    Case("gate direction unknown", GATE, _gate(direction="sideways"), "bad_enum"),
    Case("vehicle without plate", GATE, _gate(plate=None), "missing_field"),
    Case("hazmat without hazmat", GATE, _gate(hazmat=None), "missing_field"),
    Case("granted as text", GATE, _gate(granted="yes"), "wrong_type"),
    Case("event id with NUL", GATE, _gate(event_id="G1\u0000x"), "bad_text"),
    Case("UN number too short", GATE, _gate(hazmat={"un_number": "12", "hazard_class": "3"}), "bad_field"),
    Case("person without id", GATE, _gate(subject="person", plate=None, vehicle_class=None, hazmat=None),
         "missing_field"),
    Case("status online as text", "air/ST01/status", _j({"online": "yes"}), "wrong_type"),
    Case("appointment for another plate", "registry/appointment/粤R·B9999",
         _j({"plate": "粤R·A1234", "valid_from": TS, "valid_to": (NOW + timedelta(days=1)).isoformat()}),
         "plate_mismatch"),
    Case("appointment ending before it starts", "registry/appointment/粤R·A1234",
         _j({"plate": "粤R·A1234", "valid_from": TS, "valid_to": (NOW - timedelta(days=1)).isoformat()}),
         "bad_validity"),
    Case("hj212 without ##", "air/ST01/hj212", _GOOD_FRAME[2:], "missing_header"),
    Case("hj212 with a wrong CRC", "air/ST01/hj212", _GOOD_FRAME[:-6] + b"0000\r\n", "crc_mismatch"),
    Case("hj212 with a wrong length", "air/ST01/hj212", b"##0050" + _GOOD_FRAME[6:], "length_mismatch"),
    Case("hj212 not ascii", "air/ST01/hj212", _GOOD_FRAME.replace(b"ST01MN", "站点MN".encode()), "not_ascii"),
)
