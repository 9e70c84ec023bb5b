"""New values cross the pipe from the ingest worker to the service pickled (ingest/worker.py): each kind
comes back equal, of its class, frozen, with the same fields given."""

from __future__ import annotations

import json
import pickle
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pydantic
import pytest

from ingest import hj212
from ingest.decode import Decoder, DecodeSettings
from ingest.messages import Message

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=TZ)
PLATE = "粤R·A1234"


def _json(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


MESSAGES = {
    "JSON reading with flags": ("air/ST01/reading", _json(
        {"ts": NOW.isoformat(), "values": {"pm25": 35.5, "o3": 80}, "flags": {"o3": "C"}, "seq": 7})),
    "HJ 212 hourly upload": ("air/ST01/hj212", hj212.encode_readings(
        "88888880000001", "2061", NOW, {"pm25": 35.5, "so2": 8.0}, tz=TZ)),
    "hazmat vehicle at a gate": ("gate/G2/event", _json(
        {"ts": NOW.isoformat(), "event_id": "G2-1", "direction": "in", "subject": "vehicle", "plate": PLATE,
         "vehicle_class": "hazmat", "hazmat": {"un_number": "1203", "hazard_class": "3", "load_t": 18.5},
         "credential": "plate", "granted": True})),
    "station status": ("air/ST01/status", _json({"online": False, "ts": NOW.isoformat()})),
    "appointment": (f"registry/appointment/{PLATE}", _json(
        {"plate": PLATE, "valid_from": NOW.isoformat(), "valid_to": "2026-12-04T10:00:00+08:00",
         "gates": ["G2"], "un_number": "1203"})),
    "cancelled appointment": (f"registry/appointment/{PLATE}", b""),
}


@pytest.mark.parametrize("name", MESSAGES)
def test_a_value_comes_back_as_it_was_sent(name: str) -> None:
    topic, payload = MESSAGES[name]
    decoder = Decoder(DecodeSettings(park="demo", tz=TZ), time.time_ns)
    value = decoder.decode(Message(f"park/demo/{topic}", payload, time.time_ns())).value
    assert value is not None

    back = pickle.loads(pickle.dumps([(1, value)], protocol=pickle.HIGHEST_PROTOCOL))[0][1]

    assert type(back) is type(value)
    assert back == value
    assert back.model_fields_set == value.model_fields_set
    assert back.model_dump() == value.model_dump()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        setattr(back, next(iter(type(back).model_fields)), None)
