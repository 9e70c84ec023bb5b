"""Hostile input through a real broker: every bad message is dead-lettered with its own reason, the
service keeps running, and the accounting closes."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from config.compose import Service, build
from config.settings import settings_from_dict
from tests.hostile import CASES, TS, Case
from tests.integration.harness import eventually
from tests.servers import InfluxDB1Server, MosquittoServer

pytestmark = pytest.mark.integration

EXTRA = (
    Case(
        "station not configured",
        "air/ST99/reading",
        json.dumps({"ts": TS, "values": {"pm25": 1}}).encode(),
        "unknown_station",
    ),
    Case("gate not configured", "gate/G9/event", b"{}", "unknown_gate"),
)
ALL = CASES + EXTRA


class Collector:
    """Subscribes to a topic and keeps every payload, in order."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"col-{uuid.uuid4().hex[:6]}", protocol=MQTTProtocolVersion.MQTTv5
        )
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *a: subscribed.set()
        self._client.connect("127.0.0.1", port)
        self._client.subscribe(topic, qos=1)
        self._client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(json.loads(msg.payload))

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def service(tmp_path: Path, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server) -> Iterator[Service]:
    raw = {
        "data_dir": str(tmp_path / "data"),
        "park": {"id": "demo", "stations": ["ST01"], "gates": ["G1"]},
        "mqtt": {"url": mosquitto.url, "client_id": f"pw-{uuid.uuid4().hex[:6]}"},
        "store": {"url": influxdb1.url_for("pw"), "flush_interval_s": 0.2},
        "http": {"listen": "127.0.0.1:0"},
    }
    svc = build(settings_from_dict(raw, {}))
    svc.start()
    assert svc.source.wait_connected(10)
    time.sleep(0.3)  # let the SUBSCRIBE reach the broker before the first publish
    yield svc
    svc.stop()


def payload_of(record: dict[str, Any]) -> bytes:
    if record.get("encoding") == "base64":
        return base64.b64decode(record["payload"])
    return str(record["payload"]).encode()


def test_every_bad_message_is_dead_lettered_with_its_reason(
    service: Service, mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    """At least 30 kinds of bad message, each dead-lettered (MQTT and local log) with the reason that fits."""
    collector = Collector(mosquitto.port, "park/demo/deadletter")
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id="hostile", protocol=MQTTProtocolVersion.MQTTv5)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    good = {"ts": TS, "values": {"pm25": 12.0}}
    for case in ALL:
        publisher.publish(f"park/demo/{case.topic}", case.payload, qos=1).wait_for_publish(5)
    publisher.publish("park/demo/air/ST01/reading", json.dumps(good), qos=1).wait_for_publish(5)
    publisher.publish("park/demo/air/ST01/reading", json.dumps(good), qos=1).wait_for_publish(5)  # duplicate

    assert eventually(lambda: len(collector.messages) >= len(ALL), 30), len(collector.messages)
    assert len({c.name for c in ALL}) >= 30
    for case, record in zip(ALL, collector.messages, strict=True):
        assert record["topic"] == f"park/demo/{case.topic}", case.name
        assert record["code"] == case.reason, f"{case.name}: {record['reason']}"
        assert record["reason"].startswith(case.reason)
        assert payload_of(record) == case.payload[:4096], case.name
        assert "received_at" in record

    log_lines = (tmp_path / "data" / "deadletter.jsonl").read_text().splitlines()
    assert [json.loads(line)["code"] for line in log_lines] == [c.reason for c in ALL]

    def idle() -> bool:
        c = service.pipeline.counters()
        return c["in_spool"] == 0 and c["received"] == len(ALL) + 2

    assert eventually(idle, 20), service.pipeline.counters()
    c = service.pipeline.counters()
    assert (c["stored"], c["deadlettered"], c["duplicates"]) == (1, len(ALL), 1)
    assert c["received"] == c["stored"] + c["deadlettered"] + c["duplicates"]
    assert service.source.connected, "the service must keep running after hostile input"
    collector.close()
    publisher.loop_stop()
