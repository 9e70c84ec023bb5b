"""The simulators against a real mosquitto: record and replay, the publisher, and a scenario stored by the service."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.cli import main
from config.compose import build
from config.settings import settings_from_dict
from ingest.decode import Decoder, DecodeSettings
from ingest.errors import Rejected
from ingest.messages import Message
from ingest.mqtt import MqttSettings
from simulators.clock import VirtualClock
from simulators.publish import MemorySink, MqttConnector, MqttPublisher, Outgoing, SharedConnector
from simulators.recording import Record, Recorder, read_records
from simulators.scenario import VIRTUAL_START, Simulation, load_scenario
from tests.integration.harness import eventually
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")  # the default park's

SCENARIO = """
name = "e2e"
description = "three stations (one HJ 212 with damaged frames), three gates with repeats"
seed = 9
duration = "12h"
interval = "2m"

[[stations]]
id = "ST01"
x = 0.0
y = 0.0

[[stations]]
id = "ST02"
x = 800.0
y = 0.0

[[stations]]
id = "ST03"
x = 0.0
y = 800.0
format = "hj212"

[[gates]]
id = "G1"
kind = "general"

[[gates]]
id = "G2"
kind = "hazmat"

[[gates]]
id = "G3"
kind = "car"

[traffic]
staff = 20
night_staff = 5
trucks = 10
visitors = 10
hazmat = 5
hazwaste = 1
repeat_rate = 0.05

[[episodes]]
type = "repeat"
at = "8h"
count = 3

[[episodes]]
type = "exit_without_entry"
at = "10h"

[[faults]]
type = "dropout"
station = "ST02"
at = "2h"
duration = "30m"

[[faults]]
type = "corrupt"
station = "ST03"
at = "3h"
duration = "20m"
kind = "bad_crc"
"""


def config_file(path: Path, url: str, *, park: str = "demo") -> Path:
    path.write_text(f'[park]\nid = "{park}"\n[mqtt]\nurl = "{url}"\nclient_id = "pw-{uuid.uuid4().hex[:8]}"\n')
    return path


def mqtt(server: MosquittoServer) -> MqttSettings:
    return MqttSettings(host="127.0.0.1", port=server.port, client_id=f"t-{uuid.uuid4().hex[:8]}")


def as_sent(items: list[Record] | list[Outgoing]) -> list[tuple[str, bytes, int, bool]]:
    return [(m.topic, m.payload, m.qos, m.retain) for m in items]


class TestRecordAndReplay:
    def test_a_recording_replays_identically_into_another_broker(
        self, tmp_path: Path, mosquitto: MosquittoServer
    ) -> None:
        """`parkwatch record` keeps every message of `parkwatch simulate` in order (a non-UTF-8 one as base64);
        `parkwatch replay --speed max` into a second broker delivers the same topics, payloads, QoS and
        retain flags, in the same order."""
        scenario = tmp_path / "e2e.toml"
        scenario.write_text(SCENARIO.replace('duration = "12h"', 'duration = "10h"'), encoding="utf-8")
        expected = MemorySink()
        Simulation(load_scenario(scenario), park="demo", tz=TZ, start=VIRTUAL_START).run(
            VirtualClock(VIRTUAL_START), SharedConnector(expected))
        odd = Outgoing("park/demo/air/ST03/hj212", b"\xff\xfe##0000", 1, False)
        n = len(expected.messages) + 1
        recording = tmp_path / "rec.jsonl"
        cfg = config_file(tmp_path / "one.toml", mosquitto.url)
        recorder = threading.Thread(target=main, args=(
            ["record", str(recording), "--config", str(cfg), "--topic", "park/demo/#", "--count", str(n),
             "--duration", "40"],), name="test-record")
        recorder.start()
        assert eventually(recording.exists, 10), "the recorder never subscribed"
        assert main(["simulate", "--config", str(cfg), "--scenario", str(scenario), "--speed", "max"]) == 0
        publisher = MqttPublisher(mqtt(mosquitto), client_id=f"odd-{uuid.uuid4().hex[:6]}")
        publisher.connect()
        publisher.publish(odd.topic, odd.payload)
        publisher.close()
        recorder.join(45)
        recorded = read_records(recording)
        assert as_sent(recorded) == as_sent([*expected.messages, odd])
        assert json.loads(recording.read_text(encoding="utf-8").splitlines()[-1])["encoding"] == "base64"

        with MosquittoServer(tmp_path / "second") as second:
            listener = Recorder(mqtt(second), ["park/demo/#"], client_id=f"listen-{uuid.uuid4().hex[:6]}")
            listener.start()
            try:
                cfg2 = config_file(tmp_path / "two.toml", second.url)
                assert main(["replay", str(recording), "--config", str(cfg2), "--speed", "max"]) == 0
                replayed = list(listener.records(count=n, duration_s=20))
            finally:
                listener.stop()
        assert as_sent(replayed) == as_sent(recorded)


class TestPublisher:
    def test_in_flight_stays_bounded_and_everything_is_acknowledged(self, mosquitto: MosquittoServer) -> None:
        """With max_unacked 20 no more than 20 publishes wait for a PUBACK; close() returns once all 3000
        are acknowledged, and a subscriber receives them all, in order."""
        listener = Recorder(mqtt(mosquitto), ["bounded/#"], client_id=f"listen-{uuid.uuid4().hex[:6]}")
        listener.start()
        publisher = MqttPublisher(mqtt(mosquitto), client_id=f"pub-{uuid.uuid4().hex[:6]}", max_unacked=20)
        publisher.connect()
        peak = 0
        for i in range(3000):
            publisher.publish("bounded/x", str(i).encode())
            peak = max(peak, publisher.unacknowledged)
        publisher.close()
        got = [r.payload for r in listener.records(count=3000, duration_s=20)]
        listener.stop()
        assert 1 <= peak <= 20
        assert publisher.acknowledged == 3000 and publisher.unacknowledged == 0
        assert got == [str(i).encode() for i in range(3000)]

    def test_a_device_that_vanishes_is_reported_offline_by_its_will(self, mosquitto: MosquittoServer) -> None:
        """In live mode each device has its own client whose will is {"online": false}, retained: when the
        connection dies without a goodbye, the broker publishes it."""
        topic = "park/demo/air/ST01/status"
        listener = Recorder(mqtt(mosquitto), [topic], client_id=f"listen-{uuid.uuid4().hex[:6]}")
        listener.start()
        connector = MqttConnector(mqtt(mosquitto), client_id_prefix=f"sim-{uuid.uuid4().hex[:6]}")
        sink = connector.sink_for("ST01", Outgoing(topic, b'{"online":false}', 1, True))
        sink.publish(topic, b'{"online":true}', 1, True)
        assert isinstance(sink, MqttPublisher)
        sink.flush(5)
        sock = sink._client.socket()  # a socket, or our BufferedSocket around one (ingest/paho_lean.py)
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)  # the link dies: no DISCONNECT reaches the broker
        seen = [(r.payload, r.retain) for r in listener.records(count=2, duration_s=10)]
        listener.stop()
        connector.close()
        assert seen == [(b'{"online":true}', True), (b'{"online":false}', True)]


class TestScenarioIntoTheService:
    def test_a_scenario_is_stored_and_the_accounting_closes(self, tmp_path: Path, mosquitto: MosquittoServer) -> None:
        """`parkwatch simulate --speed max` through mosquitto into the service: every reading the decoder
        accepts is stored, per station; every gate event once; damaged frames are dead-lettered, repeated
        events counted as duplicates; received = stored + deadlettered + duplicates."""
        scenario_file = tmp_path / "e2e.toml"
        scenario_file.write_text(SCENARIO, encoding="utf-8")
        expected = MemorySink()
        Simulation(load_scenario(scenario_file), park="demo", tz=TZ, start=VIRTUAL_START).run(
            VirtualClock(VIRTUAL_START), SharedConnector(expected))
        want = expected_outcome(expected.messages)
        assert want["dead"] > 0 and want["duplicates"] > 0

        raw = {"data_dir": str(tmp_path / "data"),
               "mqtt": {"url": mosquitto.url, "client_id": f"pw-{uuid.uuid4().hex[:6]}"},
               "store": {"url": f"sqlite://{tmp_path}/store.db", "flush_interval_s": 0.1},
               "http": {"listen": "127.0.0.1:0"}}
        service = build(settings_from_dict(raw, {}))
        service.start()
        try:
            assert service.source.wait_connected(10)
            time.sleep(0.3)
            cfg = config_file(tmp_path / "sim.toml", mosquitto.url)
            assert main(["simulate", "--config", str(cfg), "--scenario", str(scenario_file), "--speed", "max"]) == 0
            published = len(expected.messages)

            def idle() -> bool:
                c = service.pipeline.counters()
                return c["received"] == published and c["in_spool"] == 0

            assert eventually(idle, 30), service.pipeline.counters()
            counters = service.pipeline.counters()
        finally:
            service.stop()
        assert counters["received"] == counters["stored"] + counters["deadlettered"] + counters["duplicates"]
        assert (counters["deadlettered"], counters["duplicates"]) == (want["dead"], want["duplicates"])
        db = sqlite3.connect(tmp_path / "store.db")
        by_station = dict(db.execute("SELECT station, count(*) FROM air_quality GROUP BY station").fetchall())
        events = db.execute("SELECT count(*) FROM gate_event").fetchone()[0]
        db.close()
        assert by_station == want["stations"]
        assert events == want["events"]


def expected_outcome(messages: list[Outgoing]) -> dict[str, object]:
    """What the service should make of these messages: readings per station, events, dead, duplicates."""
    decoder = Decoder(DecodeSettings(park="demo", tz=TZ), time.time_ns)
    keys: set[str] = set()
    stations: Counter[str] = Counter()
    events = dead = duplicates = 0
    for m in messages:
        try:
            d = decoder.decode(Message(m.topic, m.payload, time.time_ns()))
        except Rejected:
            dead += 1
            continue
        if d.key is not None and d.key in keys:
            duplicates += 1
            continue
        if d.key is not None:
            keys.add(d.key)
        if d.point.measurement == "air_quality":
            stations[d.point.tags["station"]] += 1
        elif d.point.measurement == "gate_event":
            events += 1
    return {"stations": dict(stations), "events": events, "dead": dead, "duplicates": duplicates}
