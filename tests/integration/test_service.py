"""The service end to end against real servers: the embedded default, gate events, the v2 write API."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from config.compose import Service, build
from config.settings import settings_from_dict
from ingest import hj212
from tests.integration.harness import REPO, eventually
from tests.servers import InfluxDB1Server, MosquittoServer, VictoriaMetricsServer

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def publish_all(port: int, messages: list[tuple[str, bytes]], *, v5: bool = True) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:6]}",
                         protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic, payload in messages:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def reading(station: str, i: int) -> tuple[str, bytes]:
    body = {"ts": (NOW + timedelta(seconds=i)).isoformat(), "values": {"pm25": float(i), "co": 0.5}}
    return f"park/demo/air/{station}/reading", json.dumps(body).encode()


def gate_event(event_id: str, ts: datetime) -> tuple[str, bytes]:
    body = {"ts": ts.isoformat(), "event_id": event_id, "direction": "in", "subject": "vehicle",
            "plate": "粤R·A1234", "vehicle_class": "truck", "credential": "plate", "granted": True}
    return "park/demo/gate/G1/event", json.dumps(body, ensure_ascii=False).encode()


def running_service(tmp_path: Path, mqtt_url: str, store_url: str, *, worker: str = "process",
                    drainer: str = "process") -> Service:
    raw = {"data_dir": str(tmp_path / "data"),
           "mqtt": {"url": mqtt_url, "client_id": f"pw-{uuid.uuid4().hex[:6]}"},
           "store": {"url": store_url, "flush_interval_s": 0.1, "drainer": drainer},
           "http": {"listen": "127.0.0.1:0"},
           "ingest": {"worker": worker}}
    svc = build(settings_from_dict(raw, {}))
    svc.start()
    assert svc.source.wait_connected(10)
    time.sleep(0.3)
    return svc


def idle(service: Service, received: int) -> bool:
    c = service.pipeline.counters()
    return c["received"] == received and c["in_spool"] == 0


class TestEmbeddedDefault:
    def test_parkwatch_run_without_configuration_stores_to_sqlite(self, tmp_path: Path) -> None:
        """`parkwatch run` with nothing configured: embedded broker, SQLite store, clean exit on SIGTERM."""
        proc = subprocess.Popen([sys.executable, "-m", "config.cli", "run"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert "embedded broker mqtt://127.0.0.1:1884" in first, first + proc.stderr.read() if proc.stderr else ""
            time.sleep(1.0)
            publish_all(1884, [reading("ST01", i) for i in range(50)], v5=False)
            db = tmp_path / "parkwatch-data" / "store.db"

            def count() -> int:
                try:
                    return int(sqlite3.connect(db).execute("SELECT count(*) FROM air_quality").fetchone()[0])
                except sqlite3.Error:
                    return 0

            assert eventually(lambda: count() == 50, 20), count()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            counters = json.loads(out.strip().splitlines()[-1].split("; ", 1)[1])
            assert counters == {"received": 50, "stored": 50, "deadlettered": 0, "duplicates": 0, "in_spool": 0}
        finally:
            if proc.poll() is None:
                proc.kill()


class TestArrangements:
    @pytest.mark.parametrize(("worker", "drainer"), [("process", "process"), ("thread", "process"),
                                                    ("process", "thread"), ("thread", "thread")])
    def test_readings_are_stored_with_the_worker_and_drainer_in_processes_or_on_threads(
        self, tmp_path: Path, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server, worker: str, drainer: str
    ) -> None:
        """`ingest.worker` and `store.drainer`: "process" (the default) runs the part in a process of its own,
        "thread" in the service's own process; every arrangement stores every reading once and closes the
        accounting."""
        service = running_service(tmp_path, mosquitto.url, influxdb1.url_for("pw"), worker=worker, drainer=drainer)
        try:
            roles = [c.cmdline()[-1] for c in psutil.Process().children() if "ingest.child" in " ".join(c.cmdline())]
            assert ("ingest-worker" in roles, "drainer" in roles) == (worker == "process", drainer == "process")
            publish_all(mosquitto.port, [reading("ST01", i) for i in range(20)] + [reading("ST01", 3)])
            assert eventually(lambda: idle(service, 21), 15), service.pipeline.counters()
        finally:
            service.stop()
        assert influxdb1.query("pw", "SELECT count(pm25) FROM air_quality")[0]["count"] == 20
        c = service.pipeline.counters()
        assert (c["received"], c["stored"], c["deadlettered"], c["duplicates"], c["in_spool"]) == (21, 20, 0, 1, 0)


class TestGateEvents:
    @pytest.fixture
    def service(self, tmp_path: Path, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server) -> Iterator[Service]:
        svc = running_service(tmp_path, mosquitto.url, influxdb1.url_for("pw"))
        yield svc
        svc.stop()

    def test_distinct_events_with_one_timestamp_are_both_stored_and_a_repeat_once(
        self, service: Service, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server
    ) -> None:
        """Two events of one gate at the same instant are two points; a repeated event_id is a duplicate."""
        ts = NOW
        publish_all(mosquitto.port, [gate_event("E1", ts), gate_event("E2", ts), gate_event("E1", ts)])
        assert eventually(lambda: idle(service, 3), 10), service.pipeline.counters()
        rows = influxdb1.query("pw", "SELECT event_id, plate FROM gate_event")
        assert sorted(r["event_id"] for r in rows) == ["E1", "E2"]
        assert {r["plate"] for r in rows} == {"粤R·A1234"}
        assert service.pipeline.counters()["duplicates"] == 1


class TestHj212OverMqtt:
    @pytest.fixture
    def service(self, tmp_path: Path, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server) -> Iterator[Service]:
        svc = running_service(tmp_path, mosquitto.url, influxdb1.url_for("pw"))
        yield svc
        svc.stop()

    def test_hourly_frame_becomes_a_reading_with_its_period(
        self, service: Service, mosquitto: MosquittoServer, influxdb1: InfluxDB1Server
    ) -> None:
        """A CN 2061 frame on .../hj212 is stored as air_quality with period=hour and the MN kept."""
        segment = ("QN=20261127080000000;ST=22;CN=2061;PW=123456;MN=LOGGER01;Flag=4;"
                   f"CP=&&DataTime={NOW.astimezone(hj212_tz()).strftime('%Y%m%d%H0000')};"
                   "a34004-Avg=35.2,a34004-Min=30.1,a34004-Max=40.0,a34004-Flag=N;a21026-Avg=8.0,a21026-Flag=M&&")
        publish_all(mosquitto.port, [("park/demo/air/ST01/hj212", hj212.build_frame(segment))])
        assert eventually(lambda: idle(service, 1), 10), service.pipeline.counters()
        (row,) = influxdb1.query("pw", "SELECT * FROM air_quality")
        assert (row["period"], row["station"], row["mn"], row["pm25"], row["so2_flag"]) == (
            "hour", "ST01", "LOGGER01", 35.2, "M")


def hj212_tz() -> object:
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    return ZoneInfo("Asia/Shanghai")


class TestV2WriteApi:
    def test_readings_reach_a_v2_write_api_server(
        self, tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaMetricsServer
    ) -> None:
        """With influxdb:// the service writes through influxdb-client to a real v2 write API."""
        service = running_service(tmp_path, mosquitto.url, victoria.url)
        try:
            publish_all(mosquitto.port, [reading(f"ST0{i % 3}", i) for i in range(300)])
            assert eventually(lambda: idle(service, 300), 20), service.pipeline.counters()
            series = victoria.export('{__name__="air_quality_pm25"}')
            values = sorted(v for s in series for v in s["values"])
            assert values == [float(i) for i in range(300)]
            assert {s["metric"]["station"] for s in series} == {"ST00", "ST01", "ST02"}
        finally:
            service.stop()
