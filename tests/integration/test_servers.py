"""The test servers themselves: restarts keep what they must keep, failures say why."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import require_binary
from tests.servers import InfluxDB1Server, MosquittoServer, ServerStartError, VictoriaMetricsServer

TIMEOUT_S = 10.0


class SessionClient:
    """An MQTT 5 client with a persistent session (clean_start=False, session expiry one hour)."""

    def __init__(self, server: MosquittoServer, client_id: str) -> None:
        self.server = server
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.session_present: bool | None = None
        self.messages: list[mqtt.MQTTMessage] = []
        self.received = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", self.server.port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT_S), "no CONNACK"

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(TIMEOUT_S), "no SUBACK"

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags, *_: object) -> None:
        self.session_present = flags.session_present
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.messages.append(message)
        self.received.set()


def publish_qos1(server: MosquittoServer, topic: str, payload: bytes) -> None:
    """Publish one QoS 1 message and wait for the broker's PUBACK."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect("127.0.0.1", server.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT_S)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.integration
class TestMosquittoServer:
    def test_restart_keeps_queued_message_of_persistent_session(self, mosquitto: MosquittoServer) -> None:
        """A QoS 1 message queued for an offline persistent session is delivered after a broker restart."""
        topic = f"test/{uuid.uuid4().hex}/reading"
        client_id = f"sub-{uuid.uuid4().hex[:8]}"
        first = SessionClient(mosquitto, client_id)
        first.connect()
        first.subscribe(topic)
        first.disconnect()

        publish_qos1(mosquitto, topic, b'{"seq": 1}')
        mosquitto.restart()

        again = SessionClient(mosquitto, client_id)
        again.connect()
        try:
            assert again.session_present is True
            assert again.received.wait(TIMEOUT_S), "the queued message was not delivered"
            assert [(m.topic, m.payload, m.qos) for m in again.messages] == [(topic, b'{"seq": 1}', 1)]
        finally:
            again.disconnect()

    def test_restart_keeps_port(self, mosquitto: MosquittoServer) -> None:
        """After a restart the broker listens on the same port again."""
        port = mosquitto.port
        mosquitto.restart()
        assert mosquitto.port == port
        assert mosquitto.url == f"mqtt://127.0.0.1:{port}"
        publish_qos1(mosquitto, "test/after-restart", b"x")

    def test_bad_config_fails_with_log_tail(self, tmp_path: Path) -> None:
        """A broker that cannot start raises ServerStartError quoting its log."""
        require_binary(MosquittoServer.binary)
        server = MosquittoServer(tmp_path, extra_conf="no_such_option 1")
        with pytest.raises(ServerStartError, match="no_such_option"):
            server.start()
        assert not server.running


@pytest.mark.integration
class TestInfluxDB1Server:
    def test_stop_and_start_keep_data(self, influxdb1: InfluxDB1Server) -> None:
        """Data written before a stop is there after the next start, on the same port."""
        influxdb1.create_database("t")
        status, _ = _write_line(influxdb1, "t", "m,station=S1 v=1.5 1000")
        assert status == 204
        influxdb1.stop()
        influxdb1.start()
        assert influxdb1.count("t", "m") == 1
        assert influxdb1.query("t", "SELECT * FROM m") == [{"time": 1000, "station": "S1", "v": 1.5}]


@pytest.mark.integration
class TestVictoriaMetricsServer:
    def test_stop_and_start_keep_data(self, victoria: VictoriaMetricsServer) -> None:
        """Data written before a stop is there after the next start."""
        status, _ = _post(f"{victoria.base_url}/api/v2/write?bucket=b&org=o&precision=ms", "m,s=S1 v=2 1000")
        assert status == 204
        victoria.restart()
        series = victoria.export('{__name__="m_v"}', min_series=1)
        assert [(s["metric"], s["values"], s["timestamps"]) for s in series] == [
            ({"__name__": "m_v", "s": "S1"}, [2], [1000])
        ]


def _write_line(server: InfluxDB1Server, db: str, line: str) -> tuple[int, bytes]:
    return _post(f"{server.base_url}/write?db={db}&precision=ns", line)


def _post(url: str, body: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
